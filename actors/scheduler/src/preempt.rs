//! Preemption (kube-scheduler's DefaultPreemption, without PodDisruptionBudgets): for a
//! pod that fits nowhere, find the node where evicting lower-priority pods makes it fit
//! with the least damage. Per node: take every lower-priority pod away; if the pod then
//! fits, give victims back one by one, most important first, keeping each that still
//! lets the pod fit. Among the candidates pick the node whose most important victim has
//! the lowest priority, then the lowest sum of victim priorities, then the fewest
//! victims, then the first by name.
//!
//! The snapshot is changed only while a node is simulated and restored before return.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cycle::Diagnosis;
use crate::filter;
use crate::message;
use crate::snapshot::{PodInfo, Snapshot};

/// How bad evicting a candidate's victims is: highest victim priority, sum of victim
/// priorities, number of victims, node name (smaller is better).
type Rank = (i32, i64, usize, String);

/// What preemption decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Preemption {
    /// Evict `victims` from `node`; the pod is nominated there and retried.
    Nominate {
        /// The chosen node.
        node: String,
        /// Pods to delete (gracefully).
        victims: Vec<Arc<PodInfo>>,
    },
    /// Preemption cannot help; the post-filter message for FailedScheduling.
    Failed(String),
}

/// Decides preemption for `pod`, which failed with `diagnosis`.
pub fn preempt(snap: &mut Snapshot, pod: &PodInfo, diagnosis: &Diagnosis) -> Preemption {
    if pod.never_preempt {
        return Preemption::Failed(message::NOT_ELIGIBLE_NEVER.into());
    }
    let key = pod.key();
    // A pod already nominated somewhere waits while its victims terminate.
    if !pod.nominated_node.is_empty()
        && let Some(node) = snap.node(&pod.nominated_node)
        && node
            .pods
            .values()
            .any(|p| p.terminating && p.priority < pod.priority)
    {
        return Preemption::Failed(
            "not eligible due to a terminating pod on the nominated node.".into(),
        );
    }
    let n_nodes = diagnosis.n_nodes;
    let mut statuses: BTreeMap<String, String> = BTreeMap::new();
    let mut best: Option<(Rank, Vec<Arc<PodInfo>>)> = None;
    let names: Vec<String> = snap.node_names().to_vec();
    for name in names {
        let helpful = diagnosis.pre_filter.is_none()
            && diagnosis
                .nodes
                .get(&name)
                .is_some_and(|r| r.iter().all(|r| r.preemption_may_help()));
        if !helpful {
            statuses.insert(name, message::PREEMPTION_NOT_HELPFUL.into());
            continue;
        }
        match victims_on(snap, pod, &key, &name) {
            Ok(victims) => {
                let rank = (
                    victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
                    victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
                    victims.len(),
                    name.clone(),
                );
                if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                    best = Some((rank, victims));
                }
            }
            Err(status) => {
                statuses.insert(name, status);
            }
        }
    }
    match best {
        Some(((_, _, _, node), victims)) => Preemption::Nominate { node, victims },
        None => Preemption::Failed(message::fit_error(
            n_nodes,
            None,
            &message::histogram(statuses.values().map(String::as_str)),
        )),
    }
}

/// The fewest, least important victims on one node, or why there are none.
fn victims_on(
    snap: &mut Snapshot,
    pod: &PodInfo,
    key: &str,
    node: &str,
) -> Result<Vec<Arc<PodInfo>>, String> {
    let Some(info) = snap.node(node) else {
        return Err(message::PREEMPTION_NOT_HELPFUL.into());
    };
    let mut lower: Vec<Arc<PodInfo>> = info
        .pods
        .values()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return Err(message::NO_VICTIMS.into());
    }
    for p in &lower {
        snap.remove_pod(&p.key());
    }
    let fits = |snap: &Snapshot| -> Result<(), String> {
        let state = filter::pre_filter(pod, snap)?;
        let Some(info) = snap.node(node) else {
            return Err(message::PREEMPTION_NOT_HELPFUL.into());
        };
        let nominated = snap.nominated_on(node, pod.priority, key);
        match filter::filter(pod, &state, info, nominated.as_ref()).first() {
            None => Ok(()),
            Some(r) => Err(r.to_string()),
        }
    };
    let result = match fits(snap) {
        Err(status) => Err(status),
        Ok(()) => {
            // Most important first; among equals, by name, so the choice replays.
            lower.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then_with(|| a.key().cmp(&b.key()))
            });
            let mut victims = Vec::new();
            for p in &lower {
                snap.place_pod(PodInfo::clone(p));
                if fits(snap).is_err() {
                    snap.remove_pod(&p.key());
                    victims.push(p.clone());
                }
            }
            // Restore the rest below.
            for p in &victims {
                snap.place_pod(PodInfo::clone(p));
            }
            return Ok(victims);
        }
    };
    for p in &lower {
        snap.place_pod(PodInfo::clone(p));
    }
    result
}

#[cfg(test)]
mod tests;
