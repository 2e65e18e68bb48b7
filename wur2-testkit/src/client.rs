//! A chat client for the scenarios, in text mode (as a script on `nc` would be) or in JSON
//! lines mode (as a program would be), reading every server line as an [`Event`].
//!
//! A JSON client asks for JSON with `/mode json` first, as `docs/PROTOCOL.md` says. The
//! banner and the first login question reach it as text, before its request is read; from
//! the `mode` answer on, every line must be one JSON object the strict reader accepts, or
//! the test fails. A client of a web target (WebSocket) gets JSON from the first line. Every wait is bounded by [`STEP`].

use std::collections::VecDeque;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::event::{Event, Prompt, TextLine, parse_json, parse_text};
use crate::target::{Read, Target, Write};

/// Longest wait for any one expected line.
pub const STEP: Duration = Duration::from_secs(15);
/// How long a cluster's nodes may take to learn of each other's logins and departures
/// (presence crosses the bus): how long [`Client::users_seen`] asks again on a cluster
/// target.
pub const PRESENCE_DELAY: Duration = Duration::from_secs(10);
/// A password every scenario account uses.
pub const PASSWORD: &str = "correct-horse-battery";

/// How a [`Client`] asks the server to write its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Readable text lines, the default.
    Text,
    /// JSON lines, asked for with `/mode json` right after connecting.
    Json,
}

impl Mode {
    /// Both modes, text first.
    pub const ALL: [Mode; 2] = [Mode::Text, Mode::Json];
}

/// One chat client, reading typed [`Event`]s in its [`Mode`].
pub struct Client {
    reader: BufReader<Box<dyn Read>>,
    writer: Box<dyn Write>,
    /// The account this client logged in as, if any (also names it in failure messages).
    pub name: String,
    mode: Mode,
    /// Whether the server has switched this connection to JSON (after the `mode` answer).
    json: bool,
    /// Events read while switching to JSON mode, not yet handed out.
    pending: VecDeque<Event>,
    pings: u64,
    /// Whether it connected to a node of a cluster target, whose presence is eventually
    /// consistent.
    in_cluster: bool,
}

