//! The watch cache: one [`WatchCache`] per kind, started on first use, serves LIST and
//! WATCH from memory so that a thousand client watches cost one store watch (one
//! JetStream consumer) instead of a thousand (Kubernetes' cacher).
//!
//! A cache lists its kind once and then follows one store watch from the list's revision
//! (`reflector`); it keeps the current objects by key and a ring of the last
//! [`DEFAULT_RING_CAPACITY`] changes, each with the object before it (`state`). Client
//! watches read the ring at their own pace (`watcher`); a watcher that falls behind the
//! ring's tail is ended with a 410 ERROR event instead of slowing the others down.
//!
//! What is served from where (`request` decides, as pure functions):
//! - LIST with resourceVersion "" waits until the cache has applied the store's current
//!   revision (read with [`Store::revision`], no consumer), then answers from memory:
//!   as fresh as a store list. "0" answers with whatever the cache holds; N
//!   (NotOlderThan) waits until the cache reaches N; N with `resourceVersionMatch=Exact`
//!   answers only when the cache is exactly at N, else 410 (the store keeps no
//!   snapshots of older revisions). Waits are bounded ([`DEFAULT_FRESH_WAIT`]); then
//!   the request goes to the store, or fails with 504 when N is ahead of the store.
//! - Paged LISTs go to the store unchanged: every `continue`, and `limit` unless
//!   resourceVersion is "0" or Exact (Kubernetes serves those from its cache whole,
//!   ignoring `limit`; so does this one).
//! - WATCH from "" or "0" sends the cache's matching objects as ADDED, then live
//!   changes; from N inside the ring it replays the ring after N; from N older than the
//!   ring it falls back to a direct store watch, which answers 410 when the store has
//!   compacted N. Selectors apply per event with Kubernetes' transitions (an object that
//!   starts matching is ADDED, one that stops matching is DELETED). Bookmarks carry the
//!   watcher's position in the cache.
//! - DELETECOLLECTION and single-object reads do not use the cache.
//!
//! When the store watch breaks (NATS restart, connection loss) the cache resumes it from
//! its own revision and its watchers notice nothing; when the store can no longer replay
//! from there it re-lists, and its watchers get a 410 and re-list too.

mod filter;
mod reflector;
mod request;
mod state;
mod watcher;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bus_schema::{KindInfo, subjects};
use drover_store::{ListOptions, ObjectList, Store};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

pub use filter::{EventType, Filter, transition};
pub use request::{
    Freshness, ListPlan, ReadRequest, ResumeFrom, WatchStart, list_plan, resume_from, watch_start,
};
pub use state::{CacheEvent, CacheState, Lost, Progress, Ring};

use crate::status::ApiError;
use watcher::{Start, StoreStart, WatchSpec};

/// Changes each cache keeps for resuming watchers and for watchers that lag. A watcher
/// more than this many changes of its kind behind is ended with a 410; a watch from a
/// revision older than the ring goes to the store. 1,000 covers a minute of a busy
/// kind's churn at a few KiB per change.
pub const DEFAULT_RING_CAPACITY: usize = 1000;

/// How long a read waits for the cache to reach the revision it needs before going to
/// the store (Kubernetes' cacher waits 3 s too).
pub const DEFAULT_FRESH_WAIT: Duration = Duration::from_secs(3);

/// Watch cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// See [`DEFAULT_RING_CAPACITY`].
    pub ring_capacity: usize,
    /// See [`DEFAULT_FRESH_WAIT`].
    pub fresh_wait: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ring_capacity: DEFAULT_RING_CAPACITY,
            fresh_wait: DEFAULT_FRESH_WAIT,
        }
    }
}

/// One event for a watching client.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub event_type: &'static str,
    /// The object (a `Status` for `ERROR`), shared with the cache.
    pub object: Arc<Value>,
}

/// A client's watch; it ends after an ERROR event, or when the gateway stops.
pub type EventStream = Pin<Box<dyn Stream<Item = ClientEvent> + Send>>;

/// The caches of every kind used so far; held in [`crate::AppState`].
pub struct Caches {
    store: Store,
    config: CacheConfig,
    /// The runtime the caches' store watches run on (the one that built `Caches`, not
    /// the HTTP worker that happens to serve a kind's first request).
    runtime: tokio::runtime::Handle,
    by_bucket: Mutex<HashMap<String, Arc<WatchCache>>>,
}

