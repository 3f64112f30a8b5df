use super::*;

fn claim(class: Option<&str>, volume: Option<&str>, phase: &str) -> Value {
    let mut c = json!({
        "metadata": {"name": "data-web-0", "namespace": "ns", "uid": "u1"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
        "status": {"phase": phase},
    });
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    if let Some(v) = volume {
        c["spec"]["volumeName"] = json!(v);
    }
    c
}

fn check(claim: Value, nodes: &[&str], pv_exists: bool, expected: Decision) {
    assert_eq!(decide(&claim, nodes, pv_exists), expected, "{claim}");
}

#[test]
fn decisions() {
    let provision = |n: &str| Decision::Provision { node: n.into() };
    // No consumer on a node yet: wait for the first one (WaitForFirstConsumer).
    check(claim(None, None, "Pending"), &[], false, Decision::Nothing);
    check(
        claim(None, None, "Pending"),
        &["n1", "n2"],
        false,
        provision("n1"),
    );
    check(
        claim(Some("local-path"), None, "Pending"),
        &["n2"],
        false,
        provision("n2"),
    );
    // Another class (or the explicit empty class) is not ours.
    check(
        claim(Some("fast"), None, "Pending"),
        &["n1"],
        false,
        Decision::Nothing,
    );
    check(
        claim(Some(""), None, "Pending"),
        &["n1"],
        false,
        Decision::Nothing,
    );
    // Bound: nothing; named but not marked: finish.
    check(
        claim(None, Some("pvc-u1"), "Bound"),
        &["n1"],
        true,
        Decision::Nothing,
    );
    check(
        claim(None, Some("pvc-u1"), "Pending"),
        &["n1"],
        true,
        Decision::MarkBound,
    );
    check(
        claim(None, Some("pvc-u1"), "Pending"),
        &["n1"],
        false,
        Decision::Nothing,
    );
    // Terminating claims are left alone.
    let mut gone = claim(None, None, "Pending");
    gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    check(gone, &["n1"], false, Decision::Nothing);
}

#[test]
fn the_volume_is_pinned_to_the_node_and_names_its_claim() {
    let pv = new_volume(&claim(None, None, "Pending"), "node-a");
    assert_eq!(pv["metadata"]["name"], "pvc-u1");
    assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
    assert_eq!(pv["spec"]["claimRef"]["uid"], "u1");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data-web-0");
    assert_eq!(
        pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms/0/matchExpressions/0/values/0"),
        Some(&json!("node-a"))
    );
    assert_eq!(pv["metadata"]["annotations"][LOCAL_PATH_ANNOTATION], "true");
}
