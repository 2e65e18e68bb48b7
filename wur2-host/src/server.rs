//! A running server on any [`Runtime`]: [`serve_with`] starts the accept loop and the
//! engine's loop, [`ServerHandle`] adds TLS and web listeners and stops it gracefully.
//!
//! Accept loops only accept: a plain client goes to the engine's loop at once; a TLS
//! client first finishes its handshake in a task of its own (a bounded number at once,
//! each with a deadline), so a slow handshake never holds up anyone else.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tracing::{debug, warn};
use wur2_engine::{Config, Engine};

use crate::bus::BusLink;
use crate::connections::AddressCounts;
use crate::connections::ConnectionEvent;
use crate::descriptors;
use crate::driver::{Wired, driver};
use crate::runtime::Runtime;
use crate::status::{ServerStatus, StatusCell};
use crate::tls::TlsAcceptor;
use crate::web::{WebLimits, WebOptions, WebShared, accept_web};
use crate::{Options, PrepareError, Storage, prepare};

/// TLS handshakes in progress at once at most, per TLS listener; more clients wait in the
/// kernel's backlog.
pub const MAX_HANDSHAKES: usize = 1024;
/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener's socket failed (for example it has no local address).
    #[error("listener: {0}")]
    Io(#[from] io::Error),
    /// The files directory cannot be resolved.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The engine's task ended without finishing its shutdown (it panicked): a bug,
    /// reported instead of propagated.
    #[error("the server task failed")]
    Task,
    /// [`Config::cluster`] is set but no bus carries its publications: serve with
    /// [`serve_with_bus`].
    #[error("cluster mode (Config::cluster) needs a bus: serve with serve_with_bus")]
    ClusterWithoutBus,
    /// A bus was given but [`Config::cluster`] is `None`: the engine would never use it.
    #[error("a cluster bus needs Config::cluster (this node's name)")]
    BusWithoutCluster,
}

/// Runs a chat server on `listener` (bound by the caller) with `store` (opened by the
/// caller) and an engine `config`, whose `wall_clock` is set from the system clock when
/// `None` and `server_files` from [`Options::files_dir`]. Returns at once; the server runs
/// in tasks of `R` until [`ServerHandle::shutdown`]. Call it where `R`'s runtime is
/// current.
///
/// [`Config::cluster`] must be `None` here ([`ServeError::ClusterWithoutBus`]).
pub fn serve_with<R: Runtime, S: Storage>(
    listener: R::TcpListener,
    store: S,
    config: Config,
    options: Options,
) -> Result<ServerHandle<R>, ServeError> {
    if config.cluster.is_some() {
        return Err(ServeError::ClusterWithoutBus);
    }
    start::<R, S>(listener, store, config, options, None)
}

/// Runs one node of a cluster, like [`serve_with`]: `config` names the node
/// ([`Config::cluster`], else [`ServeError::BusWithoutCluster`]), and its publications
/// leave through `bus` (made by [`bus`](crate::bus()), whose [`BusPort`](crate::BusPort)
/// a transport serves). Local users are served whether or not the bus is up.
pub fn serve_with_bus<R: Runtime, S: Storage>(
    listener: R::TcpListener,
    store: S,
    config: Config,
    options: Options,
    bus: BusLink,
) -> Result<ServerHandle<R>, ServeError> {
    if config.cluster.is_none() {
        return Err(ServeError::BusWithoutCluster);
    }
    start::<R, S>(listener, store, config, options, Some(bus))
}

