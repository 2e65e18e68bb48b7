//! The WUR2 chat server embedded in an existing Tokio application, next to the
//! application's own services: here an HTTP status endpoint and a periodic job, all in one
//! runtime, stopped together.
//!
//! `cargo run -p wur2-tokio --example embed_tokio` serves chat on 127.0.0.1:6971 and the
//! status page on 127.0.0.1:8071 (SQLite file `embed_tokio.db`) until Ctrl-C; with
//! `-- --self-test` it uses free ports and a temporary database, connects two chat clients
//! and an HTTP client, checks what they get, shuts everything down and exits (0: it worked).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wur2_engine::Config;
use wur2_store::{Store, StoreConfig};
use wur2_tokio::{Options, ServerHandle};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let self_test = std::env::args().any(|arg| arg == "--self-test");
    let temp = tempfile::tempdir()?;
    let (chat_addr, status_addr, database) = if self_test {
        let file = temp.path().join("chat.db");
        (
            "127.0.0.1:0",
            "127.0.0.1:0",
            format!("sqlite://{}", file.display()),
        )
    } else {
        (
            "127.0.0.1:6971",
            "127.0.0.1:8071",
            "sqlite://embed_tokio.db".to_string(),
        )
    };

    // The application's own services, stopped through its own signal.
    let (stop, stopped) = watch::channel(false);
    let status_listener = TcpListener::bind(status_addr).await?;
    let status_addr = status_listener.local_addr()?;
    let status = tokio::spawn(status_service(status_listener, stopped.clone()));
    let ticker = tokio::spawn(periodic_job(stopped));

    // The chat server: a store the application opens, a listener it binds, and the
    // engine's settings; `serve_with` returns at once and runs on this runtime's tasks.
    let (store, writer) = Store::open(&database, StoreConfig::default())
        .await
        .context("opening the chat store")?;
    let writer = tokio::spawn(writer.run()); // writes chat messages to the database
    let chat_listener = TcpListener::bind(chat_addr).await?;
    let config = Config {
        banner: "Welcome to the example app's chat!".to_string(),
        ..Config::default()
    };
    let options = Options {
        shutdown_timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let chat = wur2_tokio::serve_with(chat_listener, store, config, options)?;
    println!(
        "chat on {}, status on http://{status_addr}/",
        chat.local_addr()
    );

    let outcome = if self_test {
        run_self_test(chat.local_addr(), status_addr).await
    } else {
        tokio::signal::ctrl_c().await.map_err(Into::into)
    };
    shut_down(chat, writer, stop, [status, ticker]).await?;
    outcome?;
    if self_test {
        println!("self-test passed: chat and status served side by side, then shut down");
    }
    Ok(())
}

/// Stops everything in order: the chat server first (it tells every user, writes what is
/// queued and flushes the store), then the store's writer, then the other services.
async fn shut_down(
    chat: ServerHandle,
    writer: JoinHandle<()>,
    stop: watch::Sender<bool>,
    services: [JoinHandle<()>; 2],
) -> anyhow::Result<()> {
    chat.shutdown().await?;
    writer.await?;
    stop.send_replace(true);
    for service in services {
        service.await?;
    }
    Ok(())
}

/// An HTTP endpoint the application already had: one line of status per request.
async fn status_service(listener: TcpListener, mut stopped: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((mut socket, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await; // e.g. out of descriptors
            continue;
        };
        tokio::spawn(async move {
            let mut request = [0; 1024];
            let _ = socket.read(&mut request).await;
            let body = "ok: chat is running\n";
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// Some background work of the application, sharing the runtime with the chat server.
async fn periodic_job(mut stopped: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = interval.tick() => {} // e.g. refresh a cache
            _ = stopped.changed() => return,
        }
    }
}

/// A chat client as a person on `nc` would be.
struct Client(BufReader<TcpStream>);

impl Client {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        Ok(Client(BufReader::new(TcpStream::connect(addr).await?)))
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let line = format!("{line}\n");
        Ok(self.0.get_mut().write_all(line.as_bytes()).await?)
    }

    /// Reads lines until `wanted`; an error after 10 s or at the end of the stream.
    async fn expect(&mut self, wanted: &str) -> anyhow::Result<()> {
        let read = async {
            let mut line = String::new();
            while self.0.read_line(&mut line).await? > 0 {
                if line.trim_end() == wanted {
                    return Ok(());
                }
                line.clear();
            }
            anyhow::bail!("connection closed before {wanted:?}")
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .with_context(|| format!("waiting for {wanted:?}"))?
    }
}

async fn run_self_test(chat: SocketAddr, status: SocketAddr) -> anyhow::Result<()> {
    let mut alice = Client::connect(chat).await?;
    alice.expect("Welcome to the example app's chat!").await?;
    alice.send("/register alice correct-horse").await?;
    alice.expect("You are in Global").await?;
    let mut bob = Client::connect(chat).await?;
    bob.send("/register bob correct-horse").await?;
    bob.expect("You are in Global").await?;
    alice.send("hello from the embedded server").await?;
    bob.expect("[Global] alice: hello from the embedded server")
        .await?;

    let mut http = TcpStream::connect(status).await?;
    http.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    http.read_to_string(&mut response).await?;
    ensure!(
        response.starts_with("HTTP/1.1 200 OK"),
        "status: {response}"
    );
    ensure!(
        response.ends_with("ok: chat is running\n"),
        "status: {response}"
    );
    Ok(())
}