impl Caches {
    /// A registry with no caches yet. Must be called inside a tokio runtime.
    pub fn new(store: Store, config: CacheConfig) -> Caches {
        Caches {
            store,
            config,
            runtime: tokio::runtime::Handle::current(),
            by_bucket: Mutex::new(HashMap::new()),
        }
    }

    /// The store behind the caches.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cache of `kind`, started on first use.
    pub fn cache(&self, kind: &'static KindInfo) -> Arc<WatchCache> {
        let mut by_bucket = self.by_bucket.lock().unwrap_or_else(|e| e.into_inner());
        by_bucket
            .entry(subjects::kv_bucket(kind))
            .or_insert_with(|| {
                Arc::new(WatchCache::start(
                    &self.store,
                    kind,
                    &self.config,
                    &self.runtime,
                ))
            })
            .clone()
    }

    /// LIST `kind` in `namespace` (all when `None`) with `opts`' selectors and paging, as
    /// fresh as `read` asks (see the module doc for what goes to the store).
    pub async fn list(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
        read: &ReadRequest,
    ) -> Result<ObjectList, ApiError> {
        let cache = self.cache(kind);
        let has_limit = opts.limit.is_some_and(|l| l > 0);
        let freshness = match list_plan(read.freshness, has_limit, opts.continue_token.is_some()) {
            ListPlan::Store => return self.store_list(kind, namespace, opts).await,
            ListPlan::Cache(freshness) => freshness,
        };
        let filter = Filter::new(namespace, opts);
        let snapshot = match self.fresh(&cache, freshness).await? {
            true => read_state(&cache.state).snapshot(&filter),
            false => None,
        };
        let listed = match snapshot {
            Some((items, progress)) => ObjectList {
                items: items.iter().map(|obj| Value::clone(obj)).collect(),
                resource_version: progress.rv,
                continue_token: None,
                remaining_item_count: None,
            },
            None => self.store_list(kind, namespace, opts).await?,
        };
        match freshness {
            Freshness::Exact(rv) if listed.resource_version != rv => Err(expired(format!(
                "too old resource version: {rv} ({})",
                listed.resource_version
            ))),
            _ => Ok(listed),
        }
    }

    /// WATCH `kind` in `namespace` with `opts`' selectors from where `read` says, with
    /// BOOKMARK events every `bookmark_interval` when given.
    pub async fn watch(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
        read: &ReadRequest,
        bookmark_interval: Option<Duration>,
    ) -> Result<EventStream, ApiError> {
        let start = watch_start(read).map_err(ApiError::bad_request)?;
        let spec = WatchSpec {
            kind,
            filter: Filter::new(namespace, opts),
            bookmark_interval,
        };
        let cache = self.cache(kind);
        match start {
            WatchStart::Snapshot {
                freshness,
                initial_events,
                end_bookmark,
            } => {
                if self.fresh(&cache, freshness).await?
                    && let Some(stream) =
                        cache.follow_snapshot(spec.clone(), initial_events, end_bookmark)
                {
                    return Ok(stream);
                }
                let start = StoreStart::Snapshot {
                    initial_events,
                    end_bookmark,
                };
                watcher::from_store(&self.store, spec, opts, start).await
            }
            WatchStart::Resume(rv) => {
                let reached = cache
                    .wait_until(self.config.fresh_wait, |p| p.ready && p.rv >= rv)
                    .await;
                if reached && let Some(stream) = cache.follow_from(spec.clone(), rv) {
                    return Ok(stream);
                }
                watcher::from_store(&self.store, spec, opts, StoreStart::Resume(rv)).await
            }
        }
    }

    async fn store_list(
        &self,
        kind: &'static KindInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList, ApiError> {
        self.store
            .list(kind, namespace, opts)
            .await
            .map_err(|e| ApiError::from_store(kind, "", e))
    }

