use super::*;

/// `pods` as "<ordinal><state><rev>": state R = running+ready, P = pending, T = terminating,
/// F = failed; rev a = current "a", b = update "b". E.g. "0Ra", "2Pb".
fn pods(spec: &str) -> Vec<PodState> {
    spec.split_whitespace()
        .map(|p| {
            let (o, rest) = p.split_at(p.len() - 2);
            let mut c = rest.chars();
            let state = c.next().unwrap();
            let rev = c.next().unwrap().to_string();
            PodState {
                ordinal: o.parse().unwrap(),
                revision: rev,
                terminating: state == 'T',
                running_ready: state == 'R',
                available: state == 'R',
                failed: state == 'F',
            }
        })
        .collect()
}

fn set(replicas: i64, parallel: bool, strategy: Strategy) -> SetSpec {
    SetSpec {
        replicas,
        start: 0,
        parallel,
        strategy,
        current: "a".into(),
        update: "b".into(),
    }
}

const RU0: Strategy = Strategy::RollingUpdate { partition: 0 };

fn check(spec: SetSpec, have: &str, steps: &[Step], waiting: Waiting) {
    let got = plan(&spec, &pods(have));
    assert_eq!(got.steps, steps, "steps for {have:?} under {spec:?}");
    assert_eq!(got.waiting, waiting, "waiting for {have:?} under {spec:?}");
}

#[test]
fn ordered_ready_creates_one_at_a_time() {
    use Step::*;
    let s = || SetSpec {
        current: "b".into(),
        ..set(3, false, RU0)
    };
    check(s(), "", &[Create(0, Rev::Update)], Waiting::ForReady(0));
    check(s(), "0Pb", &[], Waiting::ForReady(0));
    check(s(), "0Rb", &[Create(1, Rev::Update)], Waiting::ForReady(1));
    check(
        s(),
        "0Rb 1Rb",
        &[Create(2, Rev::Update)],
        Waiting::ForReady(2),
    );
    check(s(), "0Rb 1Rb 2Rb", &[], Waiting::No);
    // A failed pod is deleted first (it comes back at the next reconcile).
    check(s(), "0Rb 1Fb 2Rb", &[Delete(1)], Waiting::ForTermination(1));
    // A deleted ordinal in the middle is recreated before anything else.
    check(
        s(),
        "0Rb 2Rb",
        &[Create(1, Rev::Update)],
        Waiting::ForReady(1),
    );
}

#[test]
fn parallel_does_everything_at_once() {
    use Step::*;
    let s = |n| SetSpec {
        current: "b".into(),
        ..set(n, true, RU0)
    };
    check(
        s(3),
        "",
        &[
            Create(0, Rev::Update),
            Create(1, Rev::Update),
            Create(2, Rev::Update),
        ],
        Waiting::No,
    );
    check(
        s(3),
        "0Pb",
        &[Create(1, Rev::Update), Create(2, Rev::Update)],
        Waiting::No,
    );
    check(s(1), "0Rb 1Rb 2Pb", &[Delete(2), Delete(1)], Waiting::No);
}

#[test]
fn scale_down_goes_in_reverse_and_waits() {
    use Step::*;
    let s = |n| SetSpec {
        current: "b".into(),
        ..set(n, false, RU0)
    };
    check(
        s(1),
        "0Rb 1Rb 2Rb",
        &[Delete(2)],
        Waiting::ForTermination(2),
    );
    check(s(1), "0Rb 1Rb 2Tb", &[], Waiting::ForTermination(2));
    check(s(1), "0Rb 1Rb", &[Delete(1)], Waiting::ForTermination(1));
    // An unhealthy wanted pod blocks the scale down.
    check(s(1), "0Pb 1Rb", &[], Waiting::ForReady(0));
    check(s(0), "0Rb", &[Delete(0)], Waiting::ForTermination(0));
}

#[test]
fn rolling_update_from_the_top_down_to_the_partition() {
    use Step::*;
    check(
        set(3, false, RU0),
        "0Ra 1Ra 2Ra",
        &[Delete(2)],
        Waiting::ForTermination(2),
    );
    check(
        set(3, false, RU0),
        "0Ra 1Ra 2Ta",
        &[],
        Waiting::ForTermination(2),
    );
    check(
        set(3, false, RU0),
        "0Ra 1Ra",
        &[Create(2, Rev::Update)],
        Waiting::ForReady(2),
    );
    check(set(3, false, RU0), "0Ra 1Ra 2Pb", &[], Waiting::ForReady(2));
    check(
        set(3, false, RU0),
        "0Ra 1Ra 2Rb",
        &[Delete(1)],
        Waiting::ForTermination(1),
    );
    check(set(3, false, RU0), "0Rb 1Rb 2Rb", &[], Waiting::No);
    // Parallel pods still update one at a time.
    check(
        set(3, true, RU0),
        "0Ra 1Ra 2Rb",
        &[Delete(1)],
        Waiting::ForTermination(1),
    );
    let part = |p| set(3, false, Strategy::RollingUpdate { partition: p });
    check(
        part(2),
        "0Ra 1Ra 2Ra",
        &[Delete(2)],
        Waiting::ForTermination(2),
    );
    check(part(2), "0Ra 1Ra 2Rb", &[], Waiting::No);
    // Below the partition a recreated pod keeps the current revision.
    check(
        part(2),
        "0Ra 2Rb",
        &[Create(1, Rev::Current)],
        Waiting::ForReady(1),
    );
    check(part(3), "0Ra 1Ra 2Ra", &[], Waiting::No);
}

#[test]
fn on_delete_only_recreates() {
    use Step::*;
    check(
        set(3, false, Strategy::OnDelete),
        "0Ra 1Ra 2Ra",
        &[],
        Waiting::No,
    );
    check(
        set(3, false, Strategy::OnDelete),
        "0Ra 2Ra",
        &[Create(1, Rev::Update)],
        Waiting::ForReady(1),
    );
}

#[test]
fn counts_and_completion() {
    let c = counts(&set(3, false, RU0), &pods("0Ra 1Pa 2Rb"));
    assert_eq!((c.replicas, c.ready, c.current, c.updated), (3, 2, 2, 1));
    assert_eq!(
        (c.current_revision.as_str(), c.update_revision.as_str()),
        ("a", "b")
    );
    let c = counts(&set(3, false, RU0), &pods("0Rb 1Rb 2Rb"));
    assert_eq!((c.current, c.current_revision.as_str()), (3, "b"));
    // A partitioned rollout never completes; a terminating pod counts for neither.
    let c = counts(
        &set(2, false, Strategy::RollingUpdate { partition: 1 }),
        &pods("0Ra 1Tb"),
    );
    assert_eq!(
        (
            c.replicas,
            c.current,
            c.updated,
            c.current_revision.as_str()
        ),
        (2, 1, 0, "a")
    );
}

#[test]
fn ordinals_from_names() {
    assert_eq!(parse_ordinal("web-0"), Some(("web", 0)));
    assert_eq!(parse_ordinal("my-db-12"), Some(("my-db", 12)));
    assert_eq!(parse_ordinal("web-"), None);
    assert_eq!(parse_ordinal("web-x1"), None);
    assert_eq!(parse_ordinal("web"), None);
}
