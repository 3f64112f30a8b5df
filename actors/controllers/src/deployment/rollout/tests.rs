use super::*;

fn int(n: i32) -> IntOrString {
    IntOrString::Int(n)
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.to_string())
}

fn rs(name: &str, created: &str, spec: i32, available: i32) -> RsState {
    RsState {
        name: name.into(),
        created: created.into(),
        spec_replicas: spec,
        replicas: spec,
        ready: available,
        available,
        max_replicas: None,
    }
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    fn check(surge: IntOrString, unavailable: IntOrString, desired: i32, expected: (i32, i32)) {
        let f = resolve_fenceposts(&surge, &unavailable, desired).unwrap();
        assert_eq!(
            (f.max_surge, f.max_unavailable),
            expected,
            "surge {surge:?} unavailable {unavailable:?} of {desired}"
        );
    }
    check(pct("25%"), pct("25%"), 10, (3, 2));
    check(pct("25%"), pct("25%"), 4, (1, 1));
    check(pct("25%"), pct("25%"), 1, (1, 0));
    check(pct("10%"), pct("10%"), 5, (1, 0));
    // Both zero after rounding: one may be unavailable, or nothing could move.
    check(pct("0%"), pct("10%"), 5, (0, 1));
    check(int(0), int(0), 3, (0, 1));
    check(int(2), int(0), 3, (2, 0));
    check(pct("100%"), pct("100%"), 3, (3, 3));
    check(pct("50%"), int(1), 0, (0, 1));
}

#[test]
fn a_string_that_is_not_a_percentage_is_an_error() {
    assert_eq!(
        resolve_fenceposts(&pct("three"), &int(1), 3),
        Err(RolloutError::NotAPercentage("three".into()))
    );
}

#[test]
fn max_unavailable_never_exceeds_replicas_and_is_zero_for_recreate() {
    let rolling = Strategy::RollingUpdate(Fenceposts {
        max_surge: 1,
        max_unavailable: 5,
    });
    assert_eq!(rolling.max_unavailable(3), 3);
    assert_eq!(rolling.max_unavailable(0), 0);
    assert_eq!(Strategy::Recreate.max_unavailable(3), 0);
    assert_eq!(Strategy::Recreate.max_surge(), 0);
}

#[test]
fn new_replica_set_grows_within_the_surge() {
    fn check(surge: i32, replicas: i32, all_total: i32, new_spec: i32, expected: i32) {
        let s = Strategy::RollingUpdate(Fenceposts {
            max_surge: surge,
            max_unavailable: 1,
        });
        assert_eq!(
            new_rs_replicas(s, replicas, all_total, new_spec),
            expected,
            "surge {surge} replicas {replicas} total {all_total} new {new_spec}"
        );
    }
    check(1, 3, 3, 0, 1); // first step: one above desired
    check(1, 3, 4, 1, 1); // at the ceiling: wait for old pods to go
    check(1, 3, 3, 1, 2);
    check(3, 3, 3, 0, 3); // surge as large as the deployment: all at once
    check(1, 3, 1, 0, 3); // room for 3 more, but never more than desired
    check(2, 3, 4, 2, 3); // never above desired
}

#[test]
fn pods_not_yet_deleted_count_against_the_surge() {
    let old = RsState {
        replicas: 3,
        ..rs("old", "1", 2, 2)
    };
    let new = rs("new", "2", 1, 1);
    assert_eq!(pods_total(&[&old, &new]), 4);
    let s = Strategy::RollingUpdate(Fenceposts {
        max_surge: 1,
        max_unavailable: 1,
    });
    assert_eq!(
        new_rs_replicas(s, 3, pods_total(&[&old, &new]), 1),
        1,
        "at the ceiling until the old pod goes"
    );
}

#[test]
fn recreate_gives_the_new_replica_set_everything() {
    assert_eq!(new_rs_replicas(Strategy::Recreate, 4, 0, 0), 4);
}

