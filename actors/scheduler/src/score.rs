//! Scores: which feasible node is best? Each score is 0..=100 per node (normalized like
//! kube-scheduler's plugins), combined with Kubernetes' default weights. Scores that
//! would be equal on every node for this pod are skipped: they cannot change the choice.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Taint;

use crate::filter::{Spread, Term, spread_counts, term_matches};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Largest score one plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;
/// NodeResourcesFit (least allocated) weight.
pub const WEIGHT_LEAST_ALLOCATED: i64 = 1;
/// NodeResourcesBalancedAllocation weight.
pub const WEIGHT_BALANCED: i64 = 1;
/// NodeAffinity (preferred terms) weight.
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
/// TaintToleration (PreferNoSchedule) weight.
pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
/// InterPodAffinity (preferred terms) weight.
pub const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
/// PodTopologySpread (ScheduleAnyway) weight.
pub const WEIGHT_TOPOLOGY_SPREAD: i64 = 2;
/// Weight of an existing pod's *required* affinity term that matches the incoming pod
/// (kube-scheduler's hardPodAffinityWeight).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Per-pod work before scoring the feasible nodes.
#[derive(Debug, Default)]
pub struct PreScore {
    /// Inter-pod affinity weight per topology pair.
    pod_affinity: HashMap<(String, String), i64>,
    spread: Vec<Spread>,
}

/// Computes what the scores need once per pod.
pub fn pre_score(pod: &PodInfo, snap: &Snapshot) -> PreScore {
    let mut out = PreScore {
        spread: spread_counts(pod, snap, "ScheduleAnyway"),
        ..Default::default()
    };
    let weighted = |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>,
                    ns: &str,
                    sign: i64| {
        terms
            .into_iter()
            .flatten()
            .map(|t| Term::new(&t.pod_affinity_term, ns, sign * i64::from(t.weight)))
            .collect::<Vec<_>>()
    };
    let aff = pod.affinity.as_ref();
    let mut own: Vec<Term> = weighted(
        aff.and_then(|a| a.pod_affinity.as_ref()).and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        &pod.namespace,
        1,
    );
    own.extend(weighted(
        aff.and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        &pod.namespace,
        -1,
    ));
    let mut add = |node: &NodeInfo, term: &Term| {
        if let Some(v) = node.labels.get(&term.topology_key) {
            *out.pod_affinity
                .entry((term.topology_key.clone(), v.clone()))
                .or_default() += term.weight;
        }
    };
    if !own.is_empty() {
        for node in snap.all_nodes() {
            for other in node.pods.values() {
                for t in own.iter().filter(|t| t.matches(other)) {
                    add(node, t);
                }
            }
        }
    }
    for existing in snap.affinity_pods() {
        let Some(node) = snap.node(&existing.node_name) else {
            continue;
        };
        let a = existing.affinity.as_ref();
        let mut terms = weighted(
            a.and_then(|a| a.pod_affinity.as_ref()).and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            &existing.namespace,
            1,
        );
        terms.extend(weighted(
            a.and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
            &existing.namespace,
            -1,
        ));
        terms.extend(
            crate::filter::required_affinity_terms(existing)
                .into_iter()
                .map(|mut t| {
                    t.weight = HARD_POD_AFFINITY_WEIGHT;
                    t
                }),
        );
        for t in terms.iter().filter(|t| t.matches(pod)) {
            add(node, t);
        }
    }
    out
}

/// LeastAllocated over cpu and memory (equal weights), the pod included.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let one = |req: i64, alloc: i64| {
        if alloc <= 0 || req > alloc {
            0
        } else {
            (alloc - req) * MAX_NODE_SCORE / alloc
        }
    };
    let (cpu, mem) = requested_with(pod, node);
    (one(cpu, node.allocatable.milli_cpu) + one(mem, node.allocatable.memory)) / 2
}

