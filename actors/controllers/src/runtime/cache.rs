//! The shared cache: one list + watch per kind, every object kept in memory as an
//! `Arc<Value>`, indexed by the uids in its ownerReferences, and every change broadcast
//! to the controllers that follow the kind.
//!
//! After a watch failure the kind is listed again and the difference to what the cache
//! held is broadcast as ordinary changes, so a controller never needs a separate
//! "resync" path. The highest revision applied per kind is published, which is what
//! [`Cache::wait_for_revision`] (read your writes) waits on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{ListOptions, Store, StoreError, WatchEvent, WatchOptions};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::{ObjectKey, ReconcileError, revision_of};

/// Changes buffered per follower before it lags (a lagging follower reconciles
/// everything of its kind again, so lag costs work, not correctness).
pub const BROADCAST_CAPACITY: usize = 16_384;
/// Delay before listing again after the store failed.
pub const RELIST_AFTER: Duration = Duration::from_millis(500);
/// Bookmarks keep the published revision moving when nothing changes.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// One change of a cached object: the state before (None when created) and after (None
/// when deleted).
#[derive(Clone, Debug)]
pub struct CacheEvent {
    /// The object before the change.
    pub old: Option<Arc<Value>>,
    /// The object after the change.
    pub new: Option<Arc<Value>>,
}

impl CacheEvent {
    /// The newest state known: `new`, or `old` for a deletion.
    pub fn latest(&self) -> Option<&Arc<Value>> {
        self.new.as_ref().or(self.old.as_ref())
    }
}

#[derive(Default)]
struct KindState {
    objects: HashMap<ObjectKey, Arc<Value>>,
    by_owner: HashMap<String, HashSet<ObjectKey>>,
}

impl KindState {
    fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
        obj.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("uid").and_then(Value::as_str))
    }

    /// Stores `obj` (or removes `key` when `None`); returns the previous state.
    fn put(&mut self, key: ObjectKey, obj: Option<Arc<Value>>) -> Option<Arc<Value>> {
        let old = match &obj {
            Some(o) => self.objects.insert(key.clone(), o.clone()),
            None => self.objects.remove(&key),
        };
        if let Some(old) = &old {
            for uid in Self::owner_uids(old) {
                if let Some(set) = self.by_owner.get_mut(uid) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_owner.remove(uid);
                    }
                }
            }
        }
        if let Some(new) = &obj {
            for uid in Self::owner_uids(new) {
                self.by_owner
                    .entry(uid.to_string())
                    .or_default()
                    .insert(key.clone());
            }
        }
        old
    }
}

struct KindCache {
    kind: &'static KindInfo,
    state: RwLock<KindState>,
    revision: watch::Sender<u64>,
    synced: watch::Sender<bool>,
    changes: broadcast::Sender<CacheEvent>,
}

