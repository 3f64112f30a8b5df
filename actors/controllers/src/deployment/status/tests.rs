use super::*;

fn at(s: u64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s as i64).unwrap()
}

fn counts(replicas: i32, updated: i32, ready: i32, available: i32) -> Counts {
    Counts {
        replicas,
        updated,
        ready,
        available,
        unavailable: 0,
    }
}

fn with_counts(c: Counts, progressing: Option<(&str, &str, u64)>) -> DeploymentStatus {
    let mut s = DeploymentStatus {
        replicas: Some(c.replicas),
        updated_replicas: Some(c.updated),
        ready_replicas: Some(c.ready),
        available_replicas: Some(c.available),
        unavailable_replicas: Some(0),
        ..Default::default()
    };
    if let Some((status, r, t)) = progressing {
        s.conditions = Some(vec![condition(
            reason::PROGRESSING,
            status,
            r,
            String::new(),
            at(t),
        )]);
    }
    s
}

/// Runs one rollout-status step: old status -> (Progressing reason, requeue seconds).
fn check(old: DeploymentStatus, new: Counts, now: u64, expected: (Option<&str>, Option<u64>)) {
    let calculated = calculate(&old, Some(1), 3, 1, &new, at(now));
    let (status, requeue) = rollout_status(RolloutInput {
        old: &old,
        calculated,
        replicas: 3,
        generation_observed: true,
        deadline: Some(Duration::from_secs(600)),
        new_rs: Some("web-abc"),
        name: "web",
        rs_failure: None,
        now: at(now),
    });
    let got = get(&status, reason::PROGRESSING).and_then(|c| c.reason.clone());
    assert_eq!(
        (got.as_deref(), requeue.map(|d| d.as_secs())),
        expected,
        "{old:?} -> {new:?} at {now}"
    );
}

#[test]
fn progressing_condition_follows_the_rollout() {
    // Created, then pods move: ReplicaSetUpdated, deadline counted from now.
    check(
        with_counts(
            counts(3, 0, 3, 3),
            Some(("True", reason::NEW_RS_CREATED, 0)),
        ),
        counts(4, 1, 3, 3),
        10,
        (Some(reason::RS_UPDATED), Some(601)),
    );
    // No progress: the deadline keeps counting from the last update.
    check(
        with_counts(counts(4, 1, 3, 3), Some(("True", reason::RS_UPDATED, 10))),
        counts(4, 1, 3, 3),
        110,
        (Some(reason::RS_UPDATED), Some(501)),
    );
    // Past the deadline without progress.
    check(
        with_counts(counts(4, 1, 3, 3), Some(("True", reason::RS_UPDATED, 10))),
        counts(4, 1, 3, 3),
        700,
        (Some(reason::TIMED_OUT), None),
    );
    // Complete.
    check(
        with_counts(counts(4, 2, 3, 3), Some(("True", reason::RS_UPDATED, 10))),
        counts(3, 3, 3, 3),
        20,
        (Some(reason::NEW_RS_AVAILABLE), None),
    );
}

#[test]
fn available_condition_uses_max_unavailable() {
    let s = calculate(
        &DeploymentStatus::default(),
        Some(1),
        3,
        1,
        &counts(3, 3, 2, 2),
        at(0),
    );
    assert_eq!(
        get(&s, reason::AVAILABLE).unwrap().status.as_deref(),
        Some("True")
    );
    let s = calculate(
        &DeploymentStatus::default(),
        Some(1),
        3,
        1,
        &counts(3, 3, 1, 1),
        at(0),
    );
    assert_eq!(
        get(&s, reason::AVAILABLE).unwrap().status.as_deref(),
        Some("False")
    );
}

#[test]
fn pause_and_resume_conditions() {
    let mut s = with_counts(
        counts(3, 3, 3, 3),
        Some(("True", reason::NEW_RS_AVAILABLE, 0)),
    );
    assert!(paused_condition(&mut s, true, true, at(1)));
    assert_eq!(
        get(&s, reason::PROGRESSING).unwrap().reason.as_deref(),
        Some(reason::PAUSED)
    );
    assert!(
        !paused_condition(&mut s, true, true, at(2)),
        "already paused"
    );
    assert!(paused_condition(&mut s, false, true, at(3)));
    assert_eq!(
        get(&s, reason::PROGRESSING).unwrap().reason.as_deref(),
        Some(reason::RESUMED)
    );
    let mut timed_out = with_counts(counts(3, 3, 3, 3), Some(("False", reason::TIMED_OUT, 0)));
    assert!(
        !paused_condition(&mut timed_out, true, true, at(1)),
        "a timeout stays"
    );
}
