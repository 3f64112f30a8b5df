//! The watch cache's core, without I/O: the current objects by store key, a bounded ring
//! of recent changes (each with the object before it), and the revision the state is
//! complete up to. The reflector feeds it store events; watchers read slices of the ring.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bus_schema::subjects;
use drover_store::{WatchEvent, object};
use serde_json::Value;

use super::filter::Filter;

/// One change applied to the cache, as every watcher sees it before its own filter.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEvent {
    /// The change's revision.
    pub rv: u64,
    /// The object after the change; for a deletion, its last state at the deletion's
    /// revision (the store's tombstone).
    pub object: Arc<Value>,
    /// The object before the change; `None` when the change created it.
    pub prev: Option<Arc<Value>>,
    /// Whether the change removed the object.
    pub deleted: bool,
}

/// Where the cache stands. Readers wait on it; watchers compare epochs with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bumped by every (re)list: a position taken in an older epoch means nothing now.
    pub epoch: u64,
    /// Every change up to this revision has been applied.
    pub rv: u64,
    /// The state is exactly the store's at `rv` (false until a (re)list has settled).
    pub ready: bool,
}

/// Why a watcher cannot go on from its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The ring no longer holds the changes right after `pos`: the watcher fell behind
    /// (too slow) or asked for a revision older than the ring.
    TooOld {
        /// The watcher's position.
        pos: u64,
        /// The oldest position the ring can continue from.
        oldest: u64,
    },
    /// The cache re-listed from the store; the watcher must re-list too.
    Relisted,
}

/// The last changes, oldest first, as a bounded ring.
#[derive(Debug)]
pub struct Ring {
    events: VecDeque<Arc<CacheEvent>>,
    capacity: usize,
    /// The ring holds every change after this revision.
    oldest: u64,
}

impl Ring {
    /// An empty ring holding at most `capacity` (at least 1) changes, complete after
    /// revision `oldest`.
    pub fn new(capacity: usize, oldest: u64) -> Ring {
        Ring {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            oldest,
        }
    }

    /// Appends a change (revisions must increase), evicting the oldest when full.
    pub fn push(&mut self, event: Arc<CacheEvent>) {
        if self.events.len() == self.capacity
            && let Some(evicted) = self.events.pop_front()
        {
            self.oldest = evicted.rv;
        }
        self.events.push_back(event);
    }

    /// The oldest position a watcher can continue from.
    pub fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Every held change after `pos`, or [`Lost::TooOld`] when some may be missing.
    pub fn since(&self, pos: u64) -> Result<Vec<Arc<CacheEvent>>, Lost> {
        if pos < self.oldest {
            return Err(Lost::TooOld {
                pos,
                oldest: self.oldest,
            });
        }
        let start = self.events.partition_point(|e| e.rv <= pos);
        Ok(self.events.range(start..).cloned().collect())
    }
}

/// The cached objects of one kind and their recent history.
#[derive(Debug)]
pub struct CacheState {
    /// By store key (`<ns>.<name>`), so iteration order is the store's list order.
    objects: BTreeMap<String, Arc<Value>>,
    ring: Ring,
    ring_capacity: usize,
    progress: Progress,
    /// After a (re)list the state is exact once `progress.rv` reaches this revision.
    settle_rv: u64,
}

impl CacheState {
    /// An empty, not yet ready state whose ring keeps `ring_capacity` changes.
    pub fn new(ring_capacity: usize) -> CacheState {
        CacheState {
            objects: BTreeMap::new(),
            ring: Ring::new(ring_capacity, 0),
            ring_capacity,
            progress: Progress::default(),
            settle_rv: 0,
        }
    }

    /// Where the state stands.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// The oldest position a watcher can continue from in the ring.
    pub fn oldest(&self) -> u64 {
        self.ring.oldest()
    }

