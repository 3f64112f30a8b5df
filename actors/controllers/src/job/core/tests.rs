use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{JobSpec, JobStatus};
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(NOW + secs).unwrap()
}

fn spec(extra: Value) -> JobSpec {
    let mut s = json!({
        "parallelism": 2, "completions": 3, "backoffLimit": 2, "completionMode": "NonIndexed",
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}
    });
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(s).unwrap()
}

fn status(v: Value) -> JobStatus {
    serde_json::from_value(v).unwrap()
}

/// A pod: `name` is also its uid; `state` is `pending`, `running`, `ready`, `ok`, `failed`,
/// `deleting`, with `-done` for one whose finalizer is gone.
fn pod(name: &str, state: &str) -> PodInfo {
    let (state, counted) = match state.strip_suffix("-done") {
        Some(s) => (s, true),
        None => (state, false),
    };
    PodInfo {
        name: name.into(),
        uid: name.into(),
        phase: match state {
            "pending" => "Pending",
            "running" | "ready" | "deleting" => "Running",
            "ok" => "Succeeded",
            "failed" => "Failed",
            other => panic!("state {other}"),
        }
        .into(),
        terminating: state == "deleting",
        ready: state == "ready",
        index: name.rsplit_once('-').and_then(|(_, i)| i.parse().ok()),
        has_finalizer: !counted,
        restarts: 0,
        created: Some(at(-100)),
        finished: (state == "failed").then(|| at(-1)),
    }
}

#[derive(Debug, Default, PartialEq)]
struct Expect {
    create: Vec<Option<i32>>,
    delete: Vec<&'static str>,
    unfinalize: Vec<&'static str>,
    /// (active, succeeded, failed, uncounted succeeded + failed)
    counts: (i32, i32, i32, usize),
    /// Condition types that are True.
    conditions: Vec<&'static str>,
    events: Vec<&'static str>,
    requeue: Option<Duration>,
    delete_job: bool,
    completed_indexes: Option<&'static str>,
}

fn check(name: &str, spec: JobSpec, st: JobStatus, pods: &[PodInfo], expected: Expect) {
    let config = JobConfig {
        backoff_base: Duration::from_secs(10),
    };
    let plan = plan(&spec, &st, pods, at(0), &config);
    let s = &plan.status;
    let uncounted = s
        .uncounted_terminated_pods
        .as_ref()
        .map(|u| u.succeeded.iter().flatten().count() + u.failed.iter().flatten().count())
        .unwrap_or(0);
    let got = Expect {
        create: plan.create.clone(),
        delete: plan
            .delete
            .iter()
            .map(|(n, _)| &*n.clone().leak())
            .collect(),
        unfinalize: plan
            .remove_finalizers
            .iter()
            .map(|n| &*n.clone().leak())
            .collect(),
        counts: (
            s.active.unwrap_or(0),
            s.succeeded.unwrap_or(0),
            s.failed.unwrap_or(0),
            uncounted,
        ),
        conditions: s
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.status == "True")
            .map(|c| &*c.type_.clone().leak())
            .collect(),
        events: plan.events.iter().map(|e| e.reason).collect(),
        requeue: plan.requeue_after,
        delete_job: plan.delete_job,
        completed_indexes: s.completed_indexes.as_ref().map(|c| &*c.clone().leak()),
    };
    assert_eq!(got, expected, "case {name}");
}

fn started() -> Value {
    json!({"startTime": "2023-11-14T22:13:00Z"})
}

#[test]
fn pods_are_created_up_to_parallelism_and_remaining_completions() {
    check(
        "fresh job",
        spec(json!({})),
        status(json!({})),
        &[],
        Expect {
            create: vec![None, None],
            counts: (0, 0, 0, 0),
            ..Default::default()
        },
    );
    check(
        "one running, one to add",
        spec(json!({})),
        status(started()),
        &[pod("a", "running")],
        Expect {
            create: vec![None],
            counts: (1, 0, 0, 0),
            ..Default::default()
        },
    );
    check(
        "two succeeded: only one more pod",
        spec(json!({})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "succeeded": 2, "uncountedTerminatedPods": {}}),
        ),
        &[],
        Expect {
            create: vec![None],
            counts: (0, 2, 0, 0),
            ..Default::default()
        },
    );
    check(
        "parallelism lowered: the pending pod goes first",
        spec(json!({"parallelism": 1})),
        status(started()),
        &[pod("a", "ready"), pod("b", "pending")],
        Expect {
            delete: vec!["b"],
            counts: (1, 0, 0, 0),
            ..Default::default()
        },
    );
    check(
        "work queue (no completions): after one success no new pods",
        spec(json!({"completions": null})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "succeeded": 1, "uncountedTerminatedPods": {}}),
        ),
        &[pod("a", "running")],
        Expect {
            counts: (1, 1, 0, 0),
            ..Default::default()
        },
    );
}

