//! The end-to-end suite (`wur2-testkit`) against the Tokio driver, through its embedder
//! API, on SQLite and (when configured) PostgreSQL, with plain, TLS and WebSocket clients.

use std::path::PathBuf;
use std::time::Duration;

use wur2_engine::Config;
use wur2_store::Store;
use wur2_testkit::{Target, store_config};
use wur2_tokio::{Options, ServerHandle};

/// Servers on a multi-threaded Tokio runtime of their own; with `tls`, the clients use the
/// server's TLS listener.
struct Tokio {
    tls: bool,
    /// The clients use the server's web listener (JSON lines over WebSocket).
    web: bool,
}

/// One server, its runtime and its store's writer.
struct TokioServer {
    runtime: tokio::runtime::Runtime,
    handle: ServerHandle,
    target: Target,
    writer: tokio::task::JoinHandle<()>,
}

/// A listener on a free loopback port.
async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
}

impl wur2_testkit::Driver for Tokio {
    type Server = TokioServer;

    fn start(&self, url: &str, config: Config, files_dir: Option<PathBuf>) -> TokioServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the server");
        let (handle, target, writer) = runtime.block_on(async {
            let (store, writer) = Store::open(url, store_config())
                .await
                .expect("open the store");
            let writer = tokio::spawn(writer.run());
            let listener = bind().await;
            let options = Options {
                shutdown_timeout: Duration::from_secs(10),
                files_dir,
                ..Options::default()
            };
            let mut handle =
                wur2_tokio::serve_with(listener, store, config, options).expect("serve");
            let tls_listener = match self.tls {
                true => Some(bind().await),
                false => None,
            };
            let target = match self.web {
                true => wur2_testkit::web_target(&mut handle, bind().await),
                false => wur2_testkit::target(&mut handle, tls_listener),
            };
            (handle, target, writer)
        });
        TokioServer {
            runtime,
            handle,
            target,
            writer,
        }
    }
}

impl wur2_testkit::Server for TokioServer {
    fn addr(&self) -> Target {
        self.target
    }

    fn stop(self) {
        self.runtime.block_on(async {
            self.handle.shutdown().await.expect("clean shutdown");
            tokio::time::timeout(Duration::from_secs(10), self.writer)
                .await
                .expect("the store writer stops")
                .expect("the store writer does not panic");
        });
    }
}

wur2_testkit::suite!(Tokio {
    tls: false,
    web: false
});
wur2_testkit::suite!(tls: Tokio {
    tls: true,
    web: false
});
wur2_testkit::suite!(web: Tokio {
    tls: false,
    web: true
});
