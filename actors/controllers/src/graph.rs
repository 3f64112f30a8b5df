//! The object graph the garbage collector and the namespace controller decide on: every
//! object of every kind, reduced to what ownership and deletion need (its owners, its
//! finalizers, whether it is terminating), with an index from owner to dependents.
//!
//! I/O-free: the controller loop feeds it changes ([`Graph::upsert`], [`Graph::remove`])
//! and asks [`Graph::decide`] what to do about one object; it answers with [`Action`]s
//! the loop carries out against the store. Kubernetes' garbage collector keeps the same
//! graph (`uidToNode`); decisions follow its rules:
//!
//! - a dependent all of whose owners are gone is deleted (background propagation);
//!   references to owners that are gone are dropped when other owners remain;
//! - an owner terminating with the `orphan` finalizer has the references to it removed
//!   from its dependents, then loses the finalizer;
//! - an owner terminating with `foregroundDeletion` has its dependents deleted and loses
//!   the finalizer when none are left (drover waits for every dependent, not only those
//!   with `blockOwnerDeletion`: simpler, and never deletes the owner too early);
//! - a terminating Namespace with the `kubernetes` finalizer has its content deleted and
//!   is finalized once nothing is left in it.

use std::collections::{BTreeSet, HashMap};

use bus_schema::KindInfo;
use serde_json::Value;

/// Finalizer of an owner whose dependents are deleted before it (propagation Foreground).
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer of an owner whose dependents are kept and released (propagation Orphan).
pub const ORPHAN: &str = "orphan";
/// The `spec.finalizers` entry a Namespace keeps until its content is gone.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Its kind.
    pub kind: &'static KindInfo,
    /// Its namespace (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind.plural, ns, self.name),
            None => write!(f, "{}/{}", self.kind.plural, self.name),
        }
    }
}

/// One entry of `metadata.ownerReferences`, as far as the collector cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owner's uid.
    pub uid: String,
    /// The owner's kind when drover stores it, and its name. References to other kinds
    /// are never treated as dangling: drover cannot tell whether such an owner exists.
    pub lookup: Option<(&'static KindInfo, String)>,
}

/// An object in the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where it lives.
    pub object: ObjectRef,
    /// Its uid.
    pub uid: String,
    /// Its owners.
    pub owners: Vec<Owner>,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// For a Namespace: whether `spec.finalizers` still holds [`NAMESPACE_FINALIZER`].
    pub namespace_finalizer: bool,
}

impl Node {
    /// Reads a node from a stored object; `None` when it has no uid (never stored).
    pub fn from_object(kind: &'static KindInfo, obj: &Value) -> Option<Node> {
        let meta = obj.get("metadata")?;
        let uid = meta.get("uid").and_then(Value::as_str)?.to_string();
        let name = meta.get("name").and_then(Value::as_str)?.to_string();
        let namespace = kind
            .namespaced
            .then(|| meta.get("namespace").and_then(Value::as_str))
            .flatten()
            .map(str::to_string);
        let owners = meta
            .get("ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| {
                        let uid = r.get("uid").and_then(Value::as_str)?;
                        let api_version = r.get("apiVersion").and_then(Value::as_str)?;
                        let kind = r.get("kind").and_then(Value::as_str)?;
                        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                        Some(Owner {
                            uid: uid.to_string(),
                            lookup: bus_schema::kinds::by_api_version_kind(api_version, kind)
                                .map(|k| (k, name.to_string())),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let finalizers = drover_store::object::finalizers(obj);
        let namespace_finalizer = drover_store::object::is_namespace(kind)
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|v| v == NAMESPACE_FINALIZER));
        Some(Node {
            object: ObjectRef {
                kind,
                namespace,
                name,
            },
            uid,
            owners,
            finalizers,
            deleting: drover_store::object::is_terminating(obj),
            namespace_finalizer,
        })
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// How a dependent is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Deleted now; its own dependents are collected afterwards.
    Background,
    /// Deleted after its own dependents (it gets the [`FOREGROUND`] finalizer).
    Foreground,
}

/// What the controller loop should do to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delete `object` if its uid is still `uid`.
    Delete {
        /// The object.
        object: ObjectRef,
        /// Precondition: the uid it had when decided.
        uid: String,
        /// Propagation to its own dependents.
        propagation: Propagation,
    },
    /// Delete `object` (uid precondition, background) because none of `owners` exists,
    /// once a live read confirms it: the graph may not have seen a new owner yet.
    DeleteOrphan {
        /// The dependent.
        object: ObjectRef,
        /// Precondition: the uid it had when decided.
        uid: String,
        /// The owners the graph does not hold.
        owners: Vec<Owner>,
    },
    /// Drop the owner references with these uids from `object`.
    RemoveOwnerRefs {
        /// The dependent.
        object: ObjectRef,
        /// Owner uids to drop.
        owner_uids: Vec<String>,
        /// When set, drop only the owners that a live read confirms are gone.
        verify: Vec<Owner>,
    },
    /// Remove `finalizer` from `metadata.finalizers` of `object`.
    RemoveFinalizer {
        /// The object.
        object: ObjectRef,
        /// The finalizer.
        finalizer: &'static str,
    },
    /// Remove [`NAMESPACE_FINALIZER`] from the Namespace's `spec.finalizers`.
    FinalizeNamespace {
        /// The Namespace.
        object: ObjectRef,
    },
}

/// Every object the informers have seen, indexed for the collector.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, BTreeSet<String>>,
    by_namespace: HashMap<String, BTreeSet<String>>,
    namespaces: HashMap<String, String>,
}

