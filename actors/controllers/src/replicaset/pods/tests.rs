use serde_json::json;

use super::*;

/// A pod: name, node ("" unscheduled), phase, ready since (None: not ready), restarts,
/// creation time.
fn pod(
    name: &str,
    node: &str,
    phase: &str,
    ready: Option<&str>,
    restarts: i64,
    created: &str,
) -> Value {
    let mut conditions = vec![];
    if let Some(since) = ready {
        conditions.push(json!({"type": "Ready", "status": "True", "lastTransitionTime": since}));
    } else {
        conditions.push(json!({"type": "Ready", "status": "False"}));
    }
    json!({
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node},
        "status": {"phase": phase, "conditions": conditions,
                   "containerStatuses": [{"name": "c", "restartCount": restarts}]},
    })
}

const T1: &str = "2026-01-01T00:00:01Z";
const T2: &str = "2026-01-01T00:00:02Z";

#[test]
fn deletion_order_prefers_the_least_useful_pod() {
    fn check(pods: Vec<Value>, n: usize, expected: &[&str]) {
        let refs: Vec<&Value> = pods.iter().collect();
        let got: Vec<&str> = pods_to_delete(&refs, n)
            .into_iter()
            .map(|i| drover_store::object::name(&pods[i]))
            .collect();
        assert_eq!(got, expected);
    }
    // Unscheduled before scheduled.
    check(
        vec![
            pod("bound", "n1", "Pending", None, 0, T1),
            pod("free", "", "Pending", None, 0, T1),
        ],
        1,
        &["free"],
    );
    // Pending before Running.
    check(
        vec![
            pod("running", "n1", "Running", None, 0, T1),
            pod("pending", "n2", "Pending", None, 0, T1),
        ],
        1,
        &["pending"],
    );
    // Not ready before ready.
    check(
        vec![
            pod("ready", "n1", "Running", Some(T1), 0, T1),
            pod("unready", "n2", "Running", None, 0, T1),
        ],
        1,
        &["unready"],
    );
    // Doubled up on a node before alone.
    check(
        vec![
            pod("alone", "n1", "Running", Some(T1), 0, T1),
            pod("twin-a", "n2", "Running", Some(T1), 0, T1),
            pod("twin-b", "n2", "Running", Some(T1), 0, T1),
        ],
        2,
        &["twin-a", "twin-b"],
    );
    // Ready for less time before more.
    check(
        vec![
            pod("long", "n1", "Running", Some(T1), 0, T1),
            pod("short", "n2", "Running", Some(T2), 0, T1),
        ],
        1,
        &["short"],
    );
    // More restarts before fewer.
    check(
        vec![
            pod("calm", "n1", "Running", Some(T1), 0, T1),
            pod("crashy", "n2", "Running", Some(T1), 4, T1),
        ],
        1,
        &["crashy"],
    );
    // Newer before older.
    check(
        vec![
            pod("old", "n1", "Running", Some(T1), 0, T1),
            pod("new", "n2", "Running", Some(T1), 0, T2),
        ],
        1,
        &["new"],
    );
    check(vec![pod("only", "n1", "Running", Some(T1), 0, T1)], 0, &[]);
}

#[test]
fn terminating_and_finished_pods_do_not_count() {
    fn check(pod: Value, expected: bool) {
        assert_eq!(is_active(&pod), expected, "{pod}");
    }
    check(pod("p", "n", "Running", Some(T1), 0, T1), true);
    check(pod("p", "n", "Succeeded", None, 0, T1), false);
    check(pod("p", "n", "Failed", None, 0, T1), false);
    let mut terminating = pod("p", "n", "Running", Some(T1), 0, T1);
    terminating["metadata"]["deletionTimestamp"] = json!(T2);
    check(terminating, false);
}

#[test]
fn availability_waits_for_min_ready_seconds() {
    fn check(ready: Option<&str>, min_ready_s: u64, now: &str, expected: (bool, Option<u64>)) {
        let p = pod("p", "n", "Running", ready, 0, T1);
        let (available, wait) =
            availability(&p, Duration::from_secs(min_ready_s), now.parse().unwrap());
        assert_eq!(
            (available, wait.map(|d| d.as_secs())),
            expected,
            "{ready:?} {min_ready_s} {now}"
        );
    }
    check(None, 0, T2, (false, None));
    check(Some(T1), 0, T1, (true, None));
    check(Some(T1), 10, "2026-01-01T00:00:04Z", (false, Some(7)));
    check(Some(T1), 10, "2026-01-01T00:00:11Z", (true, None));
}

#[test]
fn slow_start_doubles_batches() {
    fn check(count: usize, expected: &[usize]) {
        assert_eq!(slow_start_batches(count), expected, "{count}");
    }
    check(0, &[]);
    check(1, &[1]);
    check(3, &[1, 2]);
    check(10, &[1, 2, 4, 3]);
    check(16, &[1, 2, 4, 8, 1]);
}
