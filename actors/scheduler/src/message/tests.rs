use super::*;

fn check(
    n: usize,
    pre: Option<&str>,
    reasons: &[(&str, usize)],
    post: Option<&str>,
    expected: &str,
) {
    let hist: BTreeMap<String, usize> = reasons.iter().map(|(r, n)| (r.to_string(), *n)).collect();
    assert_eq!(failed_scheduling(&fit_error(n, pre, &hist), post), expected);
}

#[test]
fn messages_match_kubernetes() {
    check(
        5,
        None,
        &[
            ("Insufficient cpu", 3),
            ("node(s) had untolerated taint {dedicated: gpu}", 2),
        ],
        Some("0/5 nodes are available: 5 Preemption is not helpful for scheduling."),
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.",
    );
    check(
        1,
        None,
        &[("Insufficient cpu", 1)],
        Some(NOT_ELIGIBLE_NEVER),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.",
    );
    check(
        3,
        Some("persistentvolumeclaim \"data\" not found"),
        &[],
        None,
        "0/3 nodes are available: persistentvolumeclaim \"data\" not found.",
    );
    check(0, None, &[], None, "0/0 nodes are available:");
    // Counts sort as strings, as Kubernetes does ("10 ..." before "2 ...").
    check(
        12,
        None,
        &[
            ("Insufficient memory", 10),
            ("node(s) were unschedulable", 2),
        ],
        None,
        "0/12 nodes are available: 10 Insufficient memory, 2 node(s) were unschedulable.",
    );
}

#[test]
fn histogram_counts() {
    let h = histogram(["a", "b", "a"]);
    assert_eq!(h.get("a"), Some(&2));
    assert_eq!(h.get("b"), Some(&1));
}
