//! Where the client connects, and how: plain TCP, or TLS with the server's certificate
//! verified (the bundled Mozilla roots, or only the operator's CA with `--ca`). It owns
//! opening the byte stream; it never reads or writes a chat line.

use std::path::Path;
use std::sync::Arc;

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

/// A server address, with TLS settings when the link is encrypted.
#[derive(Clone)]
pub struct Endpoint {
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tls {
            Some(_) => write!(f, "{} (TLS)", self.address),
            None => f.write_str(&self.address),
        }
    }
}

impl Endpoint {
    /// Plain TCP to `address` (`host:port`).
    pub fn plain(address: impl Into<String>) -> Endpoint {
        Endpoint {
            address: address.into(),
            tls: None,
        }
    }

    /// TLS to `address` (`host:port`), verifying that the certificate names `host` and is
    /// signed by a trusted CA: the CA certificates in the PEM file `ca` when given (and
    /// only those: a private or self-signed server), otherwise the bundled Mozilla roots.
    pub fn tls(address: impl Into<String>, ca: Option<&Path>) -> anyhow::Result<Endpoint> {
        let address = address.into();
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
        let name = ServerName::try_from(host_of(&address).to_owned())
            .with_context(|| format!("{address}: not a host name or address"))?;
        Ok(Endpoint {
            address,
            tls: Some((TlsConnector::from(Arc::new(config)), name)),
        })
    }

    /// Opens the byte stream: TCP, then the TLS handshake when asked for.
    pub(crate) async fn open(&self) -> std::io::Result<(ReadHalf, WriteHalf)> {
        let stream = TcpStream::connect(&self.address).await?;
        stream.set_nodelay(true)?;
        match &self.tls {
            None => {
                let (read, write) = stream.into_split();
                Ok((Box::new(read), Box::new(write)))
            }
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), stream).await?;
                let (read, write) = tokio::io::split(stream);
                Ok((Box::new(read), Box::new(write)))
            }
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
}