    /// Waits until `cache` is as fresh as `freshness` asks. `Ok(false)`: not in time,
    /// serve from the store; an error when the revision asked for is ahead of the store.
    async fn fresh(&self, cache: &WatchCache, freshness: Freshness) -> Result<bool, ApiError> {
        let wait = self.config.fresh_wait;
        let min_rv = match freshness {
            Freshness::Any => return Ok(cache.wait_until(wait, |p| p.ready).await),
            Freshness::Consistent => {
                let revision = self
                    .store
                    .revision(cache.kind)
                    .await
                    .map_err(|e| ApiError::from_store(cache.kind, "", e))?;
                let now = *cache.progress.borrow();
                if now.ready && now.rv > revision {
                    // The store is behind the cache (it restarted without its data): the
                    // cache's store watch waits for revisions that will not come. Re-list;
                    // the store is the truth meanwhile.
                    cache.relist.notify_one();
                    return Ok(false);
                }
                revision
            }
            Freshness::NotOlderThan(rv) | Freshness::Exact(rv) => rv,
        };
        if cache.wait_until(wait, |p| p.ready && p.rv >= min_rv).await {
            return Ok(true);
        }
        match self.store.revision(cache.kind).await {
            Ok(current) if current < min_rv => Err(too_large(min_rv, current)),
            _ => Ok(false),
        }
    }
}

/// The cache of one kind: its state, its progress and the task that feeds them.
pub struct WatchCache {
    kind: &'static KindInfo,
    state: Arc<RwLock<CacheState>>,
    progress: watch::Receiver<Progress>,
    /// Asks the reflector to re-list.
    relist: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for WatchCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WatchCache {
    fn start(
        store: &Store,
        kind: &'static KindInfo,
        config: &CacheConfig,
        runtime: &tokio::runtime::Handle,
    ) -> WatchCache {
        let state = Arc::new(RwLock::new(CacheState::new(config.ring_capacity)));
        let (tx, progress) = watch::channel(Progress::default());
        let relist = Arc::new(Notify::new());
        let span = tracing::info_span!("watch_cache", kind = %kind.group_resource());
        let reflector = reflector::run(store.clone(), kind, state.clone(), tx, relist.clone());
        let task = runtime.spawn(reflector.instrument(span));
        WatchCache {
            kind,
            state,
            progress,
            relist,
            task,
        }
    }

    /// Where the cache stands now.
    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits (at most `wait`) until `done` holds for the progress.
    async fn wait_until(&self, wait: Duration, mut done: impl FnMut(&Progress) -> bool) -> bool {
        let mut rx = self.progress.clone();
        let waited =
            tokio::time::timeout(wait, async move { rx.wait_for(|p| done(p)).await.is_ok() });
        waited.await.unwrap_or(false)
    }

    /// A watcher from the current state: its matching objects first when `initial_events`.
    fn follow_snapshot(
        &self,
        spec: WatchSpec,
        initial_events: bool,
        end_bookmark: bool,
    ) -> Option<EventStream> {
        let (initial, progress) = read_state(&self.state).snapshot(&spec.filter)?;
        let start = Start {
            epoch: progress.epoch,
            pos: progress.rv,
            initial: if initial_events { initial } else { Vec::new() },
            end_bookmark,
        };
        Some(watcher::follow(
            spec,
            self.state.clone(),
            self.progress.clone(),
            start,
        ))
    }

    /// A watcher resuming after `rv`, when the ring holds everything after it.
    fn follow_from(&self, spec: WatchSpec, rv: u64) -> Option<EventStream> {
        let (progress, oldest) = {
            let state = read_state(&self.state);
            (state.progress(), state.oldest())
        };
        if resume_from(rv, progress, oldest) != ResumeFrom::Ring {
            return None;
        }
        let start = Start {
            epoch: progress.epoch,
            pos: rv,
            initial: Vec::new(),
            end_bookmark: false,
        };
        Some(watcher::follow(
            spec,
            self.state.clone(),
            self.progress.clone(),
            start,
        ))
    }
}

/// 410 Expired: the client must list again.
fn expired(message: String) -> ApiError {
    ApiError {
        code: 410,
        reason: "Expired",
        message,
        details: None,
    }
}

/// 504 for a resourceVersion ahead of the store, as Kubernetes words it.
fn too_large(asked: u64, current: u64) -> ApiError {
    ApiError {
        code: 504,
        reason: "Timeout",
        message: format!("Too large resource version: {asked}, current: {current}"),
        details: Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        })),
    }
}

/// Lock helpers that survive a poisoned lock: the state is only changed by whole
/// `CacheState` methods that do not panic midway.
fn read_state(state: &RwLock<CacheState>) -> RwLockReadGuard<'_, CacheState> {
    state.read().unwrap_or_else(|e| e.into_inner())
}

fn write_state(state: &RwLock<CacheState>) -> RwLockWriteGuard<'_, CacheState> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
