//! drover's store (JetStream KV, one bucket per kind) through its public API, exactly
//! as the API server uses it.

use anyhow::{Context, Result};
use bus_schema::{KindInfo, subjects};
use drover_store::{ListOptions, Store, StoreConfig, WatchEvent, WatchOptions};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{Backend, EventStream};

/// How many watches are being opened at once while setting up many.
const WATCH_SETUP_CONCURRENCY: usize = 32;

/// Consumers the bench lets the pods bucket hold when it lifts the limit. nats-server
/// 2.15 caps every stream that sets no `max_consumers` at 1,000 (`jetstream { limits {
/// default_max_consumers } }`), and every drover watch and every list is one consumer,
/// so 1,000 watchers do not fit a bucket made by `Store` as it stands.
pub const BENCH_MAX_CONSUMERS: i32 = 10_000;

/// The store with the Pod kind.
#[derive(Clone)]
pub struct DroverBackend {
    store: Store,
    kind: &'static KindInfo,
}

impl DroverBackend {
    /// Opens the store on `client` and creates the pods bucket up front, so the first
    /// measured operation does not pay for it. With `lift_consumer_limit`, raises the
    /// bucket stream's `max_consumers` to [`BENCH_MAX_CONSUMERS`] when it is lower (the
    /// store does not set it); returns a note saying what was changed, if anything.
    pub async fn new(
        client: async_nats::Client,
        lift_consumer_limit: bool,
    ) -> Result<(DroverBackend, Option<String>)> {
        let kind =
            bus_schema::kinds::by_group_kind("", "Pod").context("no Pod kind in bus-schema")?;
        let store = Store::new(client.clone(), StoreConfig::default()).await?;
        store.ensure_buckets(std::slice::from_ref(kind)).await?;
        let note = if lift_consumer_limit {
            lift_limit(client, &subjects::kv_stream(&subjects::kv_bucket(kind))).await?
        } else {
            None
        };
        Ok((DroverBackend { store, kind }, note))
    }
}

async fn lift_limit(client: async_nats::Client, stream_name: &str) -> Result<Option<String>> {
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream_name).await?;
    let mut config = stream.info().await?.config.clone();
    let before = config.max_consumers;
    if before >= BENCH_MAX_CONSUMERS {
        return Ok(None);
    }
    config.max_consumers = BENCH_MAX_CONSUMERS;
    js.update_stream(&config)
        .await
        .with_context(|| format!("raising max_consumers of {stream_name}"))?;
    Ok(Some(format!(
        "the bench raised `max_consumers` of stream `{stream_name}` from {before} (unset, so \
         nats-server 2.15 applies its default of 1,000 per stream) to {BENCH_MAX_CONSUMERS}. \
         drover-store leaves it unset, and every watch and every list is a consumer, so as \
         shipped the ~1,000th concurrent watch of a bucket fails with `maximum consumers limit \
         reached` (10026)"
    )))
}

fn revision_of(obj: &Value) -> Result<u64> {
    drover_store::object::meta_str(obj, "resourceVersion")
        .and_then(|s| s.parse().ok())
        .context("stored object without a numeric resourceVersion")
}

impl Backend for DroverBackend {
    async fn create(&self, obj: Value) -> Result<u64> {
        revision_of(&self.store.create(self.kind, obj).await?)
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Value> {
        Ok(self.store.get(self.kind, Some(namespace), name).await?)
    }

    async fn update(&self, mut obj: Value, revision: u64) -> Result<u64> {
        drover_store::object::meta_mut(&mut obj).insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
        revision_of(&self.store.update(self.kind, obj).await?)
    }

    async fn list(&self, namespace: &str) -> Result<usize> {
        let list = self
            .store
            .list(self.kind, Some(namespace), &ListOptions::default())
            .await?;
        Ok(list.items.len())
    }

    async fn watch_many(
        &self,
        namespace: &str,
        after_revision: u64,
        n: usize,
    ) -> Result<Vec<EventStream>> {
        store_watches(
            &self.store,
            self.kind,
            namespace,
            after_revision,
            n,
            WATCH_SETUP_CONCURRENCY,
        )
        .await
    }
}

/// Opens `n` store watches of `kind` in `namespace` after `after_revision` (at most
/// `concurrency` being set up at once), each yielding the objects of its events (bookmarks
/// left out). Shared by store-bench and gateway-bench's store side.
pub async fn store_watches(
    store: &Store,
    kind: &'static KindInfo,
    namespace: &str,
    after_revision: u64,
    n: usize,
    concurrency: usize,
) -> Result<Vec<EventStream>> {
    futures::stream::iter(0..n)
        .map(|_| async move {
            let watch = store
                .watch(
                    kind,
                    Some(namespace),
                    after_revision,
                    WatchOptions::default(),
                )
                .await?;
            let objects = watch.filter_map(|event| async move {
                match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) => {
                        Some(Ok(o))
                    }
                    Ok(WatchEvent::Bookmark(_)) => None,
                    Err(e) => Some(Err(e.into())),
                }
            });
            Ok::<EventStream, anyhow::Error>(Box::pin(objects))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}
