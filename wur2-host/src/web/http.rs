//! The one HTTP request a web client sends on a connection, read and answered before any
//! chat: the head is read whole (bounded in size, and in time by the caller), parsed with
//! httparse, and either answered (the web client's files, a refusal) or upgraded to a
//! WebSocket. No keep-alive, no bodies, no chunked encoding: a page load is a few requests
//! of a few kilobytes.

use std::io::{self, IoSlice};

use crate::runtime::Transport;

/// Bytes a request head may have at most; a longer one is answered 431.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Headers a request may have at most.
const MAX_HEADERS: usize = 32;

/// What a request asks for, as far as the web listener cares.
#[derive(Debug, Default)]
pub(crate) struct Request {
    pub method: String,
    /// The path, without its query.
    pub path: String,
    pub host: Option<String>,
    pub origin: Option<String>,
    /// `Upgrade: websocket` (any letter case).
    pub upgrade_websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    pub websocket_key: Option<String>,
    pub websocket_version: Option<String>,
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The socket failed or closed before the head was complete.
    Io(io::Error),
    /// The head is over [`MAX_REQUEST_HEAD`].
    TooLarge,
    /// It is not HTTP/1.x.
    Malformed,
}

/// Reads up to the end of the request head; returns the request and the bytes the client
/// sent after it (the start of its first WebSocket frame, maybe).
pub(crate) async fn read_request(
    stream: &mut impl Transport,
) -> Result<(Request, Vec<u8>), HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = std::future::poll_fn(|cx| stream.poll_read(cx, &mut chunk))
            .await
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        // Only the new bytes, and the three before them, can complete the blank line.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head[from..]
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
        {
            let end = from + end + 4;
            let rest = head.split_off(end);
            return parse(&head).map(|request| (request, rest));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Parses a complete request head.
fn parse(head: &[u8]) -> Result<Request, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Err(HeadError::Malformed),
    }
    let mut request = Request {
        method: parsed.method.unwrap_or_default().to_owned(),
        path: parsed
            .path
            .unwrap_or_default()
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        ..Request::default()
    };
    for header in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(header.value) else {
            continue;
        };
        let value = value.trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            request.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            request.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            request.upgrade_websocket = value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            request.connection_upgrade = value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            request.websocket_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            request.websocket_version = Some(value.to_owned());
        }
    }
    Ok(request)
}

/// A response to write: status line, extra headers, body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static [u8],
    /// A body made at run time (a refusal's reason), used when `body` is empty.
    pub text: String,
}

impl Response {
    /// A plain-text answer (errors and refusals), with `text` as its body.
    pub fn text(status: &'static str, text: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: b"",
            text: text.into(),
        }
    }

    /// The head and body, as written.
    fn encode(&self) -> (String, &[u8]) {
        let body = if self.body.is_empty() {
            self.text.as_bytes()
        } else {
            self.body
        };
        let mut head = format!("HTTP/1.1 {}\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if !self.status.starts_with("101") {
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        (head, body)
    }
}

/// Writes `response` whole and flushes it.
pub(crate) async fn write_response(
    stream: &mut impl Transport,
    response: &Response,
) -> io::Result<()> {
    let (head, body) = response.encode();
    let mut bytes = Vec::with_capacity(head.len() + body.len());
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(body);
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = std::future::poll_fn(|cx| stream.poll_write_vectored(cx, &[IoSlice::new(rest)]))
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n.min(rest.len())..];
    }
    std::future::poll_fn(|cx| stream.poll_flush(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_request_is_read_with_its_websocket_headers() {
        let head = b"GET /ws?x=1 HTTP/1.1\r\nHost: chat.example:8080\r\nUpgrade: WebSocket\r\n\
            Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nOrigin: http://chat.example:8080\r\n\r\n";
        let request = parse(head).expect("a valid head");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/ws");
        assert_eq!(request.host.as_deref(), Some("chat.example:8080"));
        assert_eq!(request.origin.as_deref(), Some("http://chat.example:8080"));
        assert!(request.upgrade_websocket && request.connection_upgrade);
        assert_eq!(request.websocket_version.as_deref(), Some("13"));
    }

    #[test]
    fn a_head_that_is_not_http_is_malformed() {
        assert!(matches!(
            parse(b"\x16\x03\x01 hello\r\n\r\n"),
            Err(HeadError::Malformed)
        ));
    }
}
