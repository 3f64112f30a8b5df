use std::time::Duration;

use super::FenceState::{Fenced, Open};
use super::{FenceState, next_state};

const T: Duration = Duration::from_secs(5);

#[allow(clippy::too_many_arguments)]
fn check(
    current: FenceState,
    timeout: Duration,
    since_ms: u64,
    bus_ok: bool,
    taint: Option<bool>,
    want: FenceState,
) {
    assert_eq!(
        next_state(
            current,
            timeout,
            Duration::from_millis(since_ms),
            bus_ok,
            taint
        ),
        want,
        "{current:?} timeout={timeout:?} since={since_ms}ms bus_ok={bus_ok} taint={taint:?}"
    );
}

#[test]
fn the_fence_closes_after_the_timeout_without_a_heartbeat() {
    check(Open, T, 0, true, None, Open);
    check(Open, T, 4_999, false, None, Open);
    check(Open, T, 5_000, false, None, Fenced);
    // A node waking from a pause longer than the timeout fences even though the heartbeat
    // it sends on waking gets through: the control plane may already have acted.
    check(Open, T, 9_000, true, Some(false), Fenced);
}

#[test]
fn the_fence_opens_only_with_the_bus_back_and_no_unreachable_taint() {
    check(Fenced, T, 100, false, None, Fenced);
    check(Fenced, T, 100, true, None, Fenced);
    check(Fenced, T, 100, true, Some(true), Fenced);
    check(Fenced, T, 100, false, Some(false), Fenced);
    check(Fenced, T, 100, true, Some(false), Open);
}

#[test]
fn a_zero_timeout_never_fences() {
    check(Open, Duration::ZERO, 60_000, false, None, Open);
    check(Fenced, Duration::ZERO, 60_000, false, None, Open);
}

#[test]
fn statefulset_pods_are_recognised_by_their_controller_reference() {
    let pod = |kind: &str, controller: Option<bool>| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": kind, "name": "o", "uid": "u",
                "controller": controller}]}
        }))
        .unwrap()
    };
    assert!(super::is_statefulset_pod(&pod("StatefulSet", Some(true))));
    assert!(!super::is_statefulset_pod(&pod("StatefulSet", None)));
    assert!(!super::is_statefulset_pod(&pod("ReplicaSet", Some(true))));
    let bare: k8s_openapi::api::core::v1::Pod = Default::default();
    assert!(!super::is_statefulset_pod(&bare));
}
