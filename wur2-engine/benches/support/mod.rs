//! What the engine benches share: draining outputs the way a driver would.

use std::time::Instant;

use wur2_engine::{ConnectionId, Engine, Output, Role, StoreReply, StoreRequest, StoredChannel};

/// What one [`drain`] handed out for connections.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drained {
    /// Deliveries: one per recipient of a transmit or broadcast.
    pub deliveries: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// Drains outputs as a driver would: for every recipient the shared buffer is cloned (a
/// reference-count bump), "written" at once and reported, then released; the store
/// answers at once (registrations succeed, history and pending messages are empty, the
/// channel catalogue starts empty and every new channel is registered).
pub fn drain(engine: &mut Engine, now: Instant) -> Drained {
    let mut drained = Drained::default();
    while let Some(output) = engine.poll_output() {
        match output {
            Output::Transmit { connection, data } => {
                drained.deliveries += 1;
                drained.bytes += data.len();
                engine.handle_written(connection, data.len(), now);
            }
            Output::Broadcast { recipients, data } => {
                for connection in recipients {
                    let queued = data.clone();
                    drained.deliveries += 1;
                    drained.bytes += queued.len();
                    engine.handle_written(connection, queued.len(), now);
                }
            }
            Output::Store { id, request } => {
                let reply = match *request {
                    StoreRequest::Register { username, .. } => StoreReply::Account {
                        username,
                        role: Role::User,
                        mute: None,
                    },
                    StoreRequest::FetchHistory { .. } => StoreReply::History(Vec::new()),
                    StoreRequest::FetchPending { .. } => StoreReply::Pending(Vec::new()),
                    StoreRequest::LoadChannels => StoreReply::Channels(Vec::new()),
                    StoreRequest::RegisterChannel { name, owner } => {
                        StoreReply::Channels(vec![StoredChannel {
                            name,
                            owner,
                            topic: None,
                            private: false,
                            invited: Vec::new(),
                        }])
                    }
                    _ => StoreReply::Done,
                };
                engine.handle_store_reply(id, reply, now);
            }
            _ => {}
        }
    }
    drained
}

/// `n` connections from one address, each registered as `user<i>` (the store answering at
/// once) and then sending `after` (lines, maybe empty), drained; in order.
pub fn register_users(
    engine: &mut Engine,
    n: usize,
    after: &str,
    now: Instant,
) -> Vec<ConnectionId> {
    let peer = "127.0.0.1:1".parse().expect("address");
    (0..n)
        .map(|i| {
            let c = engine.handle_connect(peer, now);
            let lines = format!("/register user{i} password{i}\n{after}");
            engine.handle_received(c, lines.as_bytes(), now);
            drain(engine, now);
            c
        })
        .collect()
}