impl Graph {
    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph holds no object.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node with this uid.
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Uids of every node of `kind`.
    pub fn uids_of_kind(&self, kind: &KindInfo) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.object.kind == kind)
            .map(|n| n.uid.clone())
            .collect()
    }

    /// Every uid (for a periodic full pass).
    pub fn uids(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Inserts or replaces a node; returns the uids whose decision may have changed.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let old = self.detach(&node.uid);
        let mut dirty = vec![node.uid.clone()];
        for owner in node
            .owners
            .iter()
            .chain(old.iter().flat_map(|o| o.owners.iter()))
        {
            dirty.push(owner.uid.clone());
        }
        if node.deleting {
            dirty.extend(self.dependents_of(&node.uid));
        }
        if let Some(ns) = &node.object.namespace {
            dirty.extend(self.namespaces.get(ns).cloned());
            self.by_namespace
                .entry(ns.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        if drover_store::object::is_namespace(node.object.kind) {
            self.namespaces
                .insert(node.object.name.clone(), node.uid.clone());
        }
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        self.nodes.insert(node.uid.clone(), node);
        dirty.sort();
        dirty.dedup();
        dirty
    }

    /// Removes a node; returns the uids whose decision may have changed.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.detach(uid) else {
            return Vec::new();
        };
        let mut dirty: Vec<String> = old.owners.iter().map(|o| o.uid.clone()).collect();
        dirty.extend(self.dependents_of(uid));
        if let Some(ns) = &old.object.namespace {
            dirty.extend(self.namespaces.get(ns).cloned());
        }
        dirty.sort();
        dirty.dedup();
        dirty
    }

    /// Takes a node out of the indexes (the dependents index of its own uid stays: its
    /// dependents still point at it).
    fn detach(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for owner in &old.owners {
            if let Some(deps) = self.dependents.get_mut(&owner.uid) {
                deps.remove(uid);
                if deps.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        if let Some(ns) = &old.object.namespace
            && let Some(members) = self.by_namespace.get_mut(ns)
        {
            members.remove(uid);
            if members.is_empty() {
                self.by_namespace.remove(ns);
            }
        }
        if drover_store::object::is_namespace(old.object.kind)
            && self
                .namespaces
                .get(&old.object.name)
                .is_some_and(|u| u == uid)
        {
            self.namespaces.remove(&old.object.name);
        }
        Some(old)
    }

    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn delete_action(&self, node: &Node, propagation: Propagation) -> Action {
        Action::Delete {
            object: node.object.clone(),
            uid: node.uid.clone(),
            propagation,
        }
    }

    /// What to do about the object with this uid now (nothing when it is gone).
    pub fn decide(&self, uid: &str) -> Vec<Action> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        let dependents: Vec<&Node> = self
            .dependents_of(uid)
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .collect();
        if node.deleting && node.has_finalizer(ORPHAN) {
            if dependents.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    object: node.object.clone(),
                    finalizer: ORPHAN,
                });
            } else {
                actions.extend(dependents.iter().map(|d| Action::RemoveOwnerRefs {
                    object: d.object.clone(),
                    owner_uids: vec![uid.to_string()],
                    verify: Vec::new(),
                }));
            }
            return actions;
        }
        if node.deleting && node.has_finalizer(FOREGROUND) {
            if dependents.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    object: node.object.clone(),
                    finalizer: FOREGROUND,
                });
            } else {
                for d in dependents.iter().filter(|d| !d.deleting) {
                    let propagation = if self.dependents.contains_key(&d.uid) {
                        Propagation::Foreground
                    } else {
                        Propagation::Background
                    };
                    actions.push(self.delete_action(d, propagation));
                }
            }
            return actions;
        }
        if node.deleting && node.namespace_finalizer {
            let content: Vec<&Node> = self
                .by_namespace
                .get(&node.object.name)
                .map(|m| m.iter().filter_map(|u| self.nodes.get(u)).collect())
                .unwrap_or_default();
            if content.is_empty() {
                actions.push(Action::FinalizeNamespace {
                    object: node.object.clone(),
                });
            } else {
                for member in content.iter().filter(|m| !m.deleting) {
                    actions.push(self.delete_action(member, Propagation::Background));
                }
            }
            return actions;
        }
        if node.owners.is_empty() {
            return actions;
        }
        let absent: Vec<Owner> = node
            .owners
            .iter()
            .filter(|o| o.lookup.is_some() && !self.nodes.contains_key(&o.uid))
            .cloned()
            .collect();
        if absent.len() == node.owners.len() {
            if !node.deleting {
                actions.push(Action::DeleteOrphan {
                    object: node.object.clone(),
                    uid: node.uid.clone(),
                    owners: absent,
                });
            }
        } else if !absent.is_empty() {
            actions.push(Action::RemoveOwnerRefs {
                object: node.object.clone(),
                owner_uids: absent.iter().map(|o| o.uid.clone()).collect(),
                verify: absent,
            });
        }
        actions
    }
}

#[cfg(test)]
mod tests;
