//! Chat from a browser: the web listener serves the embedded web client (one page, its
//! script and its style sheet) and upgrades `/ws` to a WebSocket that speaks JSON lines,
//! one object per text frame ([`WebSocket`], a [`Transport`](crate::Transport) like TLS).
//!
//! Each client's HTTP request is read and answered in a task of its own (a bounded
//! number at once, and from one address, each with a deadline, like a TLS handshake), so
//! a slow client never holds up another. An upgrade is refused with an HTTP status before
//! it happens when its `Origin` is not allowed (403) or its address already has as many
//! chat connections as the engine allows (429); once upgraded, the client is one more
//! connection of the engine, in JSON mode from its first line, under every limit of the
//! plain listener.
//!
//! This module never touches chat state; it reads one HTTP request per connection.

mod frames;
mod http;
mod io;
mod socket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio::sync::{mpsc, watch};
use tracing::debug;

pub(crate) use frames::frame_lines;
pub use http::MAX_REQUEST_HEAD;
pub use socket::{UPLOAD_FRAME_MAX, WebSocket};

use crate::connections::{AddressCounts, ConnectionEvent};
use crate::runtime::Runtime;
use crate::server::{HANDSHAKE_TIMEOUT, Handshakes};
use crate::tls::TlsAcceptor;
use http::{HeadError, Request, Response, read_request, write_response};

/// The path of the WebSocket endpoint on the web listener.
pub const WEBSOCKET_PATH: &str = "/ws";

/// The web client's page.
const INDEX_HTML: &[u8] = include_bytes!("../../web/index.html");
/// The web client's script.
const APP_JS: &[u8] = include_bytes!("../../web/app.js");
/// The web client's style sheet.
const APP_CSS: &[u8] = include_bytes!("../../web/app.css");

/// What the embedded files may do in a browser: only load from this server and connect
/// back to it; no inline script, no framing by other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss: blob:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Settings of a web listener ([`ServerHandle::serve_web`](crate::ServerHandle::serve_web)).
#[derive(Debug, Clone, Default)]
pub struct WebOptions {
    /// Origins (`https://chat.example.org`, scheme, host and port as a browser sends them)
    /// whose pages may open a WebSocket here, besides the listener's own origin (the
    /// request's `Host`). A request without `Origin` is not from a browser page and is
    /// let through; one from any other origin is refused with 403.
    pub allowed_origins: Vec<String>,
    /// Serve HTTPS and `wss://` with this certificate instead of plain HTTP and `ws://`.
    pub tls: Option<TlsAcceptor>,
}

/// The engine limits the web listener applies before an upgrade.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WebLimits {
    /// [`Config::max_line_bytes`](wur2_engine::Config::max_line_bytes).
    pub max_line_bytes: usize,
    /// [`Config::max_connections_per_address`](wur2_engine::Config::max_connections_per_address).
    pub max_connections_per_address: usize,
    /// [`Options::max_handshakes_per_address`](crate::Options::max_handshakes_per_address).
    pub max_requests_per_address: usize,
}

/// Where the web listener's tasks find the server.
pub(crate) struct WebShared {
    pub options: WebOptions,
    pub limits: WebLimits,
    pub counts: Arc<AddressCounts>,
}

/// Accepts web clients on `listener` until the server stops taking clients, each in a
/// task of its own: at most [`MAX_HANDSHAKES`] at once, and
/// [`WebLimits::max_requests_per_address`] from one address (more are closed at once).
pub(crate) async fn accept_web<R: Runtime>(
    listener: R::TcpListener,
    shared: WebShared,
    intake: mpsc::WeakSender<ConnectionEvent<R::Stream>>,
    stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(shared);
    let requests = Handshakes::new(shared.limits.max_requests_per_address);
    while let Some((stream, peer, ticket)) =
        requests.next::<R>(&listener, &stop, "web", || {}).await
    {
        let shared = Arc::clone(&shared);
        let intake = intake.clone();
        R::spawn(async move {
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            let upgraded = futures_lite::future::or(answer::<R>(stream, peer, &shared), async {
                R::sleep_until(deadline).await;
                debug!(%peer, "web request timed out");
                None
            })
            .await;
            drop(ticket);
            // No engine loop (shut down): the client is dropped, as a plain one would be.
            if let (Some(socket), Some(events)) = (upgraded, intake.upgrade()) {
                let _ = events
                    .send(ConnectionEvent::AcceptedWebSocket(socket, peer))
                    .await;
            }
        });
    }
}

/// What a request gets.
enum Route {
    /// A response written as it is, then the connection closed: one of the web client's
    /// files, or a refusal with its reason.
    Answer(Response),
    /// A WebSocket, once the 101 answer is written.
    Upgrade { key: String },
}

