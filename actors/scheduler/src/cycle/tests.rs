use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::*;
use crate::fixtures::{node, on, pod, snapshot};

#[test]
fn feasible_nodes_to_find() {
    for (n, want) in [
        (0, 0),
        (50, 50),
        (100, 100),
        (1000, 420),
        (5000, 500),
        (10_000, 500),
        (100_000, 5000),
    ] {
        assert_eq!(n_feasible_to_find(n), want, "{n} nodes");
    }
}

#[test]
fn select_is_max_and_seeded() {
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(select(&[1, 5, 3], &mut rng), 1);
    let picks: Vec<usize> = (0..4)
        .map(|_| select(&[7, 7, 7, 7], &mut StdRng::seed_from_u64(9)))
        .collect();
    assert!(
        picks.windows(2).all(|w| w[0] == w[1]),
        "same seed, same pick"
    );
    let mut rng = StdRng::seed_from_u64(3);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        seen.insert(select(&[7, 7, 7], &mut rng));
    }
    assert_eq!(seen.len(), 3, "ties are spread");
}

#[test]
fn schedules_on_the_fitting_node_and_explains_failures() {
    let nodes = vec![
        node("big", "8", "16Gi", json!({})),
        node("small", "1", "1Gi", json!({})),
        node(
            "gpu",
            "8",
            "16Gi",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ),
    ];
    let snap = snapshot(nodes, vec![]);
    let mut rng = StdRng::seed_from_u64(0);
    let mut cursor = Cursor::default();
    assert_eq!(
        schedule(
            &snap,
            &pod("p", "4", "1Gi", json!({})),
            &mut cursor,
            &mut rng
        ),
        Ok("big".into())
    );
    let err = schedule(
        &snap,
        &pod("q", "16", "1Gi", json!({})),
        &mut cursor,
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(
        err.fit_error(),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
    );
}

#[test]
fn assumed_pods_are_seen_by_the_next_decision() {
    let mut snap = snapshot(
        vec![
            node("a", "2", "4Gi", json!({})),
            node("b", "2", "4Gi", json!({})),
        ],
        vec![],
    );
    let mut rng = StdRng::seed_from_u64(0);
    let mut cursor = Cursor::default();
    let mut placed = Vec::new();
    for i in 0..4 {
        let p = pod(&format!("p{i}"), "1", "1Gi", json!({}));
        let n = schedule(&snap, &p, &mut cursor, &mut rng).unwrap();
        snap.place_pod(on(p, &n));
        placed.push(n);
    }
    placed.sort();
    assert_eq!(placed, ["a", "a", "b", "b"]);
    assert!(schedule(&snap, &pod("p5", "1", "", json!({})), &mut cursor, &mut rng).is_err());
}

#[test]
fn no_nodes() {
    let snap = snapshot(vec![], vec![]);
    let err = schedule(
        &snap,
        &pod("p", "", "", json!({})),
        &mut Cursor::default(),
        &mut StdRng::seed_from_u64(0),
    )
    .unwrap_err();
    assert_eq!(err.fit_error(), "0/0 nodes are available:");
}
