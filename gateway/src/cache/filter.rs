//! What one watcher or list wants: a namespace and label/field selectors, and the event
//! a filtered watcher sees for a change (Kubernetes' cacheWatcher transitions).

use std::sync::Arc;

use bus_schema::selector::{FieldSelector, LabelSelector};
use drover_store::{ListOptions, object};
use serde_json::Value;

use super::state::CacheEvent;

/// A namespace (or all) and optional label and field selectors.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    namespace: Option<String>,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    /// The filter of a request on `namespace` (all when `None`) with `opts`' selectors.
    pub fn new(namespace: Option<&str>, opts: &ListOptions) -> Filter {
        Filter {
            namespace: namespace.filter(|ns| !ns.is_empty()).map(str::to_string),
            labels: opts.label_selector.clone(),
            fields: opts.field_selector.clone(),
        }
    }

    /// The namespace asked for, if one.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Whether `obj` is in the namespace and satisfies both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| object::namespace(obj) == Some(ns))
            && self
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(&object::labels(obj)))
            && self.fields.as_ref().is_none_or(|s| s.matches(obj))
    }
}

/// The type of a watch event a client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object is new to this watcher (created, or started matching).
    Added,
    /// The object changed and matches before and after.
    Modified,
    /// The object is gone for this watcher (deleted, or stopped matching).
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// What a watcher with `filter` sees of `event`, comparing the object before and after:
/// a change that makes an object match is ADDED, one that makes it stop matching is
/// DELETED, one it matches on both sides is MODIFIED, others are invisible. As in
/// Kubernetes, the DELETED of an object that stopped matching carries the previous
/// object (the one the watcher knew) with the change's resourceVersion.
pub fn transition(filter: &Filter, event: &CacheEvent) -> Option<(EventType, Arc<Value>)> {
    let matched_before = event.prev.as_deref().is_some_and(|p| filter.matches(p));
    let matches_now = !event.deleted && filter.matches(&event.object);
    match (matched_before, matches_now) {
        (false, true) => Some((EventType::Added, event.object.clone())),
        (true, true) => Some((EventType::Modified, event.object.clone())),
        (true, false) if event.deleted => Some((EventType::Deleted, event.object.clone())),
        (true, false) => {
            let mut prev = event.prev.as_deref().cloned().unwrap_or(Value::Null);
            object::meta_mut(&mut prev).insert(
                "resourceVersion".into(),
                Value::String(event.rv.to_string()),
            );
            Some((EventType::Deleted, Arc::new(prev)))
        }
        (false, false) => None,
    }
}