fn start<R: Runtime, S: Storage>(
    listener: R::TcpListener,
    store: S,
    mut config: Config,
    mut options: Options,
    bus: Option<BusLink>,
) -> Result<ServerHandle<R>, ServeError> {
    let local_addr = R::local_addr(&listener)?;
    prepare(&mut config, &mut options)?;
    // Before the first client: growing the table later makes an `accept` wait.
    let room = descriptors::reserve(descriptors::wanted(config.max_connections));
    debug!(?room, "descriptor table grown");
    let (shutdown, shutdown_rx) = oneshot::channel();
    let (stopped_tx, stopped) = oneshot::channel();
    let (stop_accepting, stop_rx) = watch::channel(false);
    let status = Arc::new(match &bus {
        Some(bus) => StatusCell::with_bus(Arc::clone(&bus.outbox.shared)),
        None => StatusCell::default(),
    });
    status.set_accepting(true);
    let backoff = options.accept_backoff;
    let max_handshakes_per_address = options.max_handshakes_per_address;
    let web_limits = WebLimits {
        max_line_bytes: config.max_line_bytes,
        max_connections_per_address: config.max_connections_per_address,
        max_requests_per_address: max_handshakes_per_address,
    };
    let Wired {
        driver,
        channels,
        intake: events,
    } = driver::<R, S>(
        store,
        Engine::new(config),
        options,
        Arc::clone(&status),
        shutdown_rx,
        stop_accepting,
        bus,
    );
    let intake = events.downgrade();
    let address_counts = driver.host.address_counts();
    R::spawn(accept_plain::<R>(
        listener,
        events,
        stop_rx.clone(),
        backoff,
    ));
    R::spawn(async move {
        driver.run(channels).await;
        let _ = stopped_tx.send(());
    });
    Ok(ServerHandle {
        local_addr,
        shutdown,
        stopped,
        status: ServerStatus::new(status),
        intake,
        stop_accepting: stop_rx,
        max_handshakes_per_address,
        web_limits,
        address_counts,
    })
}

/// A running server. Dropping it leaves the server running (detached); call
/// [`ServerHandle::shutdown`] to stop it.
pub struct ServerHandle<R: Runtime> {
    local_addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    /// Resolves when the engine's loop has finished.
    stopped: oneshot::Receiver<()>,
    status: ServerStatus,
    /// Where TLS listeners hand over their clients; weak, so it never keeps the event
    /// channel open during shutdown.
    intake: mpsc::WeakSender<ConnectionEvent<R::Stream>>,
    /// Turns `true` when the server stops taking clients.
    stop_accepting: watch::Receiver<bool>,
    /// [`Options::max_handshakes_per_address`].
    max_handshakes_per_address: usize,
    /// The engine limits a web listener checks before an upgrade.
    web_limits: WebLimits,
    /// Live connections per address, for a web listener.
    address_counts: Arc<AddressCounts>,
}

impl<R: Runtime> std::fmt::Debug for ServerHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> ServerHandle<R> {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A view of the server for metrics and health checks, readable from any task.
    pub fn status(&self) -> ServerStatus {
        self.status.clone()
    }

    /// Also serves the same chat over TLS on `listener` (bound by the caller, for example
    /// on port 6697 beside the plain one): clients finish the handshake with `acceptor`'s
    /// certificate, then talk to the same engine as plain clients, under the same limits
    /// (per-address limits see their real address). Returns the TLS listener's address.
    pub fn serve_tls(
        &mut self,
        listener: R::TcpListener,
        acceptor: TlsAcceptor,
    ) -> Result<SocketAddr, ServeError> {
        let local_addr = R::local_addr(&listener)?;
        R::spawn(accept_tls::<R>(
            listener,
            acceptor,
            self.intake.clone(),
            self.stop_accepting.clone(),
            self.status.cell(),
            self.max_handshakes_per_address,
        ));
        Ok(local_addr)
    }

