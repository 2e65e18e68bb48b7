//! The `wur2` binary's operator settings beyond chat rules: chat over TLS, the web client
//! and its WebSocket, the metrics and health listener, and history retention. Everything that can fail (reading the
//! certificate, binding a port) fails at start, as one clear line, never later.
//!
//! It owns the SIGHUP handler (certificate reload) and the tasks it starts; it never
//! touches chat state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wur2_store::Store;
use wur2_tokio::ServerHandle;
use wur2_tokio::metrics::{self, Metrics, MetricsServer};
use wur2_tokio::{TlsAcceptor, WEBSOCKET_PATH, WebOptions};

/// TLS, web, metrics and retention flags of `wur2` (all off by default).
#[derive(clap::Args, Debug)]
pub(crate) struct OperatorArgs {
    /// Also serve chat over TLS on this address (for example 0.0.0.0:6697), beside the
    /// plain listener. Needs --tls-cert and --tls-key; SIGHUP reloads both files.
    #[arg(long, env = "WUR2_TLS_LISTEN", requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain, PEM, leaf first.
    #[arg(long, env = "WUR2_TLS_CERT", requires = "tls_listen")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "WUR2_TLS_KEY", requires = "tls_listen")]
    tls_key: Option<PathBuf>,
    /// Serve the web client (GET /) and its WebSocket (/ws, JSON lines, one object per text
    /// frame) on this address, for example 127.0.0.1:8080. With --tls-cert, HTTPS and
    /// wss:// with the same certificate. Off when unset.
    #[arg(long, env = "WUR2_WEB_LISTEN")]
    web_listen: Option<SocketAddr>,
    /// An origin (scheme://host:port, as browsers send it) whose pages may open the
    /// WebSocket, besides the web listener's own (the page it serves): for a page behind a
    /// reverse proxy under another name. Repeat the flag, or separate with commas.
    #[arg(
        long,
        env = "WUR2_WEB_ALLOWED_ORIGIN",
        value_delimiter = ',',
        requires = "web_listen"
    )]
    web_allowed_origin: Vec<String>,
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) over
    /// HTTP on this address, for example 127.0.0.1:9690. Off when unset.
    #[arg(long, env = "WUR2_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Delete channel messages and delivered private messages older than this, checked
    /// in the background (for example 30d or 12h). Unset keeps history for ever.
    #[arg(long, env = "WUR2_HISTORY_RETENTION", value_parser = parse_retention)]
    history_retention: Option<Duration>,
}

/// A retention period: a humantime duration such as `30d`, `12h` or `90m`, above zero.
fn parse_retention(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// Listeners bound and certificate read, before the chat server starts.
pub(crate) struct Prepared {
    tls: Option<(TcpListener, TlsAcceptor)>,
    web: Option<(TcpListener, Vec<String>)>,
    metrics: Option<TcpListener>,
    retention: Option<Duration>,
}

impl OperatorArgs {
    /// Reads the certificate and binds the extra listeners.
    pub(crate) async fn prepare(&self) -> anyhow::Result<Prepared> {
        let tls = match (&self.tls_listen, &self.tls_cert, &self.tls_key) {
            (Some(addr), Some(cert), Some(key)) => {
                let acceptor = TlsAcceptor::from_pem_files(cert, key)
                    .context("cannot use the TLS certificate")?;
                let listener = match crate::listener::chat_listener(*addr) {
                    Ok(listener) => listener,
                    Err(error) => bail!("cannot listen for TLS on {addr}: {error}"),
                };
                Some((listener, acceptor))
            }
            (None, None, None) => None,
            // clap's `requires` makes the three go together.
            _ => bail!("--tls-listen, --tls-cert and --tls-key go together"),
        };
        let web = match &self.web_listen {
            Some(addr) => match crate::listener::chat_listener(*addr) {
                Ok(listener) => Some((listener, self.web_allowed_origin.clone())),
                Err(error) => bail!("cannot listen for the web client on {addr}: {error}"),
            },
            None => None,
        };
        let metrics = match &self.metrics_listen {
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(listener) => Some(listener),
                Err(error) => bail!("cannot listen for metrics on {addr}: {error}"),
            },
            None => None,
        };
        Ok(Prepared {
            tls,
            web,
            metrics,
            retention: self.history_retention,
        })
    }
}

/// The tasks started for the operator; stop them after the chat server.
pub(crate) struct Running {
    metrics: Option<MetricsServer>,
    tasks: Vec<JoinHandle<()>>,
}

impl Prepared {
    /// Starts TLS and the web listener on `server`, the metrics listener and the retention
    /// task.
    pub(crate) fn start(
        self,
        server: &mut ServerHandle,
        metrics: Metrics,
        store: &Store,
    ) -> anyhow::Result<Running> {
        let mut tasks = Vec::new();
        // SIGHUP is always handled: `systemctl reload` must never stop the server.
        let acceptor = match self.tls {
            Some((listener, acceptor)) => {
                let addr = server.serve_tls(listener, acceptor.clone())?;
                info!("listening for TLS on {addr}");
                Some(acceptor)
            }
            None => None,
        };
        if let Some((listener, allowed_origins)) = self.web {
            let options = WebOptions {
                allowed_origins,
                tls: acceptor.clone(),
            };
            let scheme = if options.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let addr = server.serve_web(listener, options)?;
            info!("web client on {scheme}://{addr}/ (WebSocket on {WEBSOCKET_PATH})");
        }
        // Registered here, before the server says it is ready, so no early SIGHUP is lost.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangups) => tasks.push(tokio::spawn(reload_on_sighup(hangups, acceptor))),
            Err(error) => warn!(%error, "cannot listen for SIGHUP; nothing can be reloaded"),
        }
        let metrics = match self.metrics {
            Some(listener) => {
                let exporter = metrics::serve::<wur2_tokio::Tokio, _>(
                    listener,
                    metrics,
                    server.status(),
                    store.clone(),
                )
                .context("cannot serve metrics")?;
                info!(
                    "metrics on http://{}/metrics, health on /healthz",
                    exporter.local_addr()
                );
                Some(exporter)
            }
            None => None,
        };
        if let Some(retention) = self.retention {
            info!(
                "history older than {} is deleted (checked every {})",
                humantime::format_duration(retention),
                humantime::format_duration(wur2_store::retention::prune_interval(retention))
            );
            tasks.push(tokio::spawn(store.clone().keep_history_for(retention)));
        }
        Ok(Running { metrics, tasks })
    }
}

impl Running {
    /// Stops the metrics listener, the reload handler and the retention task.
    pub(crate) fn stop(self) {
        if let Some(metrics) = self.metrics {
            metrics.stop();
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Reads the certificate and key again on every SIGHUP; a bad pair keeps the old one.
/// Without TLS there is nothing to reload, and the signal is only logged.
async fn reload_on_sighup(mut hangups: tokio::signal::unix::Signal, acceptor: Option<TlsAcceptor>) {
    while hangups.recv().await.is_some() {
        match &acceptor {
            Some(acceptor) => {
                if let Err(error) = acceptor.reload() {
                    warn!("SIGHUP: TLS certificate not reloaded, the old one stays: {error}");
                }
            }
            None => info!("SIGHUP: nothing to reload (no --tls-listen)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_days_and_hours_and_refuses_zero() {
        assert_eq!(parse_retention("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_retention("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(parse_retention("0s").is_err());
        assert!(parse_retention("soon").is_err());
    }
}