impl Client {
    /// Connects without logging in; in JSON mode, also switches to JSON and reads up to the
    /// server's `mode` answer (the banner and first question before it must be text).
    pub async fn connect(target: Target, mode: Mode) -> Client {
        Client::connect_from(target, mode, IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Like [`Client::connect`], from the local address `source` (one of 127.0.0.0/8: to
    /// the server, a client at another address).
    pub async fn connect_from(target: Target, mode: Mode, source: IpAddr) -> Client {
        // WebSocket clients speak JSON lines only, whatever the scenario asks for.
        let mode = if target.web { Mode::Json } else { mode };
        let (read, write) = target.connect_from(source).await;
        let mut client = Client {
            reader: BufReader::new(read),
            writer: write,
            name: String::new(),
            mode,
            // A WebSocket client speaks JSON from the first line, without asking.
            json: target.web,
            pending: VecDeque::new(),
            pings: 0,
            in_cluster: target.is_cluster(),
        };
        if mode == Mode::Json && !target.web {
            client.send("/mode json").await;
            let before = client.barrier_on(Event::Mode { json: true }).await;
            client.pending.extend(before);
        }
        client
    }

    /// Connects and creates the account `name` with `/register`.
    pub async fn register(target: Target, mode: Mode, name: &str) -> Client {
        let mut client = Client::connect(target, mode).await;
        client.name = name.to_string();
        client.send(&format!("/register {name} {PASSWORD}")).await;
        client.expect_welcome(name, true).await;
        client
    }

    /// Connects and logs in as the existing account `name` with `/login`.
    pub async fn login(target: Target, mode: Mode, name: &str) -> Client {
        let mut client = Client::connect(target, mode).await;
        client.name = name.to_string();
        client.send(&format!("/login {name} {PASSWORD}")).await;
        client.expect_welcome(name, false).await;
        client
    }

    /// Sends one line (a `\n` is added).
    pub async fn send(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send_raw(&bytes).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // Flushed: a TLS stream may hold what it could not write at once.
        let send = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        tokio::time::timeout(STEP, send)
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Sends bytes as they are, for a client the server may close while it writes: an
    /// error or a timeout is not a failure.
    pub(crate) async fn send_raw_until_closed(&mut self, bytes: &[u8]) {
        let send = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        let _ = tokio::time::timeout(STEP, send).await;
    }

    /// Reads raw bytes, without looking at them, until the server closes the connection;
    /// returns how many arrived. Panics if it stays open for [`STEP`].
    pub(crate) async fn count_bytes_until_closed(&mut self) -> usize {
        let mut bytes = 0usize;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(STEP, self.reader.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return bytes,
                Ok(Ok(n)) => bytes += n,
                Err(_) => panic!("{}: not closed within {STEP:?} ({bytes} bytes)", self.name),
            }
        }
    }

    /// The next event; `None` at end of stream or on a reset. Panics after [`STEP`].
    pub async fn next_event(&mut self) -> Option<Event> {
        match self.try_event().await {
            Ok(event) => event,
            Err(()) => panic!("{}: nothing within {STEP:?}", self.name),
        }
    }

    /// Like [`Client::next_event`], but a timeout is an `Err` for the caller to explain.
    async fn try_event(&mut self) -> Result<Option<Event>, ()> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        let Some(line) = self.try_line().await? else {
            return Ok(None);
        };
        if self.mode == Mode::Json && (self.json || line.starts_with(b"{")) {
            let line = String::from_utf8(line)
                .unwrap_or_else(|e| panic!("{}: a JSON-mode line is not UTF-8: {e}", self.name));
            let event = parse_json(&line);
            if !self.json {
                assert_eq!(
                    event,
                    Event::Mode { json: true },
                    "{}: the first JSON line answers /mode json",
                    self.name
                );
                self.json = true;
            }
            return Ok(Some(event));
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let event = match parse_text(&line) {
            TextLine::Event(event) => event,
            TextLine::RawChunk { id, len } => {
                let mut data = vec![0u8; len + 1];
                tokio::time::timeout(STEP, self.reader.read_exact(&mut data))
                    .await
                    .map_err(|_| ())?
                    .unwrap_or_else(|e| panic!("{}: chunk of file {id}: {e}", self.name));
                assert_eq!(data.pop(), Some(b'\n'), "a chunk ends with a line break");
                Event::FileChunk { id, data }
            }
            TextLine::Base64Chunk { id, len } => {
                let encoded = self.try_line().await?.unwrap_or_default();
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&encoded)
                    .unwrap_or_else(|e| panic!("{}: base64 chunk of file {id}: {e}", self.name));
                assert_eq!(data.len(), len, "a base64 chunk decodes to its size");
                Event::FileChunk { id, data }
            }
        };
        if self.mode == Mode::Json {
            // Before its `/mode json` is read, a JSON client hears only the banner and the
            // first question, as text.
            assert!(
                matches!(event, Event::Info(_) | Event::Prompt(Prompt::Account)),
                "{}: a text line before JSON mode: {line:?}",
                self.name
            );
        }
        Ok(Some(event))
    }

    /// One line without its line ending; `Ok(None)` at end of stream.
    async fn try_line(&mut self) -> Result<Option<Vec<u8>>, ()> {
        let mut line = Vec::new();
        let read = tokio::time::timeout(STEP, self.reader.read_until(b'\n', &mut line))
            .await
            .map_err(|_| ())?;
        Ok(match read {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                Some(line)
            }
        })
    }

    /// The next event; panics at end of stream.
    pub async fn event(&mut self) -> Event {
        match self.next_event().await {
            Some(event) => event,
            None => panic!("{}: connection closed while a line was expected", self.name),
        }
    }

    /// Reads events up to `last` (expected); returns how many of them (before it) are
    /// `event`: a message that must arrive exactly once, say.
    pub async fn count_until(&mut self, event: &Event, last: Event) -> usize {
        let (wanted, last) = (event.portable(), last.portable());
        let mut count = 0;
        self.expect_with(format_args!("{last:?}"), |seen| {
            let seen = seen.portable();
            if seen == wanted {
                count += 1;
            }
            (seen == last).then_some(())
        })
        .await;
        count
    }

    /// Reads events until `pick` returns something; returns that. `what` names the
    /// expectation in the failure message.
    pub async fn expect_with<T>(
        &mut self,
        what: impl Display,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let mut seen = Vec::new();
        loop {
            match self.try_event().await {
                Ok(Some(event)) => match pick(&event) {
                    Some(found) => return found,
                    None => seen.push(event),
                },
                Ok(None) => panic!("{}: closed before {what}; saw {seen:#?}", self.name),
                Err(()) => panic!("{}: no {what} within {STEP:?}; saw {seen:#?}", self.name),
            }
        }
    }

    /// Reads events until one equals `expected` (compared [portably](Event::portable), so
    /// ids and codes only one mode carries do not matter); returns the event as received.
    pub async fn expect(&mut self, expected: Event) -> Event {
        let wanted = expected.portable();
        self.expect_with(format_args!("{expected:?}"), |event| {
            (event.portable() == wanted).then(|| event.clone())
        })
        .await
    }

    /// Reads until the next error and checks its code (JSON mode: the stable `code` must be
    /// `code`; text mode has no codes). Returns the error's message.
    pub async fn expect_error(&mut self, code: &str) -> String {
        let name = self.name.clone();
        self.expect_with(format_args!("error {code}"), |event| match event {
            Event::Error { code: got, message } => {
                if let Some(got) = got {
                    assert_eq!(got, code, "{name}: error code for {message:?}");
                }
                Some(message.clone())
            }
            _ => None,
        })
        .await
    }

    /// Reads until the welcome of `user` (`new`: after registration).
    pub async fn expect_welcome(&mut self, user: &str, new: bool) {
        let welcome = self
            .expect(Event::Welcome {
                user: user.to_string(),
                new,
                role: None,
            })
            .await;
        if self.mode == Mode::Json {
            assert!(
                matches!(welcome, Event::Welcome { role: Some(_), .. }),
                "{welcome:?}"
            );
        }
    }

    /// Sends `/ping` with a fresh token and returns every event that came before its pong.
    pub async fn barrier(&mut self) -> Vec<Event> {
        self.pings += 1;
        let token = format!("barrier-{}", self.pings);
        self.send(&format!("/ping {token}")).await;
        self.barrier_on(Event::Pong(token)).await
    }

    /// Reads until `end` (exactly); returns every event before it.
    async fn barrier_on(&mut self, end: Event) -> Vec<Event> {
        let mut seen = Vec::new();
        let before = &mut seen;
        self.expect_with(format_args!("{end:?}"), |event| {
            if *event == end {
                Some(())
            } else {
                before.push(event.clone());
                None
            }
        })
        .await;
        seen
    }

    /// Sends `/list`; returns the users online.
    pub async fn users(&mut self) -> Vec<String> {
        self.listing().await.0
    }

    /// Sends `/list`; returns the users online and the away messages of those away.
    async fn listing(&mut self) -> (Vec<String>, Vec<(String, String)>) {
        self.send("/list").await;
        self.expect_with("the user list", |event| match event {
            Event::Users(users, away) => Some((users.clone(), away.clone())),
            _ => None,
        })
        .await
    }

    /// Asks `/list` until `wanted` holds for the users listed, for up to `within` (asking
    /// again every 50 ms); returns that list. Panics, naming `what` and the last list, when
    /// it never holds.
    pub async fn list_until(
        &mut self,
        what: impl Display,
        within: Duration,
        wanted: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let listing = self
            .listing_until(what, within, |(users, _)| wanted(users))
            .await;
        listing.0
    }

    /// Asks `/list` until `wanted` holds for the users and away messages listed, for up
    /// to `within`; returns that listing.
    async fn listing_until(
        &mut self,
        what: impl Display,
        within: Duration,
        wanted: impl Fn(&(Vec<String>, Vec<(String, String)>)) -> bool,
    ) -> (Vec<String>, Vec<(String, String)>) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let listing = self.listing().await;
            if wanted(&listing) {
                return listing;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: never {what} within {within:?}: {listing:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `/list` and checks that `wanted` holds for the away messages listed (user,
    /// text); on a cluster target it asks again for up to [`PRESENCE_DELAY`], as
    /// [`Client::users_seen`] does.
    pub async fn away_seen(
        &mut self,
        what: impl Display,
        wanted: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let within = match self.in_cluster {
            true => PRESENCE_DELAY,
            false => Duration::ZERO,
        };
        let listing = self
            .listing_until(what, within, |(_, away)| wanted(away))
            .await;
        listing.1
    }

    /// Sends `/list` and checks that `wanted` holds for the users listed; returns them. On
    /// a cluster target, where other nodes' logins and departures reach this client's node
    /// a moment later, it asks again until `wanted` holds, for up to [`PRESENCE_DELAY`]; on
    /// a single server the first answer must hold.
    pub async fn users_seen(
        &mut self,
        what: impl Display,
        wanted: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let within = match self.in_cluster {
            true => PRESENCE_DELAY,
            false => Duration::ZERO,
        };
        self.list_until(what, within, wanted).await
    }

    /// Sends `/channels`; returns the channels listed and their member counts.
    pub async fn channels(&mut self) -> Vec<(String, u64)> {
        let listed = self.channel_list().await;
        listed.into_iter().map(|(name, n, _)| (name, n)).collect()
    }

    /// Sends `/channels`; returns the channels listed, their member counts and topics.
    pub async fn channel_list(&mut self) -> Vec<(String, u64, Option<String>)> {
        self.send("/channels").await;
        self.expect_with("the channel list", |event| match event {
            Event::Channels(channels) => Some(channels.clone()),
            _ => None,
        })
        .await
    }

    /// Sends `/channels` and checks that `wanted` holds for the channels listed; returns
    /// them. On a cluster target, where other nodes' channel changes reach this client's
    /// node a moment later, it asks again until `wanted` holds, for up to
    /// [`PRESENCE_DELAY`]; on a single server the first answer must hold.
    pub async fn channels_seen(
        &mut self,
        what: impl Display,
        wanted: impl Fn(&[(String, u64, Option<String>)]) -> bool,
    ) -> Vec<(String, u64, Option<String>)> {
        let within = match self.in_cluster {
            true => PRESENCE_DELAY,
            false => Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let channels = self.channel_list().await;
            if wanted(&channels) {
                return channels;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: never {what} within {within:?}: {channels:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `/help`; returns the usages of the commands listed.
    pub async fn help(&mut self) -> Vec<String> {
        self.send("/help").await;
        let mut usages = Vec::new();
        let mut listed = false;
        for event in self.barrier().await {
            match event {
                Event::Help(commands) => {
                    listed = true;
                    usages.extend(commands);
                }
                Event::HelpEntry(usage) if listed => usages.push(usage),
                _ => {}
            }
        }
        assert!(listed, "{}: no help list", self.name);
        usages
    }

    /// Sends `/bans`; returns `(kind, user)` of every ban and mute in force.
    pub async fn sanctions(&mut self) -> Vec<(String, String)> {
        self.send("/bans").await;
        let mut sanctions = Vec::new();
        let mut listed = false;
        for event in self.barrier().await {
            match event {
                Event::Sanctions(entries) => {
                    listed = true;
                    sanctions.extend(entries);
                }
                Event::HelpEntry(entry) if listed => {
                    let mut words = entry.split(' ');
                    if let (Some(kind), Some(user)) = (words.next(), words.next()) {
                        sanctions.push((kind.to_owned(), user.to_owned()));
                    }
                }
                _ => {}
            }
        }
        assert!(listed, "{}: no list of bans and mutes", self.name);
        sanctions
    }

    /// Reads until the server closes the connection; returns the events before.
    pub async fn expect_closed(&mut self) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Some(event) = self.next_event().await {
            seen.push(event);
        }
        seen
    }
}
