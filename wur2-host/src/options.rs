//! [`Options`]: the driver settings that are not chat rules (those are the engine's
//! [`Config`]), and [`prepare`], which makes both ready to serve with.

use std::path::PathBuf;
use std::time::Duration;

use wur2_engine::Config;

use crate::PrepareError;
use crate::clock::wall_clock_now;

/// Driver settings that are not chat rules (those are in [`Config`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a graceful shutdown may take in total: telling every client, writing what
    /// is queued, waiting for store requests in flight and flushing the store's appends.
    pub shutdown_timeout: Duration,
    /// How long a connection closed with "flush" may take to write what is queued to it;
    /// a client that does not read is cut off after that.
    pub close_flush_timeout: Duration,
    /// Pause after a failed `accept` (for example out of file descriptors), so the loop
    /// does not spin.
    pub accept_backoff: Duration,
    /// TLS handshakes in progress at once from one IP address, at most: a client over it
    /// is closed at accept, before any handshake work (the engine's per-address cap
    /// applies once the handshake is done). Handshakes take milliseconds, so a few at once
    /// serve any honest address, even a busy NAT; silent connections cannot take the
    /// listener's handshake slots ([`MAX_HANDSHAKES`](crate::MAX_HANDSHAKES)) from others.
    /// The web listener applies the same number to HTTP requests being read or answered
    /// at once from one address (a page load is a few).
    pub max_handshakes_per_address: usize,
    /// The only directory `/send <user> <path>` may read from; `None` turns server-side
    /// files off. [`prepare`] sets [`Config::server_files`] to match.
    pub files_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shutdown_timeout: Duration::from_secs(10),
            close_flush_timeout: Duration::from_secs(5),
            accept_backoff: Duration::from_millis(100),
            max_handshakes_per_address: 16,
            files_dir: None,
        }
    }
}

/// Makes `config` and `options` ready to serve with: the files directory canonical (symlinks
/// inside it are judged against its real path), [`Config::server_files`] set to match it,
/// and [`Config::wall_clock`] read from the system clock when `None`.
pub fn prepare(config: &mut Config, options: &mut Options) -> Result<(), PrepareError> {
    if let Some(dir) = options.files_dir.take() {
        let canonical = dir
            .canonicalize()
            .map_err(|source| PrepareError::FilesDir { path: dir, source })?;
        options.files_dir = Some(canonical);
    }
    config.server_files = options.files_dir.is_some();
    if config.wall_clock.is_none() {
        config.wall_clock = Some(wall_clock_now());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_files_directory_is_refused() {
        let mut config = Config::default();
        let mut options = Options {
            files_dir: Some(PathBuf::from("/no/such/wur2/dir")),
            ..Options::default()
        };
        assert!(prepare(&mut config, &mut options).is_err());
        let mut options = Options::default();
        prepare(&mut config, &mut options).expect("no files directory is fine");
        assert!(!config.server_files);
        assert!(config.wall_clock.is_some());
    }
}
