//! The task that asks the store, about twice a second, which accounts were changed outside
//! the server (a role set or an account purged from the operator's shell), and hands what
//! it finds to the engine's loop. So `wur2 role` and `wur2 purge-user` reach live
//! sessions on every runtime, with any [`Storage`] that records changes.
//!
//! It never touches the engine: the loop gives each change to
//! [`Engine::handle_account_changed`](wur2_engine::Engine::handle_account_changed). It
//! stops when the server stops taking clients, or when the loop is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use wur2_engine::AccountChange;

use crate::runtime::Runtime;
use crate::storage::{AccountChanges, Storage};

/// How often the driver asks its store for account changes: a demoted admin loses their
/// powers within about this long (plus one query).
pub const ACCOUNT_CHANGES_POLL: Duration = Duration::from_millis(500);

/// Changes as the loop receives them: username and what changed, oldest first.
pub(crate) type ChangeBatch = Vec<(String, AccountChange)>;

/// Reads the store's account changes from where they stand at start, every
/// [`ACCOUNT_CHANGES_POLL`], and sends each non-empty batch to the engine's loop.
pub(crate) async fn watch<R: Runtime, S: Storage>(
    store: Arc<S>,
    changes: mpsc::UnboundedSender<ChangeBatch>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut cursor = None;
    let mut failing = false;
    loop {
        let read = store.account_changes(cursor);
        let read = futures_lite::future::or(async { Some(read.await) }, async {
            // The server stops taking clients (or is gone): stop asking.
            let _ = stopping.wait_for(|stop| *stop).await;
            None
        })
        .await;
        let more = match read {
            // Stopping, or a store that records no changes.
            None | Some(None) => return,
            Some(Some(Ok(AccountChanges {
                cursor: next,
                changes: batch,
            }))) => {
                if failing {
                    failing = false;
                    info!("account changes are read again");
                }
                cursor = Some(next);
                let more = !batch.is_empty();
                if more && changes.send(batch).is_err() {
                    return;
                }
                more
            }
            Some(Some(Err(error))) => {
                // Said once per outage, not twice a second.
                if !failing {
                    failing = true;
                    warn!(%error, "cannot read account changes; trying again");
                }
                false
            }
        };
        // After a batch there may be more waiting: read again at once.
        if !more {
            let stop = futures_lite::future::or(
                async {
                    R::sleep_until(Instant::now() + ACCOUNT_CHANGES_POLL).await;
                    false
                },
                async {
                    let _ = stopping.wait_for(|stop| *stop).await;
                    true
                },
            )
            .await;
            if stop {
                return;
            }
        }
    }
}
