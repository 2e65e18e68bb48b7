//! The end-to-end suite (`wur2-testkit`) against the async-std driver, through its embedder
//! API, on SQLite and (when configured) PostgreSQL, with plain, TLS and WebSocket clients. The very
//! same tests as the Tokio driver's `tests/tokio_driver.rs`.

use std::path::PathBuf;
use std::time::Duration;

use async_std::task::JoinHandle;
use wur2_async_std::{Options, ServerHandle};
use wur2_engine::Config;
use wur2_store::Store;
use wur2_testkit::{Target, store_config};

/// Servers on async-std's global executor. No Tokio runtime is current where the store is
/// opened and served, so sqlx runs on async-std here. With `tls`, the clients use the
/// server's TLS listener.
struct AsyncStd {
    tls: bool,
    /// The clients use the server's web listener (JSON lines over WebSocket).
    web: bool,
}

/// One server and its store's writer.
struct AsyncStdServer {
    handle: ServerHandle,
    target: Target,
    writer: JoinHandle<()>,
}

/// A listener on a free loopback port.
async fn bind() -> async_std::net::TcpListener {
    async_std::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
}

impl wur2_testkit::Driver for AsyncStd {
    type Server = AsyncStdServer;

    fn start(&self, url: &str, config: Config, files_dir: Option<PathBuf>) -> AsyncStdServer {
        async_std::task::block_on(async {
            // sqlx chooses Tokio only when a Tokio runtime is current; here none is, so
            // it runs on async-std (README: "Tokio in the dependency tree").
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "no Tokio runtime where the async-std server runs"
            );
            let (store, writer) = Store::open(url, store_config())
                .await
                .expect("open the store");
            let writer = async_std::task::spawn(writer.run());
            let listener = bind().await;
            let options = Options {
                shutdown_timeout: Duration::from_secs(10),
                files_dir,
                ..Options::default()
            };
            let mut handle =
                wur2_async_std::serve_with(listener, store, config, options).expect("serve");
            let tls_listener = match self.tls {
                true => Some(bind().await),
                false => None,
            };
            let target = match self.web {
                true => wur2_testkit::web_target(&mut handle, bind().await),
                false => wur2_testkit::target(&mut handle, tls_listener),
            };
            AsyncStdServer {
                handle,
                target,
                writer,
            }
        })
    }
}

impl wur2_testkit::Server for AsyncStdServer {
    fn addr(&self) -> Target {
        self.target
    }

    fn stop(self) {
        async_std::task::block_on(async {
            self.handle.shutdown().await.expect("clean shutdown");
            async_std::future::timeout(Duration::from_secs(10), self.writer)
                .await
                .expect("the store writer stops");
        });
    }
}

wur2_testkit::suite!(AsyncStd {
    tls: false,
    web: false
});
wur2_testkit::suite!(tls: AsyncStd {
    tls: true,
    web: false
});
wur2_testkit::suite!(web: AsyncStd {
    tls: false,
    web: true
});
