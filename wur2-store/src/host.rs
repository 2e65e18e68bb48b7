//! The store as the one driver of `wur2-host` uses it: [`Storage`] (requests off the
//! engine's loop, every append written before the server stops, the account changes
//! recorded by the operator's commands) and, with the `metrics`
//! feature, the [`StoreProbe`] behind `/healthz` and the queue gauges.

use std::future::Future;

use wur2_engine::{StoreError, StoreReply, StoreRequest};
#[cfg(feature = "metrics")]
use wur2_host::metrics::{HEALTH_TIMEOUT, StoreProbe};
use wur2_host::{AccountChanges, Storage};

use crate::Store;

impl Storage for Store {
    fn execute(&self, request: StoreRequest) -> impl Future<Output = StoreReply> + Send + 'static {
        Store::execute(self, request)
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        Store::close(self)
    }

    fn account_changes(
        &self,
        after: Option<i64>,
    ) -> impl Future<Output = Option<Result<AccountChanges, StoreError>>> + Send + 'static {
        let store = self.clone();
        async move {
            let read = match after {
                None => store
                    .latest_account_change()
                    .await
                    .map(|cursor| AccountChanges {
                        cursor,
                        changes: Vec::new(),
                    }),
                Some(after) => store
                    .account_changes_after(after)
                    .await
                    .map(|(cursor, changes)| AccountChanges { cursor, changes }),
            };
            Some(read)
        }
    }
}

#[cfg(feature = "metrics")]
impl StoreProbe for Store {
    fn ping(&self) -> impl Future<Output = Result<(), String>> + Send {
        let store = self.clone();
        async move {
            Store::ping(&store, HEALTH_TIMEOUT)
                .await
                .map_err(|error| error.to_string())
        }
    }

    fn append_queue_len(&self) -> Option<usize> {
        Some(Store::append_queue_len(self))
    }

    fn hash_queue_len(&self) -> Option<usize> {
        Some(Store::hash_queue_len(self))
    }
}
