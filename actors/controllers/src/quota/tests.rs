use serde_json::json;

use super::*;

fn kind(k: &str) -> &'static KindInfo {
    bus_schema::kinds::by_group_kind("", k).unwrap()
}

fn pod(name: &str, cpu: &str, phase: &str) -> (&'static KindInfo, Value) {
    (
        kind("Pod"),
        json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase}}),
    )
}

fn check(quota: Value, objects: &[(&'static KindInfo, Value)], want: Value) {
    assert_eq!(desired_status(&quota, objects), want, "{quota}");
}

#[test]
fn status_from_objects() {
    let q = json!({"spec": {"hard": {"pods": "3", "requests.cpu": "2", "configmaps": "5"}}});
    check(
        q.clone(),
        &[
            pod("a", "500m", "Running"),
            pod("b", "250m", "Pending"),
            // Finished pods use nothing.
            pod("c", "1", "Succeeded"),
            (kind("ConfigMap"), json!({"metadata": {"name": "x"}})),
        ],
        json!({"hard": {"pods": "3", "requests.cpu": "2", "configmaps": "5"},
               "used": {"pods": "2", "requests.cpu": "750m", "configmaps": "1"}}),
    );
    // Nothing in the namespace: every hard resource is reported as 0.
    check(
        q,
        &[],
        json!({"hard": {"pods": "3", "requests.cpu": "2", "configmaps": "5"},
               "used": {"pods": "0", "requests.cpu": "0", "configmaps": "0"}}),
    );
    // A scoped quota counts only the pods in its scope.
    check(
        json!({"spec": {"hard": {"pods": "3"}, "scopes": ["NotBestEffort"]}}),
        &[
            pod("a", "500m", "Running"),
            (
                kind("Pod"),
                json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}}),
            ),
        ],
        json!({"hard": {"pods": "3"}, "used": {"pods": "1"}}),
    );
}

#[test]
fn writes_only_changes() {
    let check = |current: Value, status: Value, want: bool| {
        assert_eq!(
            status_differs(&current, &status),
            want,
            "{current} {status}"
        );
    };
    let s = json!({"hard": {"requests.cpu": "1"}, "used": {"requests.cpu": "500m"}});
    check(json!({"status": s.clone()}), s.clone(), false);
    // Same amounts spelled differently: no write.
    check(
        json!({"status": {"hard": {"requests.cpu": "1000m"}, "used": {"requests.cpu": "0.5"}}}),
        s.clone(),
        false,
    );
    check(json!({}), s.clone(), true);
    check(
        json!({"status": {"hard": {"requests.cpu": "1"}, "used": {"requests.cpu": "1"}}}),
        s,
        true,
    );
}

#[test]
fn decreases_wait_for_confirmation() {
    let held = json!({"status": {"used": {"pods": "2"}}});
    let lower = json!({"used": {"pods": "1"}});
    let higher = json!({"used": {"pods": "3"}});
    assert!(lowers_usage(&held, &lower));
    assert!(!lowers_usage(&held, &higher));
    let check = |pending: Option<(&str, &Value, u64)>, rv: &str, status: &Value, want: bool| {
        let pending = pending.map(|(r, s, secs)| (r, s, Duration::from_secs(secs)));
        let lowers = lowers_usage(&held, status);
        assert_eq!(confirmed(pending, rv, status, lowers), want, "{status}");
    };
    // Increases are written at once.
    check(None, "5", &higher, true);
    // A decrease first waits ...
    check(None, "5", &lower, false);
    // ... also when seen again too soon ...
    check(Some(("5", &lower, 0)), "5", &lower, false);
    // ... and is written when the same recount was seen on the same revision long enough ago.
    check(Some(("5", &lower, 1)), "5", &lower, true);
    // The quota changed meanwhile (a charge), or the recount differs: wait again.
    check(Some(("5", &lower, 5)), "6", &lower, false);
    check(
        Some(("5", &json!({"used": {"pods": "0"}}), 5)),
        "5",
        &lower,
        false,
    );
}
