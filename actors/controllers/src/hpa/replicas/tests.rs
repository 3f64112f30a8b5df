use super::*;

const NOW: i64 = 10_000_000;
/// Started long ago, Ready long ago: past every initialization period.
const OLD: i64 = 0;

/// A running, ready pod with a 100m request and, when `usage` is `Some`, a fresh sample.
struct P {
    name: &'static str,
    phase: Phase,
    ready: Option<(bool, i64)>,
    start: Option<i64>,
    request: Option<i64>,
    usage: Option<i64>,
}

fn pod(name: &'static str, usage: Option<i64>) -> P {
    P {
        name,
        phase: Phase::Running,
        ready: Some((true, OLD)),
        start: Some(OLD),
        request: Some(100),
        usage,
    }
}

fn check(
    current: i32,
    target: Target,
    resource: Resource,
    pods: Vec<P>,
    expected: Result<(i32, Option<i32>), &str>,
) {
    let views: Vec<PodView> = pods
        .iter()
        .map(|p| PodView {
            name: p.name.into(),
            phase: p.phase,
            deleting: false,
            ready: p.ready,
            start_time_ms: p.start,
            request: p.request.ok_or_else(|| "app".to_string()),
        })
        .collect();
    let samples: BTreeMap<String, Sample> = pods
        .iter()
        .filter_map(|p| {
            p.usage.map(|v| {
                (
                    p.name.to_string(),
                    Sample {
                        value: v,
                        timestamp_ms: NOW - 1000,
                        window_ms: 15_000,
                    },
                )
            })
        })
        .collect();
    let got = resource_replicas(
        &Tunables::default(),
        current,
        target,
        resource,
        &views,
        &samples,
        NOW,
    )
    .map(|r| (r.replicas, r.utilization));
    assert_eq!(got, expected.map_err(str::to_string));
}

use Resource::{Cpu, Memory};
use Target::{AverageValue, Utilization};

#[test]
fn scales_up_by_the_usage_ratio() {
    // 200 % of request against a 50 % target: 2 pods * 4 = 8.
    check(
        2,
        Utilization(50),
        Cpu,
        vec![pod("a", Some(200)), pod("b", Some(200))],
        Ok((8, Some(200))),
    );
}

#[test]
fn scales_down_by_the_usage_ratio() {
    check(
        4,
        Utilization(50),
        Cpu,
        vec![
            pod("a", Some(10)),
            pod("b", Some(10)),
            pod("c", Some(10)),
            pod("d", Some(10)),
        ],
        Ok((1, Some(10))),
    );
}

#[test]
fn within_tolerance_keeps_the_size() {
    // 54 % against 50 %: ratio 1.08, inside 0.1.
    check(
        3,
        Utilization(50),
        Cpu,
        vec![pod("a", Some(54)), pod("b", Some(54)), pod("c", Some(54))],
        Ok((3, Some(54))),
    );
}

#[test]
fn missing_pods_count_as_zero_on_scale_up() {
    // Two with samples at 200 %, one without: (200+200+0)/300 = 133 % vs 50 % -> 2.66 * 3 = 8.
    check(
        3,
        Utilization(50),
        Cpu,
        vec![pod("a", Some(200)), pod("b", Some(200)), pod("c", None)],
        Ok((8, Some(200))),
    );
}

#[test]
fn missing_pods_count_as_full_request_on_scale_down() {
    // 10 % on two, the third assumed 100 %: 40 % vs 50 % -> 0.8 * 3 = 2.4 -> 3 = current.
    check(
        3,
        Utilization(50),
        Cpu,
        vec![pod("a", Some(10)), pod("b", Some(10)), pod("c", None)],
        Ok((3, Some(10))),
    );
}

#[test]
fn unready_cpu_pods_count_as_zero_on_scale_up_only() {
    let mut starting = pod("c", Some(500));
    starting.ready = Some((false, NOW - 1000));
    starting.start = Some(NOW - 2000);
    // Ready pods at 200 %, the unready one at 0: 400/300 = 133 % vs 50 % -> 8.
    check(
        3,
        Utilization(50),
        Cpu,
        vec![pod("a", Some(200)), pod("b", Some(200)), starting],
        Ok((8, Some(200))),
    );
}

#[test]
fn pending_pods_do_not_block_a_scale_down() {
    let mut pending = pod("c", None);
    pending.phase = Phase::Pending;
    check(
        3,
        Utilization(50),
        Cpu,
        vec![pod("a", Some(10)), pod("b", Some(10)), pending],
        Ok((1, Some(10))),
    );
}

#[test]
fn memory_ignores_readiness() {
    let mut starting = pod("b", Some(100));
    starting.ready = Some((false, NOW - 1000));
    starting.start = Some(NOW - 2000);
    check(
        2,
        Utilization(50),
        Memory,
        vec![pod("a", Some(100)), starting],
        Ok((4, Some(100))),
    );
}

#[test]
fn average_value_targets_divide_by_the_value() {
    // Average 300m against 100m: 3 * 2 = 6.
    check(
        2,
        AverageValue(100),
        Cpu,
        vec![pod("a", Some(300)), pod("b", Some(300))],
        Ok((6, None)),
    );
}

#[test]
fn a_pod_without_a_request_is_an_error_for_utilization() {
    let mut no_request = pod("b", Some(10));
    no_request.request = None;
    check(
        2,
        Utilization(50),
        Cpu,
        vec![pod("a", Some(10)), no_request],
        Err("missing request for cpu in container app of Pod b"),
    );
}

#[test]
fn no_samples_at_all_is_an_error() {
    check(
        2,
        Utilization(50),
        Cpu,
        vec![pod("a", None), pod("b", None)],
        Err("did not receive metrics for targeted pods (pods might be unready)"),
    );
}

#[test]
fn no_pods_is_an_error() {
    check(
        2,
        Utilization(50),
        Cpu,
        vec![],
        Err("no pods returned by selector while calculating replica count"),
    );
}
