//! The bare relay: the simplest Tokio server that forwards each line to every other
//! connection. It is the baseline of the benchmark, the near-limit of "one line in, N − 1
//! lines out" on this machine: no parsing beyond finding line ends, no accounts, no
//! history, no limits. Never expose it: a client that does not read makes it queue without
//! bound. It greets each connection with [`GREETING`] once the connection will receive
//! lines, which is the load generator's barrier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The line a connection gets once it is part of the relay.
pub const GREETING: &[u8] = b"relay: welcome\n";

type Peers = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Bytes>>>>;

/// Accepts connections on `listener` and relays between them until the task is dropped.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let peers: Peers = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: back off instead of spinning.
                eprintln!("wur2-relay: accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        tokio::spawn(connection(next_id, stream, Arc::clone(&peers)));
    }
}

async fn connection(id: u64, stream: TcpStream, peers: Peers) {
    // Best effort: a socket that refuses it still relays.
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    // Queued before joining, so the greeting is the first line out.
    let _ = tx.send(Bytes::from_static(GREETING));
    peers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, tx);
    let writing = tokio::spawn(write_queued(writer, rx));

    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // Forward every complete line read so far, as one shared buffer.
        let Some(last_newline) = memchr::memrchr(b'\n', &buf) else {
            if buf.len() > 1024 * 1024 {
                break; // a "line" of a megabyte is not a line
            }
            continue;
        };
        let lines = buf.split_to(last_newline + 1).freeze();
        let peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
        for (&other, queue) in peers.iter() {
            if other != id {
                let _ = queue.send(lines.clone());
            }
        }
        drop(peers);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
    peers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    let _ = writing.await;
}

async fn write_queued(mut writer: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
    }
}