/// BalancedAllocation: 100 when cpu and memory are used in equal fractions.
pub fn balanced(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let frac = |req: i64, alloc: i64| {
        if alloc <= 0 {
            1.0
        } else {
            (req as f64 / alloc as f64).min(1.0)
        }
    };
    let (cpu, mem) = requested_with(pod, node);
    let f_cpu = frac(cpu, node.allocatable.milli_cpu);
    let f_mem = frac(mem, node.allocatable.memory);
    let std = (f_cpu - f_mem).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

fn requested_with(pod: &PodInfo, node: &NodeInfo) -> (i64, i64) {
    (
        node.non_zero_requested.0 + pod.non_zero.0,
        node.non_zero_requested.1 + pod.non_zero.1,
    )
}

/// Sum of the weights of the pod's preferred node affinity terms the node matches.
pub fn node_affinity_raw(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| term_matches(&t.preference, node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// PreferNoSchedule taints of the node the pod does not tolerate.
pub fn untolerated_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let tolerations: Vec<_> = pod
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    node.taints
        .iter()
        .filter(|t: &&Taint| t.effect == "PreferNoSchedule")
        .filter(|t| !crate::filter::tolerates(&tolerations, t))
        .count() as i64
}

/// Scores every node in `nodes` (all feasible) for the pod; higher is better.
pub fn score(pod: &PodInfo, pre: &PreScore, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut total: Vec<i64> = nodes
        .iter()
        .map(|n| {
            WEIGHT_LEAST_ALLOCATED * least_allocated(pod, n) + WEIGHT_BALANCED * balanced(pod, n)
        })
        .collect();
    // NodeAffinity: raw weight sums, scaled so the best node gets 100.
    let raw: Vec<i64> = nodes.iter().map(|n| node_affinity_raw(pod, n)).collect();
    add_normalized(&mut total, &raw, WEIGHT_NODE_AFFINITY, false);
    // TaintToleration: fewer untolerated PreferNoSchedule taints is better.
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| untolerated_prefer_no_schedule(pod, n))
        .collect();
    add_normalized(&mut total, &raw, WEIGHT_TAINT_TOLERATION, true);
    // InterPodAffinity: min-max normalized (negative weights from anti-affinity).
    if !pre.pod_affinity.is_empty() {
        let raw: Vec<i64> = nodes
            .iter()
            .map(|n| {
                pre.pod_affinity
                    .iter()
                    .filter(|((k, v), _)| n.labels.get(k) == Some(v))
                    .map(|(_, w)| *w)
                    .sum()
            })
            .collect();
        let (min, max) = min_max(&raw);
        if max > min {
            for (t, r) in total.iter_mut().zip(&raw) {
                *t += WEIGHT_INTER_POD_AFFINITY * (r - min) * MAX_NODE_SCORE / (max - min);
            }
        }
    }
    // PodTopologySpread (ScheduleAnyway): fewer matching pods in the node's domains is
    // better; a node missing a key gets the worst score.
    if !pre.spread.is_empty() {
        let raw: Vec<Option<i64>> = nodes
            .iter()
            .map(|n| {
                pre.spread
                    .iter()
                    .map(|s| {
                        n.labels
                            .get(&s.topology_key)
                            .map(|v| s.counts.get(v).copied().unwrap_or(0))
                    })
                    .sum()
            })
            .collect();
        let present: Vec<i64> = raw.iter().flatten().copied().collect();
        let (min, max) = min_max(&present);
        for (t, r) in total.iter_mut().zip(&raw) {
            let s = match r {
                Some(r) if max > 0 => MAX_NODE_SCORE * (max + min - r) / max,
                Some(_) => MAX_NODE_SCORE,
                None => 0,
            };
            *t += WEIGHT_TOPOLOGY_SPREAD * s;
        }
    }
    total
}

fn min_max(v: &[i64]) -> (i64, i64) {
    (
        v.iter().copied().min().unwrap_or(0),
        v.iter().copied().max().unwrap_or(0),
    )
}

/// Kubernetes' DefaultNormalizeScore: scale so the largest raw score is 100 (reversed:
/// the largest becomes 0). Nothing is added when every raw score is 0.
fn add_normalized(total: &mut [i64], raw: &[i64], weight: i64, reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        return;
    }
    for (t, r) in total.iter_mut().zip(raw) {
        let s = r * MAX_NODE_SCORE / max;
        *t += weight * if reverse { MAX_NODE_SCORE - s } else { s };
    }
}

#[cfg(test)]
mod tests;