    /// Also serves the web client and its WebSocket on `listener` (bound by the caller, for
    /// example on port 8080): `/` is the page, [`WEBSOCKET_PATH`](crate::WEBSOCKET_PATH) the WebSocket, which
    /// speaks JSON lines (one object per text frame) to the same engine, under the same
    /// limits as plain clients. With [`WebOptions::tls`], HTTPS and `wss://`. Returns the
    /// web listener's address.
    pub fn serve_web(
        &mut self,
        listener: R::TcpListener,
        options: WebOptions,
    ) -> Result<SocketAddr, ServeError> {
        let local_addr = R::local_addr(&listener)?;
        let shared = WebShared {
            options,
            limits: self.web_limits,
            counts: Arc::clone(&self.address_counts),
        };
        R::spawn(accept_web::<R>(
            listener,
            shared,
            self.intake.clone(),
            self.stop_accepting.clone(),
        ));
        Ok(local_addr)
    }

    /// Stops the server gracefully and waits for it: no new connections, every user is told
    /// the server is going down, queued lines are written, store requests in flight are
    /// answered and pending appends flushed, all within [`Options::shutdown_timeout`].
    pub async fn shutdown(self) -> Result<(), ServeError> {
        // The loop may have stopped already; then there is nobody to tell.
        let _ = self.shutdown.send(());
        self.stopped.await.map_err(|_| ServeError::Task)
    }
}

/// Resolves once `stop` turns `true` (or its sender is gone: the server stopped).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The next client, or `None` once the server stops taking clients.
///
/// Takes one client per turn of the runtime: after each accept it lets every other ready
/// task run first. A thousand clients arriving at once would otherwise be accepted (and
/// their tasks started) in runs of the runtime's whole budget, ahead of the connected
/// users' messages; this way a connection storm shares the CPU with them turn by turn.
pub(crate) async fn next_client<R: Runtime>(
    listener: &R::TcpListener,
    stop: &watch::Receiver<bool>,
) -> Option<io::Result<(R::TcpStream, SocketAddr)>> {
    // The stop signal first: a client waiting in the backlog is not taken after it.
    let accepted = futures_lite::future::or(
        async {
            stopped(stop.clone()).await;
            None
        },
        async { Some(R::accept(listener).await) },
    )
    .await?;
    R::yield_now().await;
    Some(accepted)
}

/// Accepts plain clients and hands them to the engine's loop, until the server stops
/// taking clients (then the listener closes). Accept errors (out of file descriptors, a
/// connection reset before it was accepted) back off instead of spinning.
async fn accept_plain<R: Runtime>(
    listener: R::TcpListener,
    events: mpsc::Sender<ConnectionEvent<R::Stream>>,
    stop: watch::Receiver<bool>,
    backoff: Duration,
) {
    while let Some(accepted) = next_client::<R>(&listener, &stop).await {
        match accepted {
            Ok((stream, peer)) => {
                let event = ConnectionEvent::Accepted(R::Stream::from(stream), peer);
                if events.send(event).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                warn!(%error, "accept failed; backing off");
                R::sleep_until(Instant::now() + backoff).await;
            }
        }
    }
}