/// Reads the client's request and answers it; returns the upgraded stream for a
/// WebSocket, `None` once any other answer is written.
async fn answer<R: Runtime>(
    tcp: R::TcpStream,
    peer: SocketAddr,
    shared: &WebShared,
) -> Option<R::Stream> {
    let mut stream = match &shared.options.tls {
        Some(acceptor) => match R::tls_accept(acceptor.config(), tcp).await {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%peer, %error, "TLS handshake of a web client failed");
                return None;
            }
        },
        None => R::Stream::from(tcp),
    };
    let (request, read_ahead) = match read_request(&mut stream).await {
        Ok(read) => read,
        Err(HeadError::Io(error)) => {
            debug!(%peer, %error, "web request not read");
            return None;
        }
        Err(HeadError::TooLarge) => {
            let refusal =
                Response::text("431 Request Header Fields Too Large", "request too large\n");
            let _ = write_response(&mut stream, &refusal).await;
            return None;
        }
        Err(HeadError::Malformed) => {
            let refusal = Response::text("400 Bad Request", "not an HTTP/1.1 request\n");
            let _ = write_response(&mut stream, &refusal).await;
            return None;
        }
    };
    let response = match route(&request, peer, shared) {
        Route::Answer(response) => response,
        Route::Upgrade { key } => {
            let switching = Response {
                status: "101 Switching Protocols",
                headers: vec![
                    ("Upgrade", "websocket".to_owned()),
                    ("Connection", "Upgrade".to_owned()),
                    ("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes())),
                ],
                body: b"",
                text: String::new(),
            };
            if let Err(error) = write_response(&mut stream, &switching).await {
                debug!(%peer, %error, "WebSocket upgrade not written");
                return None;
            }
            let socket = WebSocket::new(stream, read_ahead, shared.limits.max_line_bytes).await;
            return Some(R::web_socket(socket));
        }
    };
    if let Err(error) = write_response(&mut stream, &response).await {
        debug!(%peer, %error, "web response not written");
        return None;
    }
    let _ = std::future::poll_fn(|cx| crate::Transport::poll_close(&mut stream, cx)).await;
    None
}

/// Decides what `request` gets.
fn route(request: &Request, peer: SocketAddr, shared: &WebShared) -> Route {
    if request.method != "GET" {
        let mut refusal = Response::text("405 Method Not Allowed", "only GET\n");
        refusal.headers.push(("Allow", "GET".to_owned()));
        return Route::Answer(refusal);
    }
    let file = |body: &'static [u8], content_type: &str| {
        Route::Answer(Response {
            status: "200 OK",
            headers: vec![
                ("Content-Type", content_type.to_owned()),
                ("Cache-Control", "no-cache".to_owned()),
                ("X-Content-Type-Options", "nosniff".to_owned()),
                ("Referrer-Policy", "no-referrer".to_owned()),
                (
                    "Content-Security-Policy",
                    CONTENT_SECURITY_POLICY.to_owned(),
                ),
            ],
            body,
            text: String::new(),
        })
    };
    match request.path.as_str() {
        "/" | "/index.html" => return file(INDEX_HTML, "text/html; charset=utf-8"),
        "/app.js" => return file(APP_JS, "text/javascript; charset=utf-8"),
        "/app.css" => return file(APP_CSS, "text/css; charset=utf-8"),
        WEBSOCKET_PATH => {}
        _ => return Route::Answer(Response::text("404 Not Found", "not found\n")),
    }
    if !(request.upgrade_websocket && request.connection_upgrade) {
        let mut refusal = Response::text(
            "426 Upgrade Required",
            "this is the WebSocket endpoint: connect with a WebSocket client\n",
        );
        refusal.headers.push(("Upgrade", "websocket".to_owned()));
        return Route::Answer(refusal);
    }
    if request.websocket_version.as_deref() != Some("13") {
        let mut refusal = Response::text("426 Upgrade Required", "WebSocket version 13 only\n");
        refusal
            .headers
            .push(("Sec-WebSocket-Version", "13".to_owned()));
        return Route::Answer(refusal);
    }
    let Some(key) = request.websocket_key.clone() else {
        return Route::Answer(Response::text("400 Bad Request", "no Sec-WebSocket-Key\n"));
    };
    if let Some(origin) = &request.origin
        && !origin_allowed(origin, request.host.as_deref(), &shared.options)
    {
        debug!(%peer, %origin, "WebSocket from a foreign origin refused");
        return Route::Answer(Response::text(
            "403 Forbidden",
            format!("origin {origin} may not open a chat here\n"),
        ));
    }
    let connections = shared.counts.get(peer.ip());
    if connections >= shared.limits.max_connections_per_address {
        debug!(%peer, connections, "WebSocket refused: address at its connection limit");
        return Route::Answer(Response::text(
            "429 Too Many Requests",
            "too many connections from your address\n",
        ));
    }
    Route::Upgrade { key }
}

/// Whether a page from `origin` may open a WebSocket here: the listener's own origin
/// (`Host`, over the listener's scheme), or one the operator allowed.
fn origin_allowed(origin: &str, host: Option<&str>, options: &WebOptions) -> bool {
    let origin = origin.trim_end_matches('/');
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if let Some(host) = host
        && origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"))
    {
        return true;
    }
    options
        .allowed_origins
        .iter()
        .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_origin_and_allowed_origins_pass_others_do_not() {
        let options = WebOptions {
            allowed_origins: vec!["https://chat.example.org/".to_owned()],
            tls: None,
        };
        let host = Some("127.0.0.1:8080");
        assert!(origin_allowed("http://127.0.0.1:8080", host, &options));
        assert!(origin_allowed("https://CHAT.example.org", host, &options));
        assert!(!origin_allowed("https://127.0.0.1:8080", host, &options));
        assert!(!origin_allowed("http://evil.example", host, &options));
        assert!(!origin_allowed("null", host, &options));
        assert!(!origin_allowed(
            "http://127.0.0.1:8080",
            None,
            &WebOptions::default()
        ));
    }
}
