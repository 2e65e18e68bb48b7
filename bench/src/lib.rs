//! # wur2-bench
//!
//! What issue 9's side-by-side benchmark needs, as a library so the smoke test can drive it
//! in-process: the load generator ([`load`]), the bare relay baseline ([`relay`]), the
//! payload that carries a send timestamp ([`payload`]), the server memory and CPU readers
//! ([`memory`], [`cpu`]), the reader of a WUR2 node's metrics counters ([`scrape`], for
//! the cluster's bus figures of issue 18) and the clients' plain or TLS connections
//! ([`transport`]). The binaries `wur2-loadgen` and `wur2-relay` are thin command lines
//! over these; `bench/run.sh` runs everything side by side.
//!
//! Load tests belong on loopback, bounded in clients and time: every run of [`load::run`]
//! has a hard deadline and stops by itself.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cpu;
pub mod load;
pub mod memory;
pub mod payload;
pub mod relay;
pub mod scrape;
pub mod transport;
