use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::*;

fn ts(s: &str) -> Timestamp {
    format!("2026-01-01T{s}Z").parse().unwrap()
}

/// A child Job: `state` is `running`, `ok`, `failed`; started at `start` (HH:MM:SS).
fn job(name: &str, state: &str, start: &str) -> ChildJob {
    ChildJob {
        name: name.into(),
        uid: format!("uid-{name}"),
        succeeded: match state {
            "running" => None,
            "ok" => Some(true),
            "failed" => Some(false),
            other => panic!("state {other}"),
        },
        start: Some(ts(start)),
        completion: (state == "ok").then(|| ts(start)),
        terminating: false,
    }
}

#[derive(Debug, PartialEq)]
struct Expect {
    create: Option<&'static str>,
    delete: Vec<&'static str>,
    active: Vec<&'static str>,
    events: Vec<&'static str>,
    requeue_at: Option<&'static str>,
}

fn base(jobs: &[ChildJob]) -> Input<'_> {
    static EVERY_MINUTE: std::sync::OnceLock<Schedule> = std::sync::OnceLock::new();
    Input {
        schedule: EVERY_MINUTE.get_or_init(|| Schedule::parse("* * * * *", TimeZone::UTC).unwrap()),
        created: ts("10:00:00"),
        last_schedule: None,
        last_successful: None,
        listed_active: Vec::new(),
        starting_deadline: None,
        suspend: false,
        concurrency: Concurrency::Allow,
        successful_limit: 3,
        failed_limit: 1,
        jobs,
        now: ts("10:00:30"),
    }
}

fn check(name: &str, input: Input<'_>, expected: Expect) {
    let plan = plan("cj", &input);
    let leak = |s: String| -> &'static str { s.leak() };
    let got = Expect {
        create: plan.create.map(|t| leak(t.to_string())),
        delete: plan.delete.iter().map(|(n, _)| leak(n.clone())).collect(),
        active: plan.active.iter().map(|n| leak(n.clone())).collect(),
        events: plan.events.iter().map(|e| e.reason).collect(),
        requeue_at: plan.requeue_at.map(|t| leak(t.to_string())),
    };
    assert_eq!(got, expected, "case {name}");
}

// 10:01 is minute 29_451_901 since the epoch.
const JOB_1001: &str = "cj-29454361";

#[test]
fn scheduling() {
    check(
        "nothing due yet",
        base(&[]),
        Expect {
            create: None,
            delete: vec![],
            active: vec![],
            events: vec![],
            requeue_at: Some("2026-01-01T10:01:00Z"),
        },
    );
    check(
        "due: create",
        Input {
            now: ts("10:01:05"),
            ..base(&[])
        },
        Expect {
            create: Some("2026-01-01T10:01:00Z"),
            delete: vec![],
            active: vec![JOB_1001],
            events: vec![],
            requeue_at: Some("2026-01-01T10:02:00Z"),
        },
    );
    check(
        "already scheduled",
        Input {
            now: ts("10:01:05"),
            last_schedule: Some(ts("10:01:00")),
            ..base(&[])
        },
        Expect {
            create: None,
            delete: vec![],
            active: vec![],
            events: vec![],
            requeue_at: Some("2026-01-01T10:02:00Z"),
        },
    );
    check(
        "its job exists (status write was lost)",
        Input {
            now: ts("10:01:05"),
            ..base(&[job(JOB_1001, "running", "10:01:00")])
        },
        Expect {
            create: None,
            delete: vec![],
            active: vec![JOB_1001],
            events: vec![],
            requeue_at: Some("2026-01-01T10:02:00Z"),
        },
    );
    check(
        "suspended",
        Input {
            now: ts("10:01:05"),
            suspend: true,
            ..base(&[])
        },
        Expect {
            create: None,
            delete: vec![],
            active: vec![],
            events: vec![],
            requeue_at: None,
        },
    );
    check(
        "three missed: only the most recent runs",
        Input {
            now: ts("10:03:05"),
            ..base(&[])
        },
        Expect {
            create: Some("2026-01-01T10:03:00Z"),
            delete: vec![],
            active: vec!["cj-29454363"],
            events: vec![],
            requeue_at: Some("2026-01-01T10:04:00Z"),
        },
    );
    check(
        "too many missed",
        Input {
            now: ts("13:00:05"),
            ..base(&[])
        },
        Expect {
            create: Some("2026-01-01T13:00:00Z"),
            delete: vec![],
            active: vec!["cj-29454540"],
            events: vec!["TooManyMissedTimes"],
            requeue_at: Some("2026-01-01T13:01:00Z"),
        },
    );
    check(
        "startingDeadlineSeconds bounds the look-back: no warning",
        Input {
            now: ts("13:00:05"),
            starting_deadline: Some(200),
            ..base(&[])
        },
        Expect {
            create: Some("2026-01-01T13:00:00Z"),
            delete: vec![],
            active: vec!["cj-29454540"],
            events: vec![],
            requeue_at: Some("2026-01-01T13:01:00Z"),
        },
    );
    check(
        "past the starting deadline the missed run is skipped",
        Input {
            now: ts("10:01:50"),
            starting_deadline: Some(30),
            created: ts("09:00:00"),
            last_schedule: Some(ts("10:00:00")),
            ..base(&[])
        },
        Expect {
            create: None,
            delete: vec![],
            active: vec![],
            events: vec![],
            requeue_at: Some("2026-01-01T10:02:00Z"),
        },
    );
}

