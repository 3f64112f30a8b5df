use super::*;

fn args(current: i32, desired: i32) -> Args {
    Args {
        min_replicas: 1,
        max_replicas: 10,
        current_replicas: current,
        desired_replicas: desired,
        up: Rules::default_up(),
        down: Rules::default_down(300),
    }
}

/// Runs `steps` of `(at seconds, args)` in order on one history, applying each result as
/// the new size, and compares the sizes set with `expected`.
fn check(steps: Vec<(i64, Args)>, expected: &[i32]) {
    let mut history = History::default();
    let mut got = Vec::new();
    for (at, a) in steps {
        let now = at * 1000;
        let n = normalize(&mut history, &a, now);
        if n.replicas != a.current_replicas {
            history.record_scale(a.current_replicas, n.replicas, now, &a);
        }
        got.push(n.replicas);
    }
    assert_eq!(got, expected);
}

#[test]
fn scale_up_is_immediate_within_the_default_rate() {
    // 2 -> 10 asked; default allows max(2+4, 2*2) = 6 per 15 s.
    check(vec![(0, args(2, 10))], &[6]);
}

#[test]
fn scale_up_rate_counts_recent_events() {
    // 2 -> 6 at t=0; at t=5 the period started at 2, so still at most 6.
    // At t=20 the period starts at 6: up to 12, capped at max 10.
    check(
        vec![(0, args(2, 10)), (5, args(6, 10)), (20, args(6, 10))],
        &[6, 6, 10],
    );
}

#[test]
fn scale_down_waits_for_the_stabilization_window() {
    // A fresh history remembers the current size, so nothing goes down before 300 s.
    check(
        vec![(0, args(4, 1)), (100, args(4, 1)), (301, args(4, 1))],
        &[4, 4, 1],
    );
}

#[test]
fn a_short_window_lets_scale_down_through() {
    let short = |c, d| Args {
        down: Rules::default_down(5),
        ..args(c, d)
    };
    check(vec![(0, short(4, 1)), (6, short(4, 1))], &[4, 1]);
}

#[test]
fn the_highest_recent_recommendation_holds_a_scale_down() {
    let short = |c, d| Args {
        down: Rules::default_down(60),
        ..args(c, d)
    };
    // Recommendations 3 at t=0 (window seeded with 4): held at 4. At t=61 only 1 is in
    // the window -> 1. At t=62 the window holds 1 and 2 -> 2.
    check(
        vec![(0, short(4, 3)), (61, short(4, 1)), (62, short(4, 2))],
        &[4, 1, 2],
    );
}

#[test]
fn min_and_max_bound_the_result() {
    let bounded = |c, d| Args {
        min_replicas: 2,
        max_replicas: 3,
        down: Rules::default_down(0),
        ..args(c, d)
    };
    check(vec![(0, bounded(2, 8)), (100, bounded(3, 1))], &[3, 2]);
}

#[test]
fn disabled_policies_never_scale_that_way() {
    let no_down = |c, d| Args {
        down: Rules {
            stabilization_seconds: 0,
            select: Select::Disabled,
            policies: vec![],
        },
        ..args(c, d)
    };
    check(vec![(0, no_down(4, 1)), (10, no_down(4, 6))], &[4, 6]);
}

#[test]
fn pods_policy_with_min_select_limits_scale_down() {
    let slow = |c, d| Args {
        down: Rules {
            stabilization_seconds: 0,
            select: Select::Min,
            policies: vec![
                Policy {
                    pods: true,
                    value: 1,
                    period_seconds: 60,
                },
                Policy {
                    pods: false,
                    value: 50,
                    period_seconds: 60,
                },
            ],
        },
        ..args(c, d)
    };
    // Min change: one pod per minute.
    check(
        vec![(0, slow(8, 1)), (30, slow(7, 1)), (61, slow(7, 1))],
        &[7, 7, 6],
    );
}

#[test]
fn conditions_say_why() {
    let mut history = History::default();
    let n = normalize(&mut history, &args(2, 20), 0);
    assert_eq!(n.replicas, 6);
    assert!(n.scaling_limited.0);
    assert_eq!(n.scaling_limited.1, "ScaleUpLimit");
    assert_eq!(n.able_to_scale.1, "ReadyForNewScale");
    let n = normalize(&mut history, &args(6, 1), 1000);
    assert_eq!(n.replicas, 6);
    assert_eq!(n.able_to_scale.1, "ScaleDownStabilized");
}
