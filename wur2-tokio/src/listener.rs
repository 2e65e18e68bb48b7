//! The chat listeners of the `wur2` binary, bound with a deep accept backlog.
//!
//! Tokio's `TcpListener::bind` asks for a backlog of 1 024. When a node restarts and ten
//! thousand clients come back at once, connections beyond the backlog have their SYNs
//! dropped and retried a second (then three, seven…) later: the storm lasts longer than
//! the server needs to accept it. The kernel caps the backlog at `net.core.somaxconn`
//! (4 096 by default on current Linux; docs/OPERATIONS.md, "One node at scale").

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections a chat listener lets wait for `accept` (capped by the kernel).
pub(crate) const CHAT_BACKLOG: u32 = 16_384;

/// A listener on `addr` with [`CHAT_BACKLOG`], reusing the address as `TcpListener::bind`
/// does (a restarted server binds again at once).
pub(crate) fn chat_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(CHAT_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chat_listener_accepts_and_its_address_can_be_bound_again_at_once() {
        let listener = chat_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_server_side, _) = listener.accept().await.unwrap();
        drop(listener);
        drop(client);
        // The port is free again for a restarted server (TIME_WAIT notwithstanding).
        chat_listener(addr).unwrap();
    }
}