#[test]
fn old_replica_sets_shrink_within_max_unavailable() {
    struct Case {
        replicas: i32,
        max_unavailable: i32,
        new: Option<RsState>,
        olds: Vec<RsState>,
        expected: Vec<i32>,
    }
    fn check(c: Case) {
        let olds: Vec<&RsState> = c.olds.iter().collect();
        let got = old_rs_replicas(c.replicas, c.max_unavailable, c.new.as_ref(), &olds);
        assert_eq!(
            got, c.expected,
            "replicas {} maxUnavailable {}",
            c.replicas, c.max_unavailable
        );
    }
    // New RS just created, nothing available yet: with maxUnavailable 1, one old goes.
    check(Case {
        replicas: 3,
        max_unavailable: 1,
        new: Some(rs("new", "2", 1, 0)),
        olds: vec![rs("old", "1", 3, 3)],
        expected: vec![2],
    });
    check(Case {
        replicas: 3,
        max_unavailable: 1,
        new: Some(rs("new", "2", 0, 0)),
        olds: vec![rs("old", "1", 3, 3)],
        expected: vec![2],
    });
    // New pod available: old may drop to keep 2 available.
    check(Case {
        replicas: 3,
        max_unavailable: 1,
        new: Some(rs("new", "2", 1, 1)),
        olds: vec![rs("old", "1", 3, 3)],
        expected: vec![1],
    });
    // Unhealthy old pods go first and cost no availability.
    check(Case {
        replicas: 4,
        max_unavailable: 0,
        new: Some(rs("new", "3", 1, 1)),
        olds: vec![rs("older", "1", 2, 0), rs("old", "2", 2, 2)],
        expected: vec![1, 2],
    });
    // maxUnavailable 0 and nothing new available: nothing may go.
    check(Case {
        replicas: 3,
        max_unavailable: 0,
        new: Some(rs("new", "2", 1, 0)),
        olds: vec![rs("old", "1", 3, 3)],
        expected: vec![3],
    });
    // Oldest first.
    check(Case {
        replicas: 4,
        max_unavailable: 2,
        new: Some(rs("new", "3", 0, 0)),
        olds: vec![rs("a", "1", 1, 1), rs("b", "2", 3, 3)],
        expected: vec![0, 2],
    });
    // A status that has not caught up with the last scale-down (3 available, 2 asked
    // for) counts as 2 available: one more may go, not two.
    check(Case {
        replicas: 3,
        max_unavailable: 1,
        new: Some(rs("new", "2", 1, 1)),
        olds: vec![RsState {
            replicas: 3,
            ..rs("old", "1", 2, 3)
        }],
        expected: vec![1],
    });
    check(Case {
        replicas: 2,
        max_unavailable: 1,
        new: None,
        olds: vec![rs("a", "1", 0, 0)],
        expected: vec![0],
    });
}

#[test]
fn active_or_latest_finds_the_only_replica_set_with_pods() {
    let (a, b) = (rs("a", "1", 0, 0), rs("b", "2", 0, 0));
    let (a3, n2) = (rs("a", "1", 3, 3), rs("n", "3", 2, 2));
    let n0 = rs("n", "3", 0, 0);
    let name = |r: Option<&RsState>| r.map(|r| r.name.clone());
    assert_eq!(
        name(active_or_latest(Some(&n0), &[&a, &b])),
        Some("n".into())
    );
    assert_eq!(name(active_or_latest(None, &[&a, &b])), Some("b".into()));
    assert_eq!(name(active_or_latest(Some(&n0), &[&a3])), Some("a".into()));
    assert_eq!(name(active_or_latest(Some(&n2), &[&a3])), None);
    assert_eq!(name(active_or_latest(None, &[])), None);
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    fn check(
        replicas: i32,
        surge: i32,
        status_replicas: i32,
        rss: Vec<RsState>,
        expected: &[(&str, i32)],
    ) {
        let refs: Vec<&RsState> = rss.iter().collect();
        let mut got = proportional_sizes(replicas, surge, status_replicas, &refs);
        got.sort();
        let mut want: Vec<(String, i32)> =
            expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        want.sort();
        assert_eq!(got, want, "to {replicas} (+{surge})");
    }
    let with_max = |name: &str, created: &str, spec: i32, max: i32| RsState {
        max_replicas: Some(max),
        ..rs(name, created, spec, spec)
    };
    // Kubernetes' documented example: 10 -> 15 (surge 3) with 8 old + 5 new pods: 18 - 13
    // = 5 to add, 3 to the old (8 * 18 / 13 = 11.1) and 2 to the new (5 * 18 / 13 = 6.9).
    check(
        15,
        3,
        13,
        vec![with_max("old", "1", 8, 13), with_max("new", "2", 5, 13)],
        &[("old", 11), ("new", 7)],
    );
    // Scaling down by half.
    check(
        5,
        1,
        12,
        vec![with_max("old", "1", 6, 12), with_max("new", "2", 6, 12)],
        &[("old", 3), ("new", 3)],
    );
    // To zero: everything goes.
    check(
        0,
        1,
        4,
        vec![rs("old", "1", 2, 2), rs("new", "2", 2, 2)],
        &[("old", 0), ("new", 0)],
    );
    // Rounding leftovers go to the largest.
    check(
        4,
        0,
        3,
        vec![with_max("a", "1", 1, 3), with_max("b", "2", 2, 3)],
        &[("a", 1), ("b", 3)],
    );
}

