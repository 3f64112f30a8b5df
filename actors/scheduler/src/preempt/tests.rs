use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::*;
use crate::cycle::{Cursor, schedule};
use crate::fixtures::{node, on, pod, snapshot};
use crate::snapshot::NodeInfo;

fn prio(name: &str, cpu: &str, priority: i32) -> PodInfo {
    pod(name, cpu, "", json!({"spec": {"priority": priority}}))
}

/// Preemption for `p` after it failed to schedule: the node and victim names, or the
/// post-filter message.
fn check(
    nodes: Vec<NodeInfo>,
    pods: Vec<PodInfo>,
    p: PodInfo,
    expected: Result<(&str, &[&str]), &str>,
) {
    let mut snap = snapshot(nodes, pods);
    let before: Vec<_> = snap
        .pods()
        .map(|p| (p.key(), p.node_name.clone()))
        .collect();
    let diagnosis = schedule(
        &snap,
        &p,
        &mut Cursor::default(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    let got = match preempt(&mut snap, &p, &diagnosis) {
        Preemption::Nominate { node, victims } => Ok((
            node,
            victims.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
        )),
        Preemption::Failed(msg) => Err(msg),
    };
    let want = expected
        .map(|(n, v)| {
            (
                n.to_string(),
                v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        })
        .map_err(str::to_string);
    assert_eq!(got, want);
    let after: Vec<_> = snap
        .pods()
        .map(|p| (p.key(), p.node_name.clone()))
        .collect();
    assert_eq!(before, after, "the snapshot is restored");
}

#[test]
fn evicts_the_fewest_lowest_priority_pods() {
    // a: two low pods (1 cpu each); b: one medium pod (2 cpu). The 2-cpu preemptor
    // needs 2 cpu: on a both low pods must go (max victim priority 1), on b the medium
    // one (priority 5): a wins on the lower highest victim priority.
    check(
        vec![
            node("a", "2", "8Gi", json!({})),
            node("b", "2", "8Gi", json!({})),
        ],
        vec![
            on(prio("low1", "1", 1), "a"),
            on(prio("low2", "1", 1), "a"),
            on(prio("mid", "2", 5), "b"),
        ],
        prio("high", "2", 10),
        Ok(("a", &["low1", "low2"])),
    );
    // Only one victim needed: the lower-priority one goes, the other is reprieved.
    check(
        vec![node("a", "2", "8Gi", json!({}))],
        vec![on(prio("p1", "1", 1), "a"), on(prio("p3", "1", 3), "a")],
        prio("high", "1", 10),
        Ok(("a", &["p1"])),
    );
}

#[test]
fn never_evicts_equal_or_higher_priority() {
    check(
        vec![node("a", "2", "8Gi", json!({}))],
        vec![on(prio("same", "2", 10), "a")],
        prio("high", "1", 10),
        Err("0/1 nodes are available: 1 No preemption victims found for incoming pod."),
    );
}

#[test]
fn unresolvable_nodes_are_not_helped() {
    check(
        vec![node(
            "a",
            "2",
            "8Gi",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        )],
        vec![on(prio("low", "2", 1), "a")],
        prio("high", "1", 10),
        Err("0/1 nodes are available: 1 Preemption is not helpful for scheduling."),
    );
}

#[test]
fn evicting_everything_is_not_enough() {
    check(
        vec![node("a", "2", "8Gi", json!({}))],
        vec![on(prio("low", "1", 1), "a")],
        prio("huge", "4", 10),
        Err("0/1 nodes are available: 1 Insufficient cpu."),
    );
}

#[test]
fn policy_never_does_not_preempt() {
    let mut p = prio("high", "2", 10);
    p.never_preempt = true;
    check(
        vec![node("a", "2", "8Gi", json!({}))],
        vec![on(prio("low", "2", 1), "a")],
        p,
        Err("not eligible due to preemptionPolicy=Never."),
    );
}