    /// Starts over from a store list: `items` as listed, `list_rv` the list's revision
    /// (taken before the items were read) and `settle_rv` the store's revision read after
    /// them. The items may already include changes after `list_rv`, so the store watch
    /// that follows from `list_rv` replays some of them: [`CacheState::apply`] skips
    /// those per key. Once `settle_rv` is reached every key holds its state at the
    /// cache's revision, and only from then on are changes recorded in the ring.
    pub fn replace(&mut self, items: Vec<Value>, list_rv: u64, settle_rv: u64) {
        self.objects = items
            .into_iter()
            .map(|obj| (key_of(&obj), Arc::new(obj)))
            .collect();
        self.progress = Progress {
            epoch: self.progress.epoch + 1,
            rv: list_rv,
            ready: false,
        };
        self.settle_rv = settle_rv;
        self.ring = Ring::new(self.ring_capacity, list_rv);
        self.settle();
    }

    fn settle(&mut self) {
        if !self.progress.ready && self.progress.rv >= self.settle_rv {
            self.progress.ready = true;
            self.ring = Ring::new(self.ring_capacity, self.progress.rv);
        }
    }

    /// Applies one store event in revision order; returns whether the progress moved.
    /// Events at or below the current revision (replays) change nothing.
    pub fn apply(&mut self, event: WatchEvent) -> bool {
        let rv = event.revision();
        if rv <= self.progress.rv {
            return false;
        }
        let change = match event {
            WatchEvent::Bookmark(_) => None,
            WatchEvent::Added(obj) | WatchEvent::Modified(obj) => self.put(rv, obj),
            WatchEvent::Deleted(obj) => self.delete(rv, obj),
        };
        self.progress.rv = rv;
        if let Some(change) = change
            && self.progress.ready
        {
            self.ring.push(Arc::new(change));
        }
        self.settle();
        true
    }

    fn put(&mut self, rv: u64, obj: Value) -> Option<CacheEvent> {
        let key = key_of(&obj);
        // While a (re)list settles, the watch replays changes the listed items include.
        if self
            .objects
            .get(&key)
            .is_some_and(|cur| revision(cur) >= rv)
        {
            return None;
        }
        let object = Arc::new(obj);
        let prev = self.objects.insert(key, object.clone());
        Some(CacheEvent {
            rv,
            object,
            prev,
            deleted: false,
        })
    }

    fn delete(&mut self, rv: u64, tombstone: Value) -> Option<CacheEvent> {
        let key = key_of(&tombstone);
        // Unknown keys (deleted before the list) and replays change nothing.
        if self.objects.get(&key).is_none_or(|cur| revision(cur) >= rv) {
            return None;
        }
        let prev = self.objects.remove(&key);
        Some(CacheEvent {
            rv,
            object: Arc::new(tombstone),
            prev,
            deleted: true,
        })
    }

    /// The objects `filter` matches, in store order, with the progress they reflect;
    /// `None` while the state is not ready.
    pub fn snapshot(&self, filter: &Filter) -> Option<(Vec<Arc<Value>>, Progress)> {
        if !self.progress.ready {
            return None;
        }
        let matching = |obj: &&Arc<Value>| filter.matches(obj);
        let items = match filter.namespace() {
            // Keys start with the namespace's token and a dot; tokens contain no dot.
            Some(ns) => {
                let prefix = format!("{}.", subjects::token(ns));
                self.objects
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .map(|(_, obj)| obj)
                    .filter(matching)
                    .cloned()
                    .collect()
            }
            None => self.objects.values().filter(matching).cloned().collect(),
        };
        Some((items, self.progress))
    }

    /// The changes after `pos` for a watcher that started in `epoch`, with the revision
    /// the watcher is at once it has seen them.
    pub fn since(&self, epoch: u64, pos: u64) -> Result<(Vec<Arc<CacheEvent>>, u64), Lost> {
        if epoch != self.progress.epoch || !self.progress.ready {
            return Err(Lost::Relisted);
        }
        let events = self.ring.since(pos)?;
        Ok((events, self.progress.rv))
    }
}

/// The store key of an object (`<ns>.<name>`, cluster scope `_`).
pub fn key_of(obj: &Value) -> String {
    subjects::kv_key(object::namespace(obj), object::name(obj))
}

/// The object's resourceVersion as a number (0 when missing or malformed).
pub fn revision(obj: &Value) -> u64 {
    object::meta_str(obj, "resourceVersion")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
