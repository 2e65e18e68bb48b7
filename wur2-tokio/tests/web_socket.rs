//! The web listener without a browser: the embedded page, the WebSocket upgrade and what
//! is refused before it (a foreign `Origin`, an address at its connection limit), and what
//! closes a WebSocket with which code (a frame over the line limit, a binary frame outside
//! an upload, a text frame that is not UTF-8). Raw HTTP where the status line matters, a
//! tungstenite client where frames do.

use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use async_tungstenite::tungstenite::{Bytes, Message};
use futures_lite::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wur2_engine::Config;
use wur2_store::Store;
use wur2_testkit::{config, store_config};
use wur2_tokio::{Options, ServerHandle, WebOptions};

/// Longest wait for anything in these tests.
const STEP: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<TokioAdapter<TcpStream>>;

/// A server with a plain and a web listener on loopback, on this test's runtime.
struct Server {
    handle: ServerHandle,
    chat: SocketAddr,
    web: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn start(config: Config, web: WebOptions) -> Server {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let (store, writer) = Store::open(&url, store_config()).await.expect("open");
    tokio::spawn(writer.run());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut handle =
        wur2_tokio::serve_with(listener, store, config, Options::default()).expect("serve");
    let chat = handle.local_addr();
    let web_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let web = handle.serve_web(web_listener, web).expect("serve web");
    Server {
        handle,
        chat,
        web,
        _dir: dir,
    }
}

/// Sends `request` as it is and reads the response: up to the end of the stream (the
/// server closes after an answer), or up to the end of the head for a 101 (the stream
/// then speaks WebSocket).
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(STEP, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read the response");
        response.extend_from_slice(&buf[..n]);
        let head_done = response.windows(4).any(|w| w == b"\r\n\r\n");
        if n == 0 || (head_done && response.starts_with(b"HTTP/1.1 101 ")) {
            return String::from_utf8_lossy(&response).into_owned();
        }
    }
}