#[test]
fn concurrency_policies() {
    let running = [job("cj-29454360", "running", "10:00:00")];
    let due = |policy| Input {
        now: ts("10:01:05"),
        last_schedule: Some(ts("10:00:00")),
        concurrency: policy,
        ..base(&running)
    };
    check(
        "Allow",
        due(Concurrency::Allow),
        Expect {
            create: Some("2026-01-01T10:01:00Z"),
            delete: vec![],
            active: vec!["cj-29454360", JOB_1001],
            events: vec![],
            requeue_at: Some("2026-01-01T10:02:00Z"),
        },
    );
    check(
        "Forbid",
        due(Concurrency::Forbid),
        Expect {
            create: None,
            delete: vec![],
            active: vec!["cj-29454360"],
            events: vec!["JobAlreadyActive"],
            requeue_at: Some("2026-01-01T10:02:00Z"),
        },
    );
    check(
        "Replace",
        due(Concurrency::Replace),
        Expect {
            create: Some("2026-01-01T10:01:00Z"),
            delete: vec!["cj-29454360"],
            active: vec![JOB_1001],
            events: vec![],
            requeue_at: Some("2026-01-01T10:02:00Z"),
        },
    );
}

#[test]
fn history_limits_delete_the_oldest_finished_jobs() {
    let jobs = [
        job("s1", "ok", "09:01:00"),
        job("s4", "ok", "09:04:00"),
        job("s2", "ok", "09:02:00"),
        job("s3", "ok", "09:03:00"),
        job("f1", "failed", "09:01:30"),
        job("f2", "failed", "09:02:30"),
        job("r", "running", "09:05:00"),
    ];
    let input = Input {
        listed_active: vec!["r".into(), "s4".into()],
        last_schedule: Some(ts("10:00:00")),
        ..base(&jobs)
    };
    check(
        "3 successful and 1 failed kept",
        input.clone(),
        Expect {
            create: None,
            delete: vec!["s1", "f1"],
            active: vec!["r"],
            events: vec!["SawCompletedJob"],
            requeue_at: Some("2026-01-01T10:01:00Z"),
        },
    );
    let p = plan("cj", &input);
    assert_eq!(p.last_successful, Some(ts("09:04:00")));
    check(
        "limits of 0 delete every finished job",
        Input {
            successful_limit: 0,
            failed_limit: 0,
            ..input
        },
        Expect {
            create: None,
            delete: vec!["s1", "s2", "s3", "s4", "f1", "f2"],
            active: vec!["r"],
            events: vec!["SawCompletedJob"],
            requeue_at: Some("2026-01-01T10:01:00Z"),
        },
    );
}

#[test]
fn job_names_are_minutes_since_the_epoch() {
    assert_eq!(job_name("cj", ts("10:01:00")), JOB_1001);
}