/// Accepts TLS clients on `listener` and hands each, once its handshake is done, to the
/// engine's loop through `intake`, as a plain client from its own address. At most
/// [`MAX_HANDSHAKES`] handshakes run at once, and at most `per_address` from one address:
/// a client over that is closed at once.
async fn accept_tls<R: Runtime>(
    listener: R::TcpListener,
    acceptor: TlsAcceptor,
    intake: mpsc::WeakSender<ConnectionEvent<R::Stream>>,
    stop: watch::Receiver<bool>,
    status: Arc<StatusCell>,
    per_address: usize,
) {
    let handshakes = Handshakes::new(per_address);
    let refused = || status.count_tls_handshake(false);
    while let Some((stream, peer, ticket)) =
        handshakes.next::<R>(&listener, &stop, "TLS", refused).await
    {
        let config = acceptor.config();
        let intake = intake.clone();
        let status = Arc::clone(&status);
        R::spawn(async move {
            let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
            let handshake = futures_lite::future::or(R::tls_accept(config, stream), async {
                R::sleep_until(deadline).await;
                Err(io::ErrorKind::TimedOut.into())
            })
            .await;
            drop(ticket);
            status.count_tls_handshake(handshake.is_ok());
            let stream = match handshake {
                Ok(stream) => stream,
                Err(error) => {
                    debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            // No engine loop (shut down): the client is dropped, as a plain one would be.
            if let Some(events) = intake.upgrade() {
                let _ = events.send(ConnectionEvent::Accepted(stream, peer)).await;
            }
        });
    }
}

/// Clients that must finish a handshake of their own before they are chat clients (TLS,
/// a web request): at most [`MAX_HANDSHAKES`] at once per listener (more wait in the
/// kernel's backlog), and at most a limit from one address (more are closed at once).
pub(crate) struct Handshakes {
    all: Arc<Semaphore>,
    by_address: Arc<HandshakesByAddress>,
    per_address: usize,
}

/// A client's place among the [`Handshakes`] in progress, given back when dropped.
pub(crate) struct HandshakeTicket {
    _permit: OwnedSemaphorePermit,
    _slot: HandshakeSlot,
}

impl Handshakes {
    /// Room for [`MAX_HANDSHAKES`], `per_address` from one address.
    pub(crate) fn new(per_address: usize) -> Handshakes {
        Handshakes {
            all: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
            by_address: Arc::new(HandshakesByAddress::default()),
            per_address,
        }
    }

    /// The next client of `listener` that may start its handshake (waiting for room),
    /// with its ticket; `None` once the server stops taking clients. A client over its
    /// address's limit is closed at once, logged as one of `what`, and `refused` is
    /// called. Accept errors back off instead of spinning.
    pub(crate) async fn next<R: Runtime>(
        &self,
        listener: &R::TcpListener,
        stop: &watch::Receiver<bool>,
        what: &str,
        refused: impl Fn(),
    ) -> Option<(R::TcpStream, SocketAddr, HandshakeTicket)> {
        loop {
            let permit = Arc::clone(&self.all).acquire_owned().await.ok()?;
            let (stream, peer) = match next_client::<R>(listener, stop).await? {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, what, "accept failed; backing off");
                    R::sleep_until(Instant::now() + Duration::from_millis(100)).await;
                    continue;
                }
            };
            let by_address = &self.by_address;
            let Some(slot) = HandshakesByAddress::enter(by_address, peer.ip(), self.per_address)
            else {
                debug!(%peer, what, "too many handshakes at once from this address; closed");
                refused();
                continue;
            };
            let ticket = HandshakeTicket {
                _permit: permit,
                _slot: slot,
            };
            return Some((stream, peer, ticket));
        }
    }
}

/// TLS handshakes (or web requests) in progress, by client address.
#[derive(Default)]
pub(crate) struct HandshakesByAddress {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl HandshakesByAddress {
    /// A slot for one more handshake from `ip`, or `None` when `limit` are in progress.
    pub(crate) fn enter(this: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<HandshakeSlot> {
        // One host's IPv6 /64 counts as one address, as for every per-address limit.
        let ip = wur2_engine::address_key(ip);
        let mut counts = this.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(HandshakeSlot {
            by_address: Arc::clone(this),
            ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Plain counts: still right after a panic elsewhere.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One handshake in progress; its address's count goes down when it is dropped.
pub(crate) struct HandshakeSlot {
    by_address: Arc<HandshakesByAddress>,
    ip: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = self.by_address.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::test_runtime::Types;

    #[test]
    fn an_accept_loop_gives_the_runtime_back_after_each_client() {
        // `Types`' accept is ready at once, as a listener's is with clients in its backlog.
        let (_stop_tx, stop) = watch::channel(false);
        let mut next = pin!(next_client::<Types>(&(), &stop));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            next.as_mut().poll(&mut cx).is_pending(),
            "the other ready tasks run before the next client is taken"
        );
        assert!(matches!(
            next.as_mut().poll(&mut cx),
            Poll::Ready(Some(Err(_)))
        ));
    }
}
