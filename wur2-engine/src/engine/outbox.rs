//! The output queue and the delivery rule: each line rendered once per mode for however
//! many recipients, stamped with the current input's time, its bytes counted against each
//! recipient's limit, and readers that fall too far behind marked to be dropped.
//!
//! It decides nothing about chat; the engine says what goes to whom.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::sessions::{Delivery, Sessions};
use crate::config::{Config, WallClock};
use crate::ids::ConnectionId;
use crate::output::Output;
use crate::wire::{Line, Mode};

/// The output queue, and the per-recipient delivery rule: render once per mode, count the
/// bytes, drop readers that fall too far behind.
#[derive(Debug)]
pub(super) struct Outbox {
    outputs: VecDeque<Output>,
    max_queued_bytes: usize,
    /// Connections that passed `max_queued_bytes`; closed once the current input is done.
    slow_readers: Vec<ConnectionId>,
    /// Stamps JSON lines with wall-clock time, when the caller told us the time.
    wall_clock: Option<WallClock>,
    /// The `now` of the input being handled: the time every line it emits is stamped with.
    now: Option<Instant>,
    /// Lines handed out (for [`Stats`](crate::Stats)).
    pub(super) deliveries: u64,
    /// Bytes handed out (for [`Stats`](crate::Stats)).
    pub(super) bytes_out: u64,
}

impl Outbox {
    pub(super) fn new(config: &Config) -> Outbox {
        Outbox {
            outputs: VecDeque::new(),
            max_queued_bytes: config.max_queued_bytes,
            slow_readers: Vec::new(),
            wall_clock: config.wall_clock,
            now: None,
            deliveries: 0,
            bytes_out: 0,
        }
    }

    /// An input that happens at `now` begins: what it emits is stamped with `now`.
    pub(super) fn begin_input(&mut self, now: Instant) {
        self.now = Some(now);
    }

    /// The `now` of the input being handled (`None` before the first input).
    pub(super) fn now(&self) -> Option<Instant> {
        self.now
    }

    /// Queues an output that is not a line (closes, store requests, files, reading).
    pub(super) fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// The oldest output not yet handed to the driver.
    pub(super) fn pop(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A connection found too slow while handling the current input, to be dropped.
    pub(super) fn take_slow_reader(&mut self) -> Option<ConnectionId> {
        self.slow_readers.pop()
    }

    /// One line to one connection, in its mode.
    pub(super) fn send(
        &mut self,
        sessions: &mut Sessions,
        connection: ConnectionId,
        line: &Line<'_>,
    ) {
        if let Some(data) = self.render(sessions, connection, line) {
            self.transmit(sessions, connection, data);
        }
    }

    /// `line` as `connection` reads it (`None`: no such connection).
    pub(super) fn render(
        &self,
        sessions: &Sessions,
        connection: ConnectionId,
        line: &Line<'_>,
    ) -> Option<Bytes> {
        let mode = sessions.mode(connection)?;
        Some(line.render(mode, self.unix_ms()))
    }

    /// Queues bytes rendered for `connection` (by [`Outbox::render`]).
    pub(super) fn transmit(
        &mut self,
        sessions: &mut Sessions,
        connection: ConnectionId,
        data: Bytes,
    ) {
        match sessions.charge(connection, data.len(), self.max_queued_bytes) {
            Delivery::Send => {
                self.deliveries += 1;
                self.bytes_out += data.len() as u64;
                self.outputs
                    .push_back(Output::Transmit { connection, data });
            }
            Delivery::SlowReader => self.slow_readers.push(connection),
            Delivery::Skip => {}
        }
    }

    /// One line to many connections: rendered at most once per mode, one output per mode.
    pub(super) fn broadcast(
        &mut self,
        sessions: &mut Sessions,
        recipients: &[ConnectionId],
        except: Option<ConnectionId>,
        line: &Line<'_>,
    ) {
        let unix_ms = self.unix_ms();
        let mut text: Option<Bytes> = None;
        let mut json: Option<Bytes> = None;
        let mut text_to = Vec::with_capacity(recipients.len());
        let mut json_to = Vec::new();
        for &recipient in recipients {
            if Some(recipient) == except {
                continue;
            }
            let (delivery, mode) =
                sessions.charge_in_mode(recipient, self.max_queued_bytes, |mode| match mode {
                    Mode::Text => text.get_or_insert_with(|| line.text()).len(),
                    Mode::Json => json.get_or_insert_with(|| line.json(unix_ms)).len(),
                });
            match delivery {
                Delivery::Send if mode == Mode::Text => text_to.push(recipient),
                Delivery::Send => json_to.push(recipient),
                Delivery::SlowReader => self.slow_readers.push(recipient),
                Delivery::Skip => {}
            }
        }
        for (to, data) in [(text_to, text), (json_to, json)] {
            let Some(data) = data else { continue };
            self.deliveries += to.len() as u64;
            self.bytes_out += (to.len() * data.len()) as u64;
            match to[..] {
                [] => {}
                [connection] => self
                    .outputs
                    .push_back(Output::Transmit { connection, data }),
                _ => self.outputs.push_back(Output::Broadcast {
                    recipients: to,
                    data,
                }),
            }
        }
    }

    /// Wall-clock milliseconds at the current input's `now`, if the caller gave a clock.
    fn unix_ms(&self) -> Option<i64> {
        let clock = self.wall_clock?;
        let now = self.now?;
        let since = now.saturating_duration_since(clock.at).as_millis();
        let before = clock.at.saturating_duration_since(now).as_millis();
        let ms = i64::try_from(since).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(0);
        Some(clock.unix_ms.saturating_add(ms))
    }
}
