use std::collections::{BTreeMap, BTreeSet};

use super::{Finding, Outcome, Problem, reconcile};
use crate::allocator::Range;

const NOW: u64 = 10_000;
const GRACE: u64 = 60;

fn ips() -> Range {
    Range::service_cidr("10.96.0.0/12").unwrap()
}

fn registry(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn holders(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    list.iter()
        .map(|(o, vs)| (o.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn problem(owner: &str, value: &str, finding: Finding) -> Problem {
    Problem {
        owner: owner.into(),
        value: value.into(),
        finding,
    }
}

struct Case<'a> {
    range: Range,
    registry: &'a [(&'a str, &'a str)],
    holders: &'a [(&'a str, &'a [&'a str])],
    flagged: &'a [&'a str],
}

/// Expected: the registry after, flagged, released, marked, problems.
#[track_caller]
fn check(
    case: Case,
    data: &[(&str, &str)],
    flagged: &[&str],
    released: &[&str],
    marked: &[&str],
    problems: Vec<Problem>,
) {
    let before = registry(case.registry);
    let got = reconcile(
        &case.range,
        &before,
        &holders(case.holders),
        &set(case.flagged),
        NOW,
        GRACE,
    );
    let data = registry(data);
    let want = Outcome {
        changed: data != before,
        data,
        flagged: set(flagged),
        released: released.iter().map(|s| s.to_string()).collect(),
        marked: marked.iter().map(|s| s.to_string()).collect(),
        problems,
    };
    assert_eq!(got, want);
}

#[test]
fn a_consistent_registry_is_left_alone() {
    check(
        Case {
            range: ips(),
            registry: &[
                ("10.96.0.10", "kube-system/dns@1"),
                ("10.96.0.20", "ns/web@9990"),
            ],
            holders: &[
                ("kube-system/dns", &["10.96.0.10"]),
                ("ns/web", &["10.96.0.20"]),
            ],
            flagged: &[],
        },
        &[
            ("10.96.0.10", "kube-system/dns@1"),
            ("10.96.0.20", "ns/web@9990"),
        ],
        &[],
        &[],
        &[],
        vec![],
    );
}

#[test]
fn leaks_are_flagged_then_released() {
    let registry = &[
        ("10.96.0.30", "ns/gone@100"),
        ("10.96.0.31", "ns/gone2"),
        // Claimed 10 s ago by a Service not written yet: a create in flight.
        ("10.96.0.32", "ns/creating@9990"),
    ];
    // First pass: flagged, kept.
    check(
        Case {
            range: ips(),
            registry,
            holders: &[],
            flagged: &[],
        },
        registry,
        &["10.96.0.30", "10.96.0.31"],
        &[],
        &[],
        vec![],
    );
    // Next pass, still leaked: released (one flagged value was meanwhile freed by
    // someone else; nothing to do for it).
    check(
        Case {
            range: ips(),
            registry,
            holders: &[],
            flagged: &["10.96.0.30", "10.96.0.31", "10.96.0.99"],
        },
        &[("10.96.0.32", "ns/creating@9990")],
        &[],
        &["10.96.0.30", "10.96.0.31"],
        &[],
        vec![],
    );
    // Flagged, but a Service holds it now: kept, unflagged.
    check(
        Case {
            range: ips(),
            registry: &[("10.96.0.30", "ns/gone@100")],
            holders: &[("ns/gone", &["10.96.0.30"])],
            flagged: &["10.96.0.30"],
        },
        &[("10.96.0.30", "ns/gone@100")],
        &[],
        &[],
        &[],
        vec![],
    );
}

#[test]
fn missing_and_stale_entries_are_marked() {
    check(
        Case {
            range: ips(),
            registry: &[
                // Names a Service that does not hold it, claimed long ago: handed over.
                ("10.96.0.40", "ns/old@5"),
                // The same, but young: left for the next pass.
                ("10.96.0.41", "ns/young@9999"),
            ],
            holders: &[
                ("ns/a", &["10.96.0.40"]),
                ("ns/b", &["10.96.0.41"]),
                ("ns/c", &["10.96.0.42"]),
            ],
            flagged: &[],
        },
        &[
            ("10.96.0.40", "ns/a@10000"),
            ("10.96.0.41", "ns/young@9999"),
            ("10.96.0.42", "ns/c@10000"),
        ],
        &[],
        &[],
        &["10.96.0.40", "10.96.0.42"],
        vec![problem("ns/c", "10.96.0.42", Finding::NotAllocated)],
    );
}

#[test]
fn duplicates_and_values_out_of_range_are_reported() {
    check(
        Case {
            range: ips(),
            registry: &[("10.96.0.50", "ns/b@1")],
            holders: &[
                ("ns/a", &["10.96.0.50"]),
                ("ns/b", &["10.96.0.50"]),
                ("ns/c", &["10.96.0.51"]),
                ("ns/d", &["10.96.0.51"]),
                ("ns/e", &["192.168.0.1", "fd00::1"]),
            ],
            flagged: &[],
        },
        &[("10.96.0.50", "ns/b@1"), ("10.96.0.51", "ns/c@10000")],
        &[],
        &[],
        &["10.96.0.51"],
        vec![
            // The registry's owner keeps its value; without one, the first by name.
            problem("ns/a", "10.96.0.50", Finding::AlreadyAllocated),
            problem("ns/c", "10.96.0.51", Finding::NotAllocated),
            problem("ns/d", "10.96.0.51", Finding::AlreadyAllocated),
            problem("ns/e", "192.168.0.1", Finding::OutOfRange),
            problem("ns/e", "fd00::1", Finding::OutOfRange),
        ],
    );
}

#[test]
fn node_ports() {
    let ports = Range::node_ports(30000, 32767).unwrap();
    check(
        Case {
            range: ports.clone(),
            registry: &[
                ("30080", "ns/web@1"),
                ("30081", "ns/gone@1"),
                ("garbage", "x"),
            ],
            holders: &[("ns/web", &["30080", "30090"]), ("ns/x", &["80"])],
            flagged: &["30081", "garbage"],
        },
        &[("30080", "ns/web@1"), ("30090", "ns/web@10000")],
        &[],
        &["30081", "garbage"],
        &["30090"],
        vec![
            problem("ns/web", "30090", Finding::NotAllocated),
            problem("ns/x", "80", Finding::OutOfRange),
        ],
    );
    let p = problem("ns/x", "80", Finding::OutOfRange);
    assert_eq!(
        p.event(&ports),
        (
            "PortOutOfRange",
            "Port 80 is not within the port range 30000-32767; please recreate service".into()
        )
    );
    let p = problem("ns/a", "10.96.0.50", Finding::AlreadyAllocated);
    assert_eq!(
        p.event(&ips()),
        (
            "ClusterIPAlreadyAllocated",
            "Cluster IP [IPv4]:10.96.0.50 was assigned to multiple services; please recreate service"
                .into()
        )
    );
}
