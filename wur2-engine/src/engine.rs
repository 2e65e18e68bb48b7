//! API skeleton, being filled in.
#![allow(missing_docs, unused_variables, clippy::todo)]
use std::net::SocketAddr;
use std::time::Instant;

use crate::{Config, ConnectionId, Output, RequestId, StoreReply};

/// The chat engine.
pub struct Engine {}

impl Engine {
    pub fn new(config: Config) -> Self { todo!() }
    pub fn config(&self) -> &Config { todo!() }
    pub fn connection_count(&self) -> usize { todo!() }
    pub fn handle_connect(&mut self, peer: SocketAddr, now: Instant) -> ConnectionId { todo!() }
    pub fn handle_received(&mut self, connection: ConnectionId, data: &[u8], now: Instant) { todo!() }
    pub fn handle_written(&mut self, connection: ConnectionId, bytes: usize) { todo!() }
    pub fn handle_peer_closed(&mut self, connection: ConnectionId, now: Instant) { todo!() }
    pub fn handle_store_reply(&mut self, id: RequestId, reply: StoreReply, now: Instant) { todo!() }
    pub fn handle_timeout(&mut self, now: Instant) { todo!() }
    pub fn handle_shutdown(&mut self, now: Instant) { todo!() }
    pub fn poll_output(&mut self) -> Option<Output> { todo!() }
    pub fn poll_timeout(&self) -> Option<Instant> { todo!() }
}
