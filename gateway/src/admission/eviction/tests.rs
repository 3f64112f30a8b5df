use serde_json::json;

use super::*;

const NOW: &str = "2026-01-01T00:00:00Z";

fn pod(phase: &str, ready: bool) -> Value {
    json!({"metadata": {"name": "web-1", "labels": {"app": "web"}},
           "status": {"phase": phase, "conditions": [
               {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn pdb(allowed: i64, current: i64, desired: i64) -> Value {
    json!({"metadata": {"name": "web-pdb", "generation": 1},
           "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": desired},
           "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                      "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current}})
}

/// What a decision comes to: "delete", "charge <allowed after>", or "<code>: <message>".
fn summary(d: &Decision) -> String {
    match d {
        Decision::Delete => "delete".into(),
        Decision::Charge { pdb, status } => format!(
            "charge {pdb} {} {}",
            status["disruptionsAllowed"], status["disruptedPods"]["web-1"]
        ),
        Decision::Refuse(e) => format!("{}: {}", e.code, e.message),
    }
}

fn check(pod: Value, pdbs: &[Value], want: &str) {
    assert_eq!(summary(&decide(&pod, pdbs, NOW)), want, "{pod} {pdbs:?}");
}

#[test]
fn decisions() {
    let running = pod("Running", true);
    check(running.clone(), &[], "delete");
    check(
        running.clone(),
        &[pdb(2, 3, 1)],
        "charge web-pdb 1 \"2026-01-01T00:00:00Z\"",
    );
    check(
        running.clone(),
        &[pdb(0, 2, 2)],
        "429: Cannot evict pod as it would violate the pod's disruption budget.",
    );
    // A budget that selects other pods does not apply.
    let mut other = pdb(0, 2, 2);
    other["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
    check(running.clone(), &[other], "delete");
    // Pending, finished and terminating pods are evicted without a budget.
    check(pod("Pending", false), &[pdb(0, 2, 2)], "delete");
    check(pod("Succeeded", false), &[pdb(0, 2, 2)], "delete");
    let mut terminating = running.clone();
    terminating["metadata"]["deletionTimestamp"] = json!(NOW);
    check(terminating, &[pdb(0, 2, 2)], "delete");
    // An unready pod spends no budget while the healthy ones are enough ...
    check(pod("Running", false), &[pdb(0, 2, 2)], "delete");
    // ... and needs budget otherwise.
    check(
        pod("Running", false),
        &[pdb(0, 1, 2)],
        "429: Cannot evict pod as it would violate the pod's disruption budget.",
    );
    let mut always = pdb(0, 1, 2);
    always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
    check(pod("Running", false), &[always], "delete");
    // A budget whose status is behind its spec refuses until the controller catches up.
    let mut behind = pdb(5, 5, 1);
    behind["metadata"]["generation"] = json!(2);
    check(
        running.clone(),
        &[behind],
        "429: Cannot evict pod as it would violate the pod's disruption budget. The disruption budget web-pdb is still being processed by the server.",
    );
    check(
        running,
        &[pdb(1, 2, 1), pdb(1, 2, 1)],
        "500: This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
    );
}

#[test]
fn refusal_names_the_budget_in_its_cause() {
    let Decision::Refuse(e) = decide(&pod("Running", true), &[pdb(0, 2, 2)], NOW) else {
        panic!("expected a refusal");
    };
    assert_eq!(e.reason, "TooManyRequests");
    assert_eq!(
        e.details.unwrap()["causes"],
        json!([{"reason": "DisruptionBudget",
                "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}])
    );
}

#[test]
fn last_disruption_flips_the_condition() {
    let Decision::Charge { status, .. } = decide(&pod("Running", true), &[pdb(1, 3, 2)], NOW)
    else {
        panic!("expected a charge");
    };
    assert_eq!(status["disruptionsAllowed"], 0);
    assert_eq!(status["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
}

#[test]
fn selectors() {
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    let check = |selector: Value, want: bool| {
        let p = json!({"spec": {"selector": selector}});
        assert_eq!(selects(&p, &labels), want, "{p}");
    };
    check(json!({}), true);
    check(Value::Null, false);
    check(json!({"matchLabels": {"app": "web"}}), true);
    check(
        json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
        false,
    );
}
