//! Where the client connects, and how: one server or several nodes of a cluster (tried in
//! turn, the one that answered last first), over plain TCP or TLS with the server's
//! certificate verified (the bundled Mozilla roots, or only the operator's CA with
//! `--ca`). It owns opening the byte stream; it never reads or writes a chat line.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The reading half of a connection, plain or TLS.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection, plain or TLS.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The addresses of a server (or of the nodes of a cluster, any of which will do), with
/// TLS settings when the link is encrypted.
#[derive(Clone)]
pub struct Endpoint {
    /// Each address, with the name its certificate must have when over TLS.
    addresses: Vec<(String, Option<ServerName<'static>>)>,
    tls: Option<TlsConnector>,
    /// The address tried first: the one that answered last (shared by clones, so a
    /// reconnect starts where the last connection was).
    preferred: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<&str> = self.addresses.iter().map(|(a, _)| a.as_str()).collect();
        f.write_str(&list.join(","))?;
        if self.tls.is_some() {
            f.write_str(" (TLS)")?;
        }
        Ok(())
    }
}

/// `host:port` addresses from a comma-separated list (spaces and empty items ignored).
fn split_addresses(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How long one address may take to accept the connection (and finish the TLS
/// handshake) before the next is tried.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Endpoint {
    /// Plain TCP to `addresses`: `host:port`, or several separated by commas (nodes of
    /// one cluster).
    pub fn plain(addresses: impl AsRef<str>) -> Endpoint {
        Endpoint {
            addresses: split_addresses(addresses.as_ref())
                .into_iter()
                .map(|address| (address, None))
                .collect(),
            tls: None,
            preferred: Arc::default(),
        }
    }

    /// TLS to `addresses` (as for [`Endpoint::plain`]), verifying that the certificate
    /// names the host connected to and is signed by a trusted CA: the CA certificates in
    /// the PEM file `ca` when given (and only those: a private or self-signed server),
    /// otherwise the bundled Mozilla roots.
    pub fn tls(addresses: impl AsRef<str>, ca: Option<&Path>) -> anyhow::Result<Endpoint> {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("--ca {}: cannot read it", path.display()))?;
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert =
                        cert.with_context(|| format!("--ca {}: broken PEM", path.display()))?;
                    roots.add(cert).with_context(|| {
                        format!("--ca {}: not a CA certificate", path.display())
                    })?;
                    added += 1;
                }
                if added == 0 {
                    anyhow::bail!("--ca {}: no CERTIFICATE block", path.display());
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS setup")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut named = Vec::new();
        for address in split_addresses(addresses.as_ref()) {
            let name = ServerName::try_from(host_of(&address).to_owned())
                .with_context(|| format!("{address}: not a host name or address"))?;
            named.push((address, Some(name)));
        }
        Ok(Endpoint {
            addresses: named,
            tls: Some(TlsConnector::from(Arc::new(config))),
            preferred: Arc::default(),
        })
    }

    /// Opens the byte stream to the first address that answers, starting with the one
    /// that answered last: TCP, then the TLS handshake when asked for. Fails with the
    /// last address's error when none answers.
    pub(crate) async fn open(&self) -> std::io::Result<(ReadHalf, WriteHalf)> {
        let count = self.addresses.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_error =
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no server address given");
        for offset in 0..count {
            let index = (first + offset) % count;
            // A node that went away silently (no reset) must not hold up the next one.
            match tokio::time::timeout(CONNECT_TIMEOUT, self.open_one(index)).await {
                Ok(Ok(stream)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(stream);
                }
                Ok(Err(error)) => last_error = error,
                Err(_) => {
                    last_error = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "{}: no answer within {CONNECT_TIMEOUT:?}",
                            self.addresses[index].0
                        ),
                    );
                }
            }
        }
        Err(last_error)
    }

    async fn open_one(&self, index: usize) -> std::io::Result<(ReadHalf, WriteHalf)> {
        let (address, name) = &self.addresses[index];
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        match (&self.tls, name) {
            (Some(connector), Some(name)) => {
                let stream = connector.connect(name.clone(), stream).await?;
                let (read, write) = tokio::io::split(stream);
                Ok((Box::new(read), Box::new(write)))
            }
            (None, _) => {
                let (read, write) = stream.into_split();
                Ok((Box::new(read), Box::new(write)))
            }
            // Never plaintext when TLS was asked for (`Endpoint::tls` names every address).
            (Some(_), None) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{address}: no certificate name to check"),
            )),
        }
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare host.
fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_checked_against_the_host_part() {
        assert_eq!(host_of("chat.example.org:6697"), "chat.example.org");
        assert_eq!(host_of("127.0.0.1:6697"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6697"), "::1");
        assert_eq!(host_of("chat.example.org"), "chat.example.org");
    }

    #[test]
    fn a_comma_separated_list_names_every_node() {
        let endpoint = Endpoint::plain("a:6969, b:6969,,c:7000");
        assert_eq!(endpoint.to_string(), "a:6969,b:6969,c:7000");
    }

    #[tokio::test]
    async fn a_node_that_does_not_answer_is_skipped_and_the_one_that_does_is_tried_first_next_time()
    {
        // A port nobody listens on: bound, then let go.
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = gone.local_addr().unwrap();
        drop(gone);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let alive = live.local_addr().unwrap();
        let endpoint = Endpoint::plain(format!("{dead},{alive}"));
        let accepted = tokio::spawn(async move { live.accept().await.map(|_| ()) });
        assert!(endpoint.open().await.is_ok());
        accepted.await.unwrap().unwrap();
        assert_eq!(endpoint.clone().preferred.load(Ordering::Relaxed), 1);
        // Nothing answers at all: the error says so.
        let nobody = Endpoint::plain(dead.to_string());
        assert!(nobody.open().await.is_err());
    }
}
