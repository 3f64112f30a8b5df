//! The decisions of the allocation repair (Kubernetes' `ipallocator/controller.Repair`
//! and `portallocator/controller.Repair`), free of I/O: given a registry as read and the
//! values the Services hold, the registry as it should be.
//!
//! - A value a Service holds that the registry lacks is marked for it ("not allocated;
//!   repairing"); one whose entry names a Service that does not hold it is handed over,
//!   once that entry is older than the grace.
//! - A value two Services hold stays with the one the registry names (else the first by
//!   namespace/name); the others are reported ("assigned to multiple services").
//! - A value outside the range (the range was reconfigured) is reported, not marked.
//! - An entry no Service holds is a leak candidate once older than the grace (younger
//!   ones are creates in flight: the claim precedes the Service's write). A candidate is
//!   flagged on one pass and released on the next pass that still finds it leaked, as
//!   Kubernetes waits a repair interval before it frees a leak.
//!
//! [`crate::services::repair`] reads and writes the registries around this.

use std::collections::{BTreeMap, BTreeSet};

use crate::allocator::{self, Range, RangeKind};

/// What is wrong with a value a Service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    /// The registry did not have it: marked now.
    NotAllocated,
    /// Another Service holds it too (and keeps it).
    AlreadyAllocated,
    /// Outside the range.
    OutOfRange,
}

/// A Service's value with a finding (one Warning event each).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The Service, `namespace/name`.
    pub owner: String,
    /// The value as the Service writes it.
    pub value: String,
    /// What is wrong.
    pub finding: Finding,
}

impl Problem {
    /// Kubernetes' event reason and message for this problem in `range`.
    pub fn event(&self, range: &Range) -> (&'static str, String) {
        let v = &self.value;
        match (range.kind(), self.finding) {
            (RangeKind::Ip, Finding::NotAllocated) => (
                "ClusterIPNotAllocated",
                format!("Cluster IP [IPv4]:{v} is not allocated; repairing"),
            ),
            (RangeKind::Ip, Finding::AlreadyAllocated) => (
                "ClusterIPAlreadyAllocated",
                format!(
                    "Cluster IP [IPv4]:{v} was assigned to multiple services; please recreate service"
                ),
            ),
            (RangeKind::Ip, Finding::OutOfRange) => (
                "ClusterIPOutOfRange",
                format!(
                    "Cluster IP [IPv4]:{v} is not within the service CIDR {}; please recreate service",
                    range.text()
                ),
            ),
            (RangeKind::Port, Finding::NotAllocated) => (
                "PortNotAllocated",
                format!("Port {v} is not allocated; repairing"),
            ),
            (RangeKind::Port, Finding::AlreadyAllocated) => (
                "PortAlreadyAllocated",
                format!("Port {v} was assigned to multiple services; please recreate service"),
            ),
            (RangeKind::Port, Finding::OutOfRange) => (
                "PortOutOfRange",
                format!(
                    "Port {v} is not within the port range {}; please recreate service",
                    range.text()
                ),
            ),
        }
    }
}

/// The repaired registry and what the pass found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The registry as it should be.
    pub data: BTreeMap<String, String>,
    /// Whether `data` differs from what was read (only then is it written).
    pub changed: bool,
    /// Leak candidates of this pass: released by the next one if still leaked.
    pub flagged: BTreeSet<String>,
    /// Entries released as leaks now.
    pub released: Vec<String>,
    /// Values marked for the Service that holds them (missing, or handed over).
    pub marked: Vec<String>,
    /// Problems to report on the Services.
    pub problems: Vec<Problem>,
}

/// One repair pass over `registry` (value -> entry) of `range`. `holders` are the
/// Services and the values they hold (`namespace/name` -> values as written);
/// `flagged` is what the previous pass flagged; `now` and `grace_secs` in unix seconds.
pub fn reconcile(
    range: &Range,
    registry: &BTreeMap<String, String>,
    holders: &BTreeMap<String, BTreeSet<String>>,
    flagged: &BTreeSet<String>,
    now: u64,
    grace_secs: u64,
) -> Outcome {
    let mut out = Outcome {
        data: registry.clone(),
        ..Outcome::default()
    };
    // Who holds what, by the registry's spelling of the value.
    let mut held: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (owner, values) in holders {
        for value in values {
            match range.parse(value).filter(|v| range.contains(*v)) {
                Some(v) => held.entry(range.render(v)).or_default().push(owner),
                None => out.problems.push(Problem {
                    owner: owner.clone(),
                    value: value.clone(),
                    finding: Finding::OutOfRange,
                }),
            }
        }
    }
    for (value, owners) in &held {
        let entry = registry.get(value).map(String::as_str);
        let (entry_owner, claimed_at) = entry.map(allocator::parse_entry).unzip();
        let claimed_at = claimed_at.flatten();
        let keeper = entry_owner
            .filter(|o| owners.contains(o))
            .unwrap_or(owners[0]);
        for other in owners.iter().filter(|o| **o != keeper) {
            out.problems.push(Problem {
                owner: other.to_string(),
                value: value.clone(),
                finding: Finding::AlreadyAllocated,
            });
        }
        let mark = match entry_owner {
            None => {
                out.problems.push(Problem {
                    owner: keeper.to_string(),
                    value: value.clone(),
                    finding: Finding::NotAllocated,
                });
                true
            }
            Some(o) if o == keeper => false,
            // The entry names a Service that does not hold the value: a young entry may
            // be a create in flight that will be refused; an old one is stale.
            Some(_) => allocator::may_be_leaked(claimed_at, now, grace_secs),
        };
        if mark {
            out.data
                .insert(value.clone(), allocator::entry(keeper, now));
            out.marked.push(value.clone());
        }
    }
    for (value, entry) in registry {
        if held.contains_key(value) {
            continue;
        }
        let (_, claimed_at) = allocator::parse_entry(entry);
        if !allocator::may_be_leaked(claimed_at, now, grace_secs) {
            continue;
        }
        if flagged.contains(value) {
            out.data.remove(value);
            out.released.push(value.clone());
        } else {
            out.flagged.insert(value.clone());
        }
    }
    out.problems.sort();
    out.changed = out.data != *registry;
    out
}

#[cfg(test)]
mod tests;