struct Inner {
    kinds: Vec<Arc<KindCache>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The shared cache (cheap to clone; the watches stop when the last clone is dropped).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// Starts one list + watch per kind in `kinds`.
    pub fn start(store: Store, kinds: &[&'static KindInfo]) -> Cache {
        let mut caches = Vec::new();
        let mut tasks = Vec::new();
        for kind in kinds {
            if caches
                .iter()
                .any(|c: &Arc<KindCache>| std::ptr::eq(c.kind, *kind))
            {
                continue;
            }
            let cache = Arc::new(KindCache {
                kind,
                state: RwLock::new(KindState::default()),
                revision: watch::channel(0).0,
                synced: watch::channel(false).0,
                changes: broadcast::channel(BROADCAST_CAPACITY).0,
            });
            tasks.push(tokio::spawn(follow_kind(store.clone(), cache.clone())));
            caches.push(cache);
        }
        Cache {
            inner: Arc::new(Inner {
                kinds: caches,
                tasks,
            }),
        }
    }

    fn kind(&self, kind: &'static KindInfo) -> &Arc<KindCache> {
        self.inner
            .kinds
            .iter()
            .find(|c| c.kind.group == kind.group && c.kind.plural == kind.plural)
            .unwrap_or_else(|| panic!("the cache was not started with {}", kind.plural))
    }

    /// Whether the cache follows `kind`.
    pub fn follows(&self, kind: &'static KindInfo) -> bool {
        self.inner
            .kinds
            .iter()
            .any(|c| c.kind.group == kind.group && c.kind.plural == kind.plural)
    }

    /// Waits until every kind has been listed once.
    pub async fn wait_synced(&self) {
        for k in &self.inner.kinds {
            let mut rx = k.synced.subscribe();
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// One object.
    pub fn get(&self, kind: &'static KindInfo, key: &ObjectKey) -> Option<Arc<Value>> {
        let state = self
            .kind(kind)
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner());
        state.objects.get(key).cloned()
    }

    /// Every object of `kind`, in `namespace` when given, unordered.
    pub fn list(&self, kind: &'static KindInfo, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let state = self
            .kind(kind)
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner());
        state
            .objects
            .iter()
            .filter(|(k, _)| namespace.is_none() || k.namespace.as_deref() == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The objects of `kind` with an ownerReference to `owner_uid` (controller or not).
    pub fn owned_by(&self, kind: &'static KindInfo, owner_uid: &str) -> Vec<Arc<Value>> {
        let state = self
            .kind(kind)
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner());
        state
            .by_owner
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|k| state.objects.get(k).cloned())
            .collect()
    }

    /// Follows the changes of `kind` from now on.
    pub fn subscribe(&self, kind: &'static KindInfo) -> broadcast::Receiver<CacheEvent> {
        self.kind(kind).changes.subscribe()
    }

    /// The highest revision of `kind` the cache has applied.
    pub fn revision(&self, kind: &'static KindInfo) -> u64 {
        *self.kind(kind).revision.borrow()
    }

    /// Waits until the cache has applied `revision` of `kind` (a write's resourceVersion),
    /// so what the caller wrote is visible to its next read.
    pub async fn wait_for_revision(
        &self,
        kind: &'static KindInfo,
        revision: u64,
        timeout: Duration,
    ) -> Result<(), ReconcileError> {
        let mut rx = self.kind(kind).revision.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ReconcileError::CacheLag {
                kind: kind.plural,
                revision,
                timeout,
            }),
        }
    }

    /// Waits until the cache no longer holds `key` of `kind` (after a delete).
    pub async fn wait_absent(
        &self,
        kind: &'static KindInfo,
        key: &ObjectKey,
        timeout: Duration,
    ) -> Result<(), ReconcileError> {
        let cache = self.kind(kind);
        let mut rx = cache.revision.subscribe();
        let gone = || {
            !cache
                .state
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .objects
                .contains_key(key)
        };
        let wait = async {
            loop {
                if gone() {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(true) => Ok(()),
            _ => Err(ReconcileError::CacheLag {
                kind: kind.plural,
                revision: *cache.revision.borrow(),
                timeout,
            }),
        }
    }
}

async fn follow_kind(store: Store, cache: Arc<KindCache>) {
    loop {
        if let Err(error) = list_and_watch(&store, &cache).await {
            tracing::debug!(message = "cache watch restarting", kind = cache.kind.plural, %error);
        }
        tokio::time::sleep(RELIST_AFTER).await;
    }
}

fn apply(cache: &KindCache, key: ObjectKey, new: Option<Arc<Value>>) {
    let old = cache
        .state
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .put(key, new.clone());
    if old.is_none() && new.is_none() {
        return;
    }
    // No receiver is fine: nobody follows the kind yet.
    let _ = cache.changes.send(CacheEvent { old, new });
}

async fn list_and_watch(store: &Store, cache: &KindCache) -> Result<(), StoreError> {
    let listed = store
        .list(cache.kind, None, &ListOptions::default())
        .await?;
    let fresh: HashMap<ObjectKey, Value> = listed
        .items
        .into_iter()
        .map(|o| (ObjectKey::of(&o), o))
        .collect();
    let stale: Vec<ObjectKey> = {
        let state = cache.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .objects
            .keys()
            .filter(|k| !fresh.contains_key(*k))
            .cloned()
            .collect()
    };
    for key in stale {
        apply(cache, key, None);
    }
    for (key, obj) in fresh {
        let unchanged = cache
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .objects
            .get(&key)
            .is_some_and(|o| revision_of(o) == revision_of(&obj));
        if !unchanged {
            apply(cache, key, Some(Arc::new(obj)));
        }
    }
    cache
        .revision
        .send_modify(|r| *r = (*r).max(listed.resource_version));
    cache.synced.send_replace(true);
    let options = WatchOptions {
        bookmark_interval: Some(BOOKMARK_EVERY),
    };
    let mut watch = store
        .watch(cache.kind, None, listed.resource_version, options)
        .await?;
    while let Some(event) = watch.next().await {
        let event = event?;
        let revision = event.revision();
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                apply(cache, ObjectKey::of(&o), Some(Arc::new(o)));
            }
            WatchEvent::Deleted(o) => apply(cache, ObjectKey::of(&o), None),
            WatchEvent::Bookmark(_) => {}
        }
        cache.revision.send_modify(|r| *r = (*r).max(revision));
    }
    Err(StoreError::Nats("the watch ended".into()))
}