#[test]
fn finished_pods_are_counted_once_through_the_finalizer() {
    check(
        "a finished pod becomes uncounted and loses its finalizer",
        spec(json!({})),
        status(started()),
        &[pod("a", "ok"), pod("b", "running")],
        Expect {
            create: vec![None],
            unfinalize: vec!["a"],
            counts: (1, 0, 0, 1),
            ..Default::default()
        },
    );
    check(
        "once the finalizer is gone it is counted",
        spec(json!({})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "uncountedTerminatedPods": {"succeeded": ["a"]}}),
        ),
        &[
            pod("a", "ok-done"),
            pod("b", "running"),
            pod("c", "running"),
        ],
        Expect {
            counts: (2, 1, 0, 0),
            ..Default::default()
        },
    );
    check(
        "a pod deleted after it was recorded is counted, not lost",
        spec(json!({})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "uncountedTerminatedPods": {"failed": ["a"]}}),
        ),
        &[],
        // The failed pod is replaced only after the backoff (its finish time is unknown
        // here, so no delay).
        Expect {
            create: vec![None, None],
            counts: (0, 0, 1, 0),
            ..Default::default()
        },
    );
    check(
        "a counted pod without finalizer is not counted again",
        spec(json!({})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "succeeded": 1, "uncountedTerminatedPods": {}}),
        ),
        &[
            pod("a", "ok-done"),
            pod("b", "running"),
            pod("c", "running"),
        ],
        Expect {
            counts: (2, 1, 0, 0),
            ..Default::default()
        },
    );
    check(
        "a pod deleted while running counts as failed",
        spec(json!({})),
        status(started()),
        &[pod("a", "deleting"), pod("b", "running")],
        // Replacing it waits for nothing: its finish time is unknown.
        Expect {
            create: vec![None],
            unfinalize: vec!["a"],
            counts: (1, 0, 0, 1),
            ..Default::default()
        },
    );
}

#[test]
fn completion_needs_every_pod_gone_and_counted() {
    let done = json!({"startTime": "2023-11-14T22:13:00Z", "succeeded": 2, "uncountedTerminatedPods": {"succeeded": ["c"]}});
    check(
        "the last success is still uncounted: criteria met, not complete",
        spec(json!({})),
        status(done.clone()),
        &[pod("c", "ok")],
        Expect {
            unfinalize: vec!["c"],
            counts: (0, 2, 0, 1),
            conditions: vec!["SuccessCriteriaMet"],
            ..Default::default()
        },
    );
    check(
        "all counted: Complete with an event",
        spec(json!({})),
        status(done.clone()),
        &[pod("c", "ok-done")],
        Expect {
            counts: (0, 3, 0, 0),
            conditions: vec!["SuccessCriteriaMet", "Complete"],
            events: vec!["Completed"],
            ..Default::default()
        },
    );
    check(
        "ttl 0: the finished job is deleted",
        spec(json!({"ttlSecondsAfterFinished": 0})),
        status(done.clone()),
        &[pod("c", "ok-done")],
        Expect {
            counts: (0, 3, 0, 0),
            conditions: vec!["SuccessCriteriaMet", "Complete"],
            events: vec!["Completed"],
            delete_job: true,
            ..Default::default()
        },
    );
    check(
        "ttl 30 after a completion 10 s ago: look again in 20 s",
        spec(json!({"ttlSecondsAfterFinished": 30})),
        status(
            json!({"succeeded": 3, "completionTime": "2023-11-14T22:13:10Z",
            "conditions": [{"type": "Complete", "status": "True"}]}),
        ),
        &[],
        Expect {
            counts: (0, 3, 0, 0),
            conditions: vec!["Complete"],
            requeue: Some(Duration::from_secs(20)),
            ..Default::default()
        },
    );
}

