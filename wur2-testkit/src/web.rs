//! The scenarios' clients over a WebSocket: the same byte stream the scenarios read and
//! write on TCP, carried in frames as the web client does. A task beside each client
//! moves bytes between a local pipe and the WebSocket:
//!
//! - each line the scenario writes leaves as one text frame; after a
//!   `/send <user> <name> <size>` line, the next `<size>` bytes leave in binary frames;
//! - each text frame the server sends arrives as one line; a close ends the stream.
//!
//! The pipe is small, so a scenario that does not read stops the task from reading the
//! WebSocket, and the server sees a slow reader as on TCP.

use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use bytes::Bytes;
use futures_lite::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;

use crate::scenarios::STEP;
use crate::target::{Read, Write};

/// Bytes the pipe between a scenario and its WebSocket holds each way.
const PIPE: usize = 64 * 1024;
/// Bytes of an upload per binary frame.
const UPLOAD_FRAME: usize = 16 * 1024;

/// Upgrades `stream` to a WebSocket on the web listener's endpoint and returns the
/// scenario's halves of the pipe to it.
pub(crate) async fn connect(stream: TcpStream) -> (Box<dyn Read>, Box<dyn Write>) {
    let addr = stream.peer_addr().expect("the server's address");
    let url = format!("ws://{addr}{}", wur2_host::WEBSOCKET_PATH);
    let (socket, _) =
        tokio::time::timeout(STEP, async_tungstenite::tokio::client_async(url, stream))
            .await
            .expect("WebSocket upgrade timed out")
            .expect("WebSocket upgrade failed");
    let (scenario, pump) = tokio::io::duplex(PIPE);
    tokio::spawn(carry(socket, pump));
    let (read, write) = tokio::io::split(scenario);
    (Box::new(read), Box::new(write))
}

/// Moves bytes both ways between the pipe and the WebSocket until both are done.
async fn carry<S>(socket: async_tungstenite::WebSocketStream<S>, pipe: DuplexStream)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, mut receiver) = socket.split();
    let (mut from_scenario, mut to_scenario) = tokio::io::split(pipe);
    let incoming = async move {
        while let Some(Ok(message)) = receiver.next().await {
            let delivered = match message {
                Message::Text(text) => {
                    let mut line = Vec::with_capacity(text.len() + 1);
                    line.extend_from_slice(text.as_bytes());
                    line.push(b'\n');
                    to_scenario.write_all(&line).await
                }
                Message::Close(_) => break,
                Message::Binary(_) => panic!("the server sent a binary frame"),
                _ => Ok(()),
            };
            if delivered.is_err() {
                break;
            }
        }
        let _ = to_scenario.shutdown().await;
    };
    let outgoing = async move {
        let mut pending = Vec::new();
        let mut upload_left = 0u64;
        let mut chunk = vec![0u8; PIPE];
        loop {
            let n = match from_scenario.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&chunk[..n]);
            for message in frames(&mut pending, &mut upload_left) {
                if sender.send(message).await.is_err() {
                    return;
                }
            }
        }
        let _ = sender.close(None).await;
    };
    tokio::join!(incoming, outgoing);
}

/// Takes from `pending` every frame it holds complete: lines as text frames, announced
/// upload bytes as binary frames. A line that is not UTF-8 leaves as well as it can.
fn frames(pending: &mut Vec<u8>, upload_left: &mut u64) -> Vec<Message> {
    let mut frames = Vec::new();
    let mut start = 0;
    while start < pending.len() {
        if *upload_left > 0 {
            let left = usize::try_from(*upload_left).unwrap_or(usize::MAX);
            let take = (pending.len() - start).min(left).min(UPLOAD_FRAME);
            frames.push(Message::Binary(Bytes::copy_from_slice(
                &pending[start..start + take],
            )));
            *upload_left -= take as u64;
            start += take;
            continue;
        }
        let Some(end) = pending[start..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let mut line = &pending[start..start + end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let text = String::from_utf8_lossy(line).into_owned();
        if let Ok(wur2_engine::Command::SendUpload { size, .. }) = wur2_engine::parse_command(&text)
        {
            *upload_left = size;
        }
        frames.push(Message::Text(Utf8Bytes::from(text)));
        start += end + 1;
    }
    pending.drain(..start);
    frames
}