#[test]
fn counts_and_completion() {
    let new = rs("new", "2", 3, 2);
    let old = rs("old", "1", 1, 1);
    let c = counts(Some(&new), &[&new, &old]);
    assert_eq!(
        c,
        Counts {
            replicas: 4,
            updated: 3,
            ready: 3,
            available: 3,
            unavailable: 1
        }
    );
    assert!(!complete(3, &c, true));
    let done = rs("new", "2", 3, 3);
    let c = counts(Some(&done), &[&done]);
    assert!(complete(3, &c, true));
    assert!(
        !complete(3, &c, false),
        "an unobserved generation is not complete"
    );
}

#[test]
fn progress_is_more_updated_ready_available_or_fewer_old() {
    fn check(old: (i32, i32, i32, i32), new: (i32, i32, i32, i32), expected: bool) {
        let c = |(replicas, updated, ready, available)| Counts {
            replicas,
            updated,
            ready,
            available,
            unavailable: 0,
        };
        assert_eq!(
            progressing(&c(old), &c(new)),
            expected,
            "{old:?} -> {new:?}"
        );
    }
    check((3, 0, 3, 3), (4, 1, 3, 3), true); // one more updated
    check((4, 1, 3, 3), (3, 1, 3, 3), true); // one old fewer
    check((4, 1, 3, 3), (4, 1, 4, 3), true); // one more ready
    check((4, 1, 4, 3), (4, 1, 4, 4), true); // one more available
    check((4, 1, 4, 4), (4, 1, 4, 4), false);
    check((4, 1, 4, 4), (4, 1, 3, 3), false);
}

#[test]
fn the_template_hash_is_stable_and_changes_with_template_and_collisions() {
    let t = serde_json::json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
    let t2 = serde_json::json!({"spec": {"containers": [{"image": "x:1", "name": "c"}]}, "metadata": {"labels": {"app": "web"}}});
    let h = template_hash(&t, None);
    assert_eq!(h, template_hash(&t2, None), "key order does not matter");
    assert_ne!(h, template_hash(&t, Some(1)));
    let mut changed = t.clone();
    changed["spec"]["containers"][0]["image"] = "x:2".into();
    assert_ne!(h, template_hash(&changed, None));
    assert!(
        h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
            && !h.is_empty()
            && h.len() <= 10,
        "{h}"
    );
}

#[test]
fn semantic_equality_ignores_nulls_and_empties() {
    fn check(a: Value, b: Value, equal: bool) {
        assert_eq!(semantic(&a) == semantic(&b), equal, "{a} vs {b}");
    }
    use serde_json::json;
    check(
        json!({"metadata": {"creationTimestamp": null, "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "resources": {}}]}}),
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}),
        true,
    );
    check(json!({"spec": {"volumes": []}}), json!({}), true);
    // Go's zero values are the same as absent fields.
    check(
        json!({"metadata": {"generation": 0}, "spec": {"hostIPC": false, "containers": [{"name": "c", "stdin": false, "workingDir": ""}]}}),
        json!({"spec": {"containers": [{"name": "c"}]}}),
        true,
    );
    check(json!({"a": 1}), json!({}), false);
    check(json!({"a": [1, 2]}), json!({"a": [2, 1]}), false);
}