/// An upgrade request for the WebSocket endpoint, with `origin` when given.
fn upgrade_request(addr: SocketAddr, origin: Option<&str>) -> String {
    let origin = origin
        .map(|origin| format!("Origin: {origin}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
}

/// A WebSocket to the web listener, with `origin` when given.
async fn ws(addr: SocketAddr, origin: Option<&str>) -> Socket {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("a request");
    if let Some(origin) = origin {
        request.headers_mut().insert(
            "Origin",
            HeaderValue::from_str(origin).expect("an origin header"),
        );
    }
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (socket, _) = tokio::time::timeout(
        STEP,
        async_tungstenite::tokio::client_async(request, stream),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade");
    socket
}

/// The next message, within [`STEP`]; `None` once the stream ended.
async fn next(socket: &mut Socket) -> Option<Message> {
    tokio::time::timeout(STEP, socket.next())
        .await
        .expect("a message in time")
        .and_then(Result::ok)
}

/// Reads text frames until one whose `type` is `kind`; returns it.
async fn expect_type(socket: &mut Socket, kind: &str) -> Value {
    loop {
        match next(socket).await {
            Some(Message::Text(text)) => {
                let value: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("a text frame that is not JSON: {text}: {e}"));
                if value["type"] == kind {
                    return value;
                }
            }
            Some(Message::Close(frame)) => panic!("closed ({frame:?}) before a {kind}"),
            Some(_) => {}
            None => panic!("ended before a {kind}"),
        }
    }
}

/// Reads until the server's close frame; returns its code and reason.
async fn expect_close(socket: &mut Socket) -> (CloseCode, String) {
    loop {
        match next(socket).await {
            Some(Message::Close(Some(frame))) => return (frame.code, frame.reason.to_string()),
            Some(Message::Close(None)) => panic!("a close frame without a code"),
            Some(_) => {}
            None => panic!("the stream ended without a close frame"),
        }
    }
}

/// On a new server, a new WebSocket sends `message` once prompted; returns the close
/// code and reason the server answers it with.
async fn close_after_the_prompt(message: Message) -> (CloseCode, String) {
    let server = start(config(), WebOptions::default()).await;
    let mut web = ws(server.web, None).await;
    expect_type(&mut web, "prompt").await;
    send(&mut web, message).await;
    let closed = expect_close(&mut web).await;
    server.handle.shutdown().await.expect("shutdown");
    closed
}

async fn send(socket: &mut Socket, message: Message) {
    tokio::time::timeout(STEP, socket.send(message))
        .await
        .expect("send in time")
        .expect("send");
}

/// Reads the plain client `tcp` until what arrived contains `text`.
async fn read_until(tcp: &mut TcpStream, text: &str) {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(text) {
        let n = tokio::time::timeout(STEP, tcp.read(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
        assert!(n > 0, "closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

async fn register(socket: &mut Socket, name: &str) {
    send(
        socket,
        Message::text(format!("/register {name} correct-horse-battery")),
    )
    .await;
    let welcome = expect_type(socket, "welcome").await;
    assert_eq!(welcome["user"], name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_its_script_and_style_are_served_with_a_strict_policy() {
    let server = start(config(), WebOptions::default()).await;
    let page = http(server.web, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Type: text/html; charset=utf-8"),
        "{page}"
    );
    assert!(page.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"));
    assert!(
        page.contains("<script src=\"app.js\""),
        "the page loads its script"
    );
    let script = http(server.web, "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(script.contains("text/javascript") && script.contains("new WebSocket"));
    let style = http(server.web, "GET /app.css HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(style.starts_with("HTTP/1.1 200 OK\r\n") && style.contains("text/css"));
    let missing = http(server.web, "GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = http(server.web, "POST / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let plain = http(server.web, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 426 "), "{plain}");
    let garbage = http(server.web, "\x16\x03\x01garbage\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_speaks_json_lines_with_tcp_clients_from_its_first_frame() {
    let server = start(config(), WebOptions::default()).await;
    let mut web = ws(server.web, None).await;
    // JSON from the very first frame, without /mode json.
    let banner = expect_type(&mut web, "info").await;
    assert!(banner["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(expect_type(&mut web, "prompt").await["prompt"], "account");
    register(&mut web, "wanda").await;

    let mut tcp = TcpStream::connect(server.chat).await.expect("connect");
    tcp.write_all(b"/register tom correct-horse-battery\n/ping in\n")
        .await
        .expect("send");
    read_until(&mut tcp, "PONG in").await;
    tcp.write_all(b"hello from tcp\n").await.expect("send");
    let message = expect_type(&mut web, "message").await;
    assert_eq!(message["from"], "tom");
    assert_eq!(message["text"], "hello from tcp");

    // One line per frame; a trailing line break is allowed.
    send(&mut web, Message::text("hello from the web\n")).await;
    read_until(&mut tcp, "[Global] wanda: hello from the web").await;
    // `/mode text` cannot be: raw file chunks do not fit text frames. It stays JSON.
    send(&mut web, Message::text("/mode text")).await;
    assert_eq!(expect_type(&mut web, "mode").await["mode"], "json");

    // A close from the server (here /close) is a normal close, after the goodbye.
    send(&mut web, Message::text("/close")).await;
    expect_type(&mut web, "goodbye").await;
    assert_eq!(expect_close(&mut web).await.0, CloseCode::Normal);
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_before_the_upgrade_and_allowed_ones_pass() {
    let options = WebOptions {
        allowed_origins: vec!["https://chat.example.org".to_owned()],
        tls: None,
    };
    let server = start(config(), options).await;
    let addr = server.web;
    let foreign = http(addr, &upgrade_request(addr, Some("http://evil.example"))).await;
    assert!(foreign.starts_with("HTTP/1.1 403 "), "{foreign}");
    assert!(foreign.contains("origin http://evil.example may not open a chat here"));
    let same = http(
        addr,
        &upgrade_request(addr, Some(&format!("http://{addr}"))),
    )
    .await;
    assert!(same.starts_with("HTTP/1.1 101 "), "{same}");
    let allowed = http(
        addr,
        &upgrade_request(addr, Some("https://chat.example.org")),
    )
    .await;
    assert!(allowed.starts_with("HTTP/1.1 101 "), "{allowed}");
    // A program sends no Origin: it is not a page of another site.
    let mut program = ws(addr, None).await;
    expect_type(&mut program, "prompt").await;
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_at_its_connection_limit_is_refused_before_the_upgrade() {
    let limited = Config {
        max_connections_per_address: 2,
        ..config()
    };
    let server = start(limited, WebOptions::default()).await;
    let mut first = ws(server.web, None).await;
    expect_type(&mut first, "prompt").await;
    let mut second = TcpStream::connect(server.chat).await.expect("connect");
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(STEP, second.read(&mut buf))
        .await
        .expect("banner in time")
        .expect("read");
    assert!(n > 0);
    let refused = http(server.web, &upgrade_request(server.web, None)).await;
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    assert!(refused.contains("too many connections from your address"));

    // Once one leaves, the address may upgrade again.
    drop(second);
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let answer = http(server.web, &upgrade_request(server.web, None)).await;
        if answer.starts_with("HTTP/1.1 101 ") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_line_limit_close_with_1009() {
    let server = start(config(), WebOptions::default()).await;
    let limit = config().max_line_bytes;
    // Over the line limit, under the frame size tungstenite reads at all.
    let mut web = ws(server.web, None).await;
    expect_type(&mut web, "prompt").await;
    send(&mut web, Message::text("x".repeat(limit + 1))).await;
    let (code, reason) = expect_close(&mut web).await;
    assert_eq!(code, CloseCode::Size);
    assert_eq!(reason, format!("line too long (max {limit} bytes)"));
    // Far over both: the server refuses at the frame's header, and must read and drop
    // the rest (up to its linger limit) rather than reset the connection, which would
    // destroy the close frame before the client reads it.
    let mut web = ws(server.web, None).await;
    expect_type(&mut web, "prompt").await;
    send(&mut web, Message::text("y".repeat(200 * 1024))).await;
    assert_eq!(expect_close(&mut web).await.0, CloseCode::Size);
    // A line of exactly the limit is a line.
    let mut web = ws(server.web, None).await;
    register(&mut web, "lima").await;
    send(
        &mut web,
        Message::text(format!("/ping {}", "z".repeat(limit - 6))),
    )
    .await;
    expect_type(&mut web, "pong").await;
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_outside_an_upload_closes_with_1003() {
    let server = start(config(), WebOptions::default()).await;
    let mut web = ws(server.web, None).await;
    register(&mut web, "bina").await;
    send(&mut web, Message::binary(b"/list\n".to_vec())).await;
    let (code, reason) = expect_close(&mut web).await;
    assert_eq!(code, CloseCode::Unsupported);
    assert!(reason.contains("upload"), "{reason}");
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_travels_in_binary_frames_and_no_more_than_announced() {
    let server = start(config(), WebOptions::default()).await;
    let mut sender = ws(server.web, None).await;
    register(&mut sender, "upla").await;
    let mut recipient = ws(server.web, None).await;
    register(&mut recipient, "uplb").await;
    let file: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    send(
        &mut sender,
        Message::text(format!("/send uplb data.bin {}", file.len())),
    )
    .await;
    for slice in file.chunks(30_000) {
        send(&mut sender, Message::binary(slice.to_vec())).await;
    }
    let offer = expect_type(&mut recipient, "file_offer").await;
    assert_eq!(offer["size"], file.len());
    let mut received = Vec::new();
    loop {
        let Some(Message::Text(text)) = next(&mut recipient).await else {
            panic!("the transfer ended early");
        };
        let value: Value = serde_json::from_str(&text).expect("JSON");
        match value["type"].as_str() {
            Some("file_chunk") => {
                use base64::Engine as _;
                let data = value["data"].as_str().expect("chunk data");
                received.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .expect("base64"),
                );
            }
            Some("file_done") => break,
            _ => {}
        }
    }
    assert_eq!(received, file, "byte-exact");
    // Chat lines come back as text frames once the upload is complete.
    send(&mut sender, Message::text("/ping after")).await;
    expect_type(&mut sender, "pong").await;

    // More bytes than announced: refused.
    send(&mut sender, Message::text("/send uplb two.bin 2")).await;
    send(&mut sender, Message::binary(b"abc".to_vec())).await;
    assert_eq!(expect_close(&mut sender).await.0, CloseCode::Policy);
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let bad = Frame::message(
        Bytes::from_static(b"bad \xff\xfe bytes"),
        OpCode::Data(Data::Text),
        true,
    );
    let closed = close_after_the_prompt(Message::Frame(bad)).await;
    assert_eq!(closed, (CloseCode::Invalid, "invalid UTF-8".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_break_inside_a_text_frame_closes_with_1008() {
    let closed = close_after_the_prompt(Message::text("/ping a\n/ping b")).await;
    assert_eq!(
        closed,
        (CloseCode::Policy, "one line per text frame".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_is_answered_with_a_pong_at_once() {
    let server = start(config(), WebOptions::default()).await;
    let mut web = ws(server.web, None).await;
    expect_type(&mut web, "prompt").await;
    send(
        &mut web,
        Message::Ping(Bytes::from_static(b"are you there")),
    )
    .await;
    loop {
        match next(&mut web).await {
            Some(Message::Pong(data)) => {
                assert_eq!(&data[..], b"are you there");
                break;
            }
            Some(Message::Text(_)) => {}
            other => panic!("no pong: {other:?}"),
        }
    }
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reader_keeping_up_is_never_taken_for_slow_and_pongs_come_between_frames() {
    // The engine counts bytes queued per client from the bytes its transport reports
    // written: a WebSocket writes frames, and must report the engine's bytes they carry,
    // or a reader that keeps up would look slow after a few kilobytes.
    let server = start(
        Config {
            max_queued_bytes: 4096,
            ..config()
        },
        WebOptions::default(),
    )
    .await;
    let mut web = ws(server.web, None).await;
    register(&mut web, "reader").await;
    let mut tcp = TcpStream::connect(server.chat).await.expect("connect");
    tcp.write_all(b"/register writer correct-horse-battery\n")
        .await
        .expect("send");
    expect_type(&mut web, "join").await;
    let padding = "p".repeat(150);
    for i in 0..300 {
        tcp.write_all(format!("message {i} {padding}\n").as_bytes())
            .await
            .expect("send");
        if i % 10 == 0 {
            send(&mut web, Message::Ping(Bytes::from(format!("ping {i}")))).await;
        }
        loop {
            match next(&mut web).await {
                Some(Message::Text(text)) => {
                    let line: Value = serde_json::from_str(&text).expect("JSON");
                    if line["type"] == "message" {
                        assert_eq!(line["text"], format!("message {i} {padding}"));
                        break;
                    }
                }
                Some(Message::Pong(data)) => assert!(data.starts_with(b"ping ")),
                other => panic!("message {i} did not come: {other:?}"),
            }
        }
    }
    // 300 lines of over 200 bytes each went out: far more than the 4 KiB a slow reader
    // may have queued; the reader is still here.
    send(&mut web, Message::text("/ping still here")).await;
    expect_type(&mut web, "pong").await;
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_of_the_plain_listener_apply_login_timeout_and_flood() {
    let strict = Config {
        login_timeout: Duration::from_millis(300),
        flood_lines_per_second: 1,
        flood_burst: 2,
        max_pending_lines: 5,
        ..config()
    };
    let server = start(strict, WebOptions::default()).await;
    let mut idle = ws(server.web, None).await;
    assert_eq!(
        expect_type(&mut idle, "error").await["code"],
        "login_timeout"
    );
    assert_eq!(expect_close(&mut idle).await.0, CloseCode::Normal);

    let mut flooder = ws(server.web, None).await;
    expect_type(&mut flooder, "prompt").await;
    for n in 0..50 {
        if flooder
            .send(Message::text(format!("/ping {n}")))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(expect_type(&mut flooder, "error").await["code"], "flooding");
    server.handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_page_is_https_and_the_websocket_wss() {
    use tokio_rustls::rustls;

    let certificate = wur2_testkit::certificate();
    let (cert, key) = (&certificate.cert_path, &certificate.key_path);
    let options = WebOptions {
        allowed_origins: Vec::new(),
        tls: Some(wur2_tokio::TlsAcceptor::from_pem_files(cert, key).expect("load")),
    };
    let server = start(config(), options).await;

    let connector = certificate.connector();
    let connect = || async {
        let tcp = TcpStream::connect(server.web).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        tokio::time::timeout(STEP, connector.connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("TLS handshake")
    };

    let mut page = connect().await;
    page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let mut response = Vec::new();
    // The server closes after the page; a TLS close without close_notify is fine here.
    let _ = tokio::time::timeout(STEP, page.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    // Same origin is https:// over a TLS listener.
    let port = server.web.port();
    let mut request = format!("wss://localhost:{port}/ws")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "Origin",
        HeaderValue::from_str(&format!("https://localhost:{port}")).expect("origin"),
    );
    let (mut web, _) = tokio::time::timeout(
        STEP,
        async_tungstenite::tokio::client_async(request, connect().await),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade over TLS");
    let first = tokio::time::timeout(STEP, web.next())
        .await
        .expect("a message in time")
        .and_then(Result::ok);
    let Some(Message::Text(text)) = first else {
        panic!("no banner: {first:?}");
    };
    assert!(text.contains("\"type\":\"info\""), "{text}");
    register_wss(&mut web).await;
    server.handle.shutdown().await.expect("shutdown");
}

/// Registers over a WebSocket on TLS and checks the welcome.
async fn register_wss<S>(socket: &mut WebSocketStream<TokioAdapter<S>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(
        STEP,
        socket.send(Message::text("/register wendy correct-horse-battery")),
    )
    .await
    .expect("send in time")
    .expect("send");
    loop {
        let message = tokio::time::timeout(STEP, socket.next())
            .await
            .expect("a message in time")
            .and_then(Result::ok);
        match message {
            Some(Message::Text(text)) if text.contains("\"type\":\"welcome\"") => return,
            Some(Message::Text(_)) => {}
            other => panic!("no welcome: {other:?}"),
        }
    }
}
