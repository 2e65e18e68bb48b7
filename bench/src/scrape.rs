//! The counters of WUR2's Prometheus endpoint (`wur2 --metrics-listen`) that the cluster
//! benchmark needs, read from one or several nodes and summed: chat messages accepted,
//! deliveries, and in cluster mode the bus's publications, bytes, drops and gaps (see
//! `wur2-host/src/metrics.rs`). The load generator reads them at the start and the end of
//! the measured part; the difference is what the messages of the run cost.
//!
//! One plain HTTP/1.0 `GET /metrics` per node, bounded by [`SCRAPE_TIMEOUT`] and
//! [`MAX_RESPONSE`]: the endpoint is on loopback, but its answer is still read as
//! untrusted text (a line that does not parse is skipped).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one node may take to answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from one node.
pub const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// Counters of one node, or summed over nodes. The `bus_*` fields stay 0 without cluster
/// mode (then `bus` is false).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Whether any node reported bus counters (runs in cluster mode).
    pub bus: bool,
    /// `wur2_channel_messages_total`: chat messages accepted for a channel, counted on the
    /// node the sender is on.
    pub chat_messages: u64,
    /// `wur2_deliveries_total`: lines handed to connections.
    pub deliveries: u64,
    /// `wur2_bus_published_total`: publications the engine made.
    pub bus_published: u64,
    /// `wur2_bus_received_total`: payloads received from the bus.
    pub bus_received: u64,
    /// `wur2_bus_sent_bytes_total`: bytes of publications handed to the bus.
    pub bus_sent_bytes: u64,
    /// `wur2_bus_received_bytes_total`: bytes received from the bus.
    pub bus_received_bytes: u64,
    /// `wur2_bus_dropped_total`: publications dropped before the bus took them.
    pub bus_dropped: u64,
    /// `wur2_bus_gaps_total`: times a node's publications were found missing.
    pub bus_gaps: u64,
    /// `wur2_bus_refused_total`: payloads refused.
    pub bus_refused: u64,
}

impl Counters {
    /// Reads the counters this module knows from a Prometheus text exposition; other
    /// metrics, comments and lines that do not parse are skipped, and a counter with
    /// labels counts the sum over its label values.
    pub fn parse(text: &str) -> Counters {
        let mut counters = Counters::default();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let (Some(name), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            let name = name.split('{').next().unwrap_or(name);
            // Counters are integers; a float exposition ("12.0") is accepted too.
            let Some(value) = value
                .parse::<u64>()
                .ok()
                .or_else(|| value.parse::<f64>().ok().map(|v| v.max(0.0) as u64))
            else {
                continue;
            };
            let field = match name {
                "wur2_channel_messages_total" => &mut counters.chat_messages,
                "wur2_deliveries_total" => &mut counters.deliveries,
                "wur2_bus_published_total" => &mut counters.bus_published,
                "wur2_bus_received_total" => &mut counters.bus_received,
                "wur2_bus_sent_bytes_total" => &mut counters.bus_sent_bytes,
                "wur2_bus_received_bytes_total" => &mut counters.bus_received_bytes,
                "wur2_bus_dropped_total" => &mut counters.bus_dropped,
                "wur2_bus_gaps_total" => &mut counters.bus_gaps,
                "wur2_bus_refused_total" => &mut counters.bus_refused,
                _ => continue,
            };
            *field = field.saturating_add(value);
            if name.starts_with("wur2_bus_") {
                counters.bus = true;
            }
        }
        counters
    }

    /// Field by field sum (several nodes).
    pub fn plus(self, other: Counters) -> Counters {
        self.zip(other, u64::saturating_add)
    }

    /// Field by field difference from an earlier reading (what happened in between).
    pub fn since(self, earlier: Counters) -> Counters {
        self.zip(earlier, u64::saturating_sub)
    }

    fn zip(self, other: Counters, op: fn(u64, u64) -> u64) -> Counters {
        Counters {
            bus: self.bus || other.bus,
            chat_messages: op(self.chat_messages, other.chat_messages),
            deliveries: op(self.deliveries, other.deliveries),
            bus_published: op(self.bus_published, other.bus_published),
            bus_received: op(self.bus_received, other.bus_received),
            bus_sent_bytes: op(self.bus_sent_bytes, other.bus_sent_bytes),
            bus_received_bytes: op(self.bus_received_bytes, other.bus_received_bytes),
            bus_dropped: op(self.bus_dropped, other.bus_dropped),
            bus_gaps: op(self.bus_gaps, other.bus_gaps),
            bus_refused: op(self.bus_refused, other.bus_refused),
        }
    }
}

/// Reads one node's counters.
pub async fn scrape(addr: SocketAddr) -> Result<Counters, String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        // HTTP/1.0: the answer comes whole, never chunked, and the server closes after it.
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE)
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("metrics at {addr}: no answer in {SCRAPE_TIMEOUT:?}"))?
        .map_err(|e| format!("metrics at {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("metrics at {addr}: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_ascii_whitespace().nth(1) != Some("200") {
        return Err(format!("metrics at {addr}: {status}"));
    }
    Ok(Counters::parse(body))
}

/// Reads every node's counters, summed; fails if any node does not answer (a sum missing
/// a node would hide its share).
pub async fn scrape_all(addrs: &[SocketAddr]) -> Result<Counters, String> {
    let mut sum = Counters::default();
    for &addr in addrs {
        sum = sum.plus(scrape(addr).await?);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "# HELP wur2_bus_published Cluster mode: publications the engine made.\n\
        # TYPE wur2_bus_published counter\n\
        wur2_bus_published_total 2013\n\
        wur2_bus_refused_total{reason=\"version\"} 1\n\
        wur2_bus_refused_total{reason=\"invalid\"} 2\n\
        wur2_channel_messages_total 2000\n\
        wur2_deliveries_total 1.5e3\n\
        wur2_bus_gaps_total not-a-number\n\
        wur2_connections 12\n";

    #[test]
    fn known_counters_are_read_and_label_values_summed() {
        let counters = Counters::parse(NODE);
        assert!(counters.bus);
        assert_eq!(counters.bus_published, 2013);
        assert_eq!(counters.bus_refused, 3);
        assert_eq!(counters.chat_messages, 2000);
        assert_eq!(counters.deliveries, 1500);
        assert_eq!(counters.bus_gaps, 0);
        let single = Counters::parse("wur2_channel_messages_total 7\n");
        assert!(!single.bus);
        assert_eq!(single.chat_messages, 7);
    }

    #[test]
    fn sums_and_differences_are_per_field() {
        let a = Counters::parse(NODE);
        let two = a.plus(a);
        assert_eq!(two.bus_published, 4026);
        assert_eq!(two.since(a), a);
        assert_eq!(a.since(two).bus_published, 0);
    }

    #[tokio::test]
    async fn a_node_is_scraped_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            for answer in [
                format!("HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n{NODE}"),
                "HTTP/1.0 404 Not Found\r\n\r\n".to_owned(),
            ] {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                stream.write_all(answer.as_bytes()).await.expect("answer");
            }
        });
        let counters = scrape_all(&[addr]).await.expect("scraped");
        assert_eq!(counters.bus_published, 2013);
        let error = scrape(addr).await.expect_err("404");
        assert!(error.contains("404"), "{error}");
        server.await.expect("server task");
    }
}
