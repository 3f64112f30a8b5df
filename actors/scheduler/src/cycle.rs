//! One scheduling cycle for one pod, I/O-free: pre-filter, filter nodes starting where
//! the previous cycle stopped (until enough feasible nodes are found, like
//! kube-scheduler's percentageOfNodesToScore), score the feasible ones and pick the best,
//! breaking ties with the injected RNG (reservoir sampling, as kube-scheduler does).

use std::collections::BTreeMap;

use rand::Rng;

use crate::filter::{self, Reason};
use crate::message;
use crate::score;
use crate::snapshot::{PodInfo, Snapshot};

/// Below this many nodes every node is filtered (kube-scheduler: minFeasibleNodesToFind).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Least share of the nodes filtered in a large cluster, in percent.
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes to find before scoring (kube-scheduler's adaptive
/// percentageOfNodesToScore: 50% minus 1% per 125 nodes, at least 5%, at least 100).
pub fn n_feasible_to_find(n_nodes: usize) -> usize {
    if n_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return n_nodes;
    }
    let pct = 50usize
        .saturating_sub(n_nodes / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (n_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why a pod fits no node: the per-node reasons (for the message and for preemption).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnosis {
    /// Nodes that exist.
    pub n_nodes: usize,
    /// A reason that holds for every node (missing PVC), when there is one.
    pub pre_filter: Option<String>,
    /// Reasons per node, for every node that was filtered out.
    pub nodes: BTreeMap<String, Vec<Reason>>,
}

impl Diagnosis {
    /// `0/N nodes are available: ...` (without the preemption part).
    pub fn fit_error(&self) -> String {
        let reasons: Vec<String> = self
            .nodes
            .values()
            .flatten()
            .map(ToString::to_string)
            .collect();
        message::fit_error(
            self.n_nodes,
            self.pre_filter.as_deref(),
            &message::histogram(reasons.iter().map(String::as_str)),
        )
    }
}

/// Where the next cycle starts in the node list (kube-scheduler's nextStartNodeIndex).
#[derive(Debug, Default, Clone)]
pub struct Cursor(pub usize);

/// Picks a node for `pod`, or says why none fits.
pub fn schedule(
    snap: &Snapshot,
    pod: &PodInfo,
    cursor: &mut Cursor,
    rng: &mut impl Rng,
) -> Result<String, Diagnosis> {
    let names = snap.node_names();
    let n = names.len();
    let mut diagnosis = Diagnosis {
        n_nodes: n,
        ..Default::default()
    };
    if n == 0 {
        return Err(diagnosis);
    }
    let state = match filter::pre_filter(pod, snap) {
        Ok(s) => s,
        Err(msg) => {
            diagnosis.pre_filter = Some(msg);
            return Err(diagnosis);
        }
    };
    let want = n_feasible_to_find(n);
    let key = pod.key();
    let mut feasible = Vec::with_capacity(want.min(n));
    let start = cursor.0 % n;
    let mut processed = 0;
    for i in 0..n {
        let name = &names[(start + i) % n];
        processed += 1;
        let Some(node) = snap.node(name) else {
            continue;
        };
        let nominated = snap.nominated_on(name, pod.priority, &key);
        let reasons = filter::filter(pod, &state, node, nominated.as_ref());
        if reasons.is_empty() {
            feasible.push(node);
            if feasible.len() >= want {
                break;
            }
        } else {
            diagnosis.nodes.insert(name.clone(), reasons);
        }
    }
    cursor.0 = (start + processed) % n;
    match feasible.len() {
        0 => Err(diagnosis),
        1 => Ok(feasible[0].name.clone()),
        _ => {
            let pre = score::pre_score(pod, snap);
            let scores = score::score(pod, &pre, &feasible);
            Ok(feasible[select(&scores, rng)].name.clone())
        }
    }
}

/// Index of the highest score; ties broken uniformly at random (reservoir sampling).
pub fn select(scores: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        if i == 0 || *s > scores[best] {
            best = i;
            ties = 1;
        } else if *s == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests;