#[test]
fn backoff_limit_and_deadline_fail_the_job() {
    check(
        "third failure with backoffLimit 2: FailureTarget, active pods deleted",
        spec(json!({})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "failed": 2, "uncountedTerminatedPods": {}}),
        ),
        &[pod("c", "failed"), pod("d", "running")],
        Expect {
            delete: vec!["d"],
            unfinalize: vec!["c"],
            counts: (0, 0, 2, 1),
            conditions: vec!["FailureTarget"],
            ..Default::default()
        },
    );
    check(
        "all gone and counted: Failed with BackoffLimitExceeded",
        spec(json!({})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "failed": 3, "uncountedTerminatedPods": {},
            "conditions": [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}]}),
        ),
        &[],
        Expect {
            counts: (0, 0, 3, 0),
            conditions: vec!["FailureTarget", "Failed"],
            events: vec!["BackoffLimitExceeded"],
            ..Default::default()
        },
    );
    check(
        "a failure within the limit is replaced after the backoff",
        spec(json!({})),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "failed": 0, "uncountedTerminatedPods": {}}),
        ),
        &[pod("a", "failed"), pod("b", "running")],
        Expect {
            unfinalize: vec!["a"],
            counts: (1, 0, 0, 1),
            requeue: Some(Duration::from_secs(9)),
            ..Default::default()
        },
    );
    check(
        "active deadline passed",
        spec(json!({"activeDeadlineSeconds": 10})),
        status(json!({"startTime": "2023-11-14T22:13:00Z"})),
        &[pod("a", "running")],
        Expect {
            delete: vec!["a"],
            counts: (0, 0, 0, 0),
            conditions: vec!["FailureTarget"],
            ..Default::default()
        },
    );
    check(
        "active deadline ahead: requeue for it",
        spec(json!({"activeDeadlineSeconds": 100})),
        status(json!({"startTime": "2023-11-14T22:13:00Z"})),
        &[pod("a", "running"), pod("b", "running")],
        Expect {
            counts: (2, 0, 0, 0),
            requeue: Some(Duration::from_secs(80)),
            ..Default::default()
        },
    );
    let mut restarted = pod("a", "running");
    restarted.restarts = 2;
    check(
        "OnFailure: restarts count against the limit",
        spec(
            json!({"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}),
        ),
        status(started()),
        &[restarted, pod("b", "running")],
        Expect {
            delete: vec!["a", "b"],
            counts: (0, 0, 0, 0),
            conditions: vec!["FailureTarget"],
            ..Default::default()
        },
    );
}

#[test]
fn indexed_jobs_run_every_index_once() {
    let indexed = || spec(json!({"completionMode": "Indexed", "completions": 4, "parallelism": 2}));
    check(
        "fresh indexed job",
        indexed(),
        status(json!({})),
        &[],
        Expect {
            create: vec![Some(0), Some(1)],
            completed_indexes: Some(""),
            ..Default::default()
        },
    );
    check(
        "index 0 done, 1 running: start 2",
        indexed(),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "succeeded": 1, "completedIndexes": "0", "uncountedTerminatedPods": {}}),
        ),
        &[pod("j-0", "ok-done"), pod("j-1", "running")],
        Expect {
            create: vec![Some(2)],
            counts: (1, 1, 0, 0),
            completed_indexes: Some("0"),
            ..Default::default()
        },
    );
    check(
        "a duplicate of an index is deleted",
        indexed(),
        status(started()),
        &[pod("x-1", "running"), pod("y-1", "running")],
        Expect {
            create: vec![Some(0)],
            delete: vec!["y-1"],
            counts: (1, 0, 0, 0),
            completed_indexes: Some(""),
            ..Default::default()
        },
    );
    check(
        "a success records its index at once",
        indexed(),
        status(
            json!({"startTime": "2023-11-14T22:13:00Z", "completedIndexes": "0-2", "succeeded": 3, "uncountedTerminatedPods": {}}),
        ),
        &[pod("j-3", "ok")],
        Expect {
            unfinalize: vec!["j-3"],
            counts: (0, 3, 0, 1),
            conditions: vec!["SuccessCriteriaMet"],
            completed_indexes: Some("0-3"),
            ..Default::default()
        },
    );
}

#[test]
fn suspend_deletes_active_pods_and_resume_restarts_the_clock() {
    check(
        "suspend",
        spec(json!({"suspend": true, "activeDeadlineSeconds": 5})),
        status(started()),
        &[pod("a", "running")],
        Expect {
            delete: vec!["a"],
            conditions: vec!["Suspended"],
            events: vec!["Suspended"],
            ..Default::default()
        },
    );
    check(
        "resume",
        spec(json!({"activeDeadlineSeconds": 5})),
        status(json!({"conditions": [{"type": "Suspended", "status": "True"}]})),
        &[],
        Expect {
            create: vec![None, None],
            events: vec!["Resumed"],
            requeue: Some(Duration::from_secs(5)),
            ..Default::default()
        },
    );
}

#[test]
fn completed_indexes_round_trip() {
    for (text, set) in [
        ("", vec![]),
        ("0", vec![0]),
        ("1,3-5,7", vec![1, 3, 4, 5, 7]),
        ("0-2", vec![0, 1, 2]),
    ] {
        let parsed = parse_indexes(text);
        assert_eq!(parsed.iter().copied().collect::<Vec<_>>(), set, "{text}");
        assert_eq!(format_indexes(&parsed), text);
    }
}
