//! One list + watch per kind, feeding the collector's channel: a full [`Change::Listed`]
//! snapshot first (and again after any watch failure, which replaces what the collector
//! held for that kind), then every [`WatchEvent`].

use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{ListOptions, Store, WatchEvent, WatchOptions};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

/// Changes buffered between the informers and the collector.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Delay before listing again after the store failed.
pub const RELIST_AFTER: Duration = Duration::from_millis(500);

/// What the collector is told.
#[derive(Debug)]
pub enum Change {
    /// Every object of the kind, as of one revision.
    Listed(&'static KindInfo, Vec<Value>),
    /// One change after the last list.
    Event(&'static KindInfo, WatchEvent),
    /// Look at this uid again (an action on it failed).
    Retry(String),
}

/// Lists and watches `kind` until the receiver is gone, re-listing after any failure.
pub async fn run(store: Store, kind: &'static KindInfo, tx: mpsc::Sender<Change>) {
    loop {
        match follow(&store, kind, &tx).await {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(message = "informer restarting", kind = kind.plural, %error);
                tokio::time::sleep(RELIST_AFTER).await;
            }
        }
    }
}

/// Returns `Ok` when the collector is gone, `Err` when the store failed.
async fn follow(
    store: &Store,
    kind: &'static KindInfo,
    tx: &mpsc::Sender<Change>,
) -> Result<(), drover_store::StoreError> {
    let listed = store.list(kind, None, &ListOptions::default()).await?;
    if tx.send(Change::Listed(kind, listed.items)).await.is_err() {
        return Ok(());
    }
    let mut watch = store
        .watch(kind, None, listed.resource_version, WatchOptions::default())
        .await?;
    while let Some(event) = watch.next().await {
        if tx.send(Change::Event(kind, event?)).await.is_err() {
            return Ok(());
        }
    }
    Err(drover_store::StoreError::Nats("the watch ended".into()))
}
