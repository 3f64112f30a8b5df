use serde_json::json;

use super::*;

fn pods(n_ready: usize, n_unready: usize, scale: Option<(&str, i64)>) -> Vec<PodState> {
    (0..n_ready + n_unready)
        .map(|i| PodState {
            name: format!("p{i}"),
            ready: i < n_ready,
            terminating: false,
            scale: scale.map(|(u, n)| (u.to_string(), n)),
        })
        .collect()
}

fn pdb(spec: Value) -> Value {
    json!({"metadata": {"name": "b", "generation": 3}, "spec": spec})
}

/// (expected, desired, current, allowed) or the SyncFailed message.
fn check(spec: Value, pods: &[PodState], want: Result<(i64, i64, i64, i64), &str>) {
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let (s, _) = desired_status(&pdb(spec.clone()), pods, now);
    assert_eq!(s["observedGeneration"], 3);
    let got = if s["conditions"][0]["reason"] == "SyncFailed" {
        Err(s["conditions"][0]["message"].as_str().unwrap().to_string())
    } else {
        Ok((
            s["expectedPods"].as_i64().unwrap(),
            s["desiredHealthy"].as_i64().unwrap(),
            s["currentHealthy"].as_i64().unwrap(),
            s["disruptionsAllowed"].as_i64().unwrap(),
        ))
    };
    assert_eq!(got, want.map_err(str::to_string), "{spec}");
}

#[test]
fn budgets() {
    let rs = Some(("rs-uid", 4));
    check(
        json!({"minAvailable": 2}),
        &pods(3, 0, None),
        Ok((3, 2, 3, 1)),
    );
    check(
        json!({"minAvailable": 3}),
        &pods(3, 0, None),
        Ok((3, 3, 3, 0)),
    );
    check(
        json!({"minAvailable": 2}),
        &pods(2, 1, None),
        Ok((3, 2, 2, 0)),
    );
    check(
        json!({"minAvailable": 1}),
        &pods(0, 0, None),
        Ok((0, 1, 0, 0)),
    );
    // Percentages and maxUnavailable scale with the controllers, rounding up.
    check(
        json!({"minAvailable": "50%"}),
        &pods(4, 0, rs),
        Ok((4, 2, 4, 2)),
    );
    check(
        json!({"minAvailable": "30%"}),
        &pods(4, 0, rs),
        Ok((4, 2, 4, 2)),
    );
    check(
        json!({"maxUnavailable": 1}),
        &pods(4, 0, rs),
        Ok((4, 3, 4, 1)),
    );
    check(
        json!({"maxUnavailable": "25%"}),
        &pods(3, 0, rs),
        Ok((4, 3, 3, 0)),
    );
    check(
        json!({"maxUnavailable": "100%"}),
        &pods(4, 0, rs),
        Ok((4, 0, 4, 4)),
    );
    // Neither field: every healthy pod may go.
    check(json!({}), &pods(2, 0, None), Ok((2, 0, 2, 2)));
    check(
        json!({"maxUnavailable": 1}),
        &pods(2, 0, None),
        Err("found no controllers for pod \"p0\""),
    );
}

#[test]
fn disrupted_pods_expire_and_leave_with_their_pod() {
    let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
    let mut b = pdb(json!({"minAvailable": 1}));
    b["status"] = json!({"disruptedPods": {
        "p0": "2026-01-01T00:09:30Z",   // recent: kept, p0 not counted healthy
        "p1": "2026-01-01T00:05:00Z",   // older than the timeout: dropped
        "gone": "2026-01-01T00:09:59Z", // no such pod: dropped
    }});
    let (s, recheck) = desired_status(&b, &pods(3, 0, None), now);
    assert_eq!(s["disruptedPods"], json!({"p0": "2026-01-01T00:09:30Z"}));
    assert_eq!(s["currentHealthy"], 2);
    assert_eq!(s["disruptionsAllowed"], 1);
    assert_eq!(recheck, Some(Duration::from_secs(90)));
    // A terminating pod is not healthy and its record is dropped.
    let mut states = pods(3, 0, None);
    states[0].terminating = true;
    let (s, _) = desired_status(&b, &states, now);
    assert_eq!(s.get("disruptedPods"), None);
    assert_eq!(s["currentHealthy"], 2);
}

#[test]
fn condition_keeps_its_transition_time() {
    let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
    let mut b = pdb(json!({"minAvailable": 1}));
    b["status"] = json!({"conditions": [{"type": "DisruptionAllowed", "status": "True",
        "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
    let (s, _) = desired_status(&b, &pods(3, 0, None), now);
    assert_eq!(
        s["conditions"][0]["lastTransitionTime"],
        "2025-01-01T00:00:00Z"
    );
    assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
    let (s, _) = desired_status(&b, &pods(1, 0, None), now);
    assert_eq!(
        s["conditions"][0]["lastTransitionTime"],
        "2026-01-01T00:10:00Z"
    );
    assert_eq!(s["conditions"][0]["status"], "False");
}

#[test]
fn scale_follows_replica_sets_to_their_deployment() {
    let owned = |kind: &str, uid: &str| json!({"metadata": {"ownerReferences": [{"kind": kind, "uid": uid, "controller": true}]}});
    let mut rs = owned("Deployment", "dep");
    rs["kind"] = json!("ReplicaSet");
    rs["metadata"]["uid"] = json!("rs");
    rs["spec"] = json!({"replicas": 2});
    let dep = json!({"kind": "Deployment", "metadata": {"uid": "dep"}, "spec": {"replicas": 5}});
    let sts = json!({"kind": "StatefulSet", "metadata": {"uid": "sts"}, "spec": {"replicas": 3}});
    let controllers = [rs, dep, sts];
    assert_eq!(
        scale_of(&owned("ReplicaSet", "rs"), &controllers),
        Some(("dep".into(), 5))
    );
    assert_eq!(
        scale_of(&owned("StatefulSet", "sts"), &controllers),
        Some(("sts".into(), 3))
    );
    assert_eq!(scale_of(&owned("ReplicaSet", "nope"), &controllers), None);
    assert_eq!(scale_of(&json!({}), &controllers), None);
}
