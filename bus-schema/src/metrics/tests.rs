use super::*;

fn report(node: &str, ts: i64, pods: &[(&str, &str, u64)]) -> UsageReport {
    UsageReport {
        node: node.into(),
        timestamp_ms: ts,
        window_ms: 1000,
        node_usage: Usage {
            cpu_millis: pods.iter().map(|p| p.2).sum(),
            memory_bytes: 0,
        },
        pods: pods
            .iter()
            .map(|(ns, name, cpu)| PodUsage {
                namespace: ns.to_string(),
                name: name.to_string(),
                uid: format!("uid-{name}"),
                labels: BTreeMap::new(),
                containers: vec![ContainerUsage {
                    name: "c".into(),
                    usage: Usage {
                        cpu_millis: *cpu,
                        memory_bytes: 1,
                    },
                }],
            })
            .collect(),
    }
}

/// Applies `(received_ms, report)` in order, expires at `now` with a 10 s limit and
/// returns (pod name, cpu) of every pod held.
fn check(steps: Vec<(i64, UsageReport)>, now: i64, expected: &[(&str, u64)]) {
    let mut table = UsageTable::default();
    for (at, r) in steps {
        table.insert(r, at);
    }
    table.expire(now, 10_000);
    let got: Vec<(String, u64)> = table
        .pods(None)
        .into_iter()
        .map(|s| (s.pod.name.clone(), s.pod.total().cpu_millis))
        .collect();
    let want: Vec<(String, u64)> = expected.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    assert_eq!(got, want);
}

#[test]
fn latest_report_per_node_wins() {
    check(
        vec![
            (0, report("n1", 0, &[("d", "a", 10), ("d", "b", 20)])),
            (1000, report("n1", 1000, &[("d", "a", 30)])),
        ],
        1000,
        &[("a", 30)],
    );
}

#[test]
fn a_delayed_older_report_is_ignored() {
    check(
        vec![
            (0, report("n1", 2000, &[("d", "a", 30)])),
            (100, report("n1", 1000, &[("d", "a", 10)])),
        ],
        100,
        &[("a", 30)],
    );
}

#[test]
fn stale_nodes_age_out_and_others_stay() {
    check(
        vec![
            (0, report("n1", 0, &[("d", "a", 10)])),
            (15_000, report("n2", 15_000, &[("d", "b", 20)])),
        ],
        15_000,
        &[("b", 20)],
    );
}

#[test]
fn a_pod_moving_nodes_is_read_from_its_newest_node() {
    check(
        vec![
            (0, report("n1", 0, &[("d", "a", 10)])),
            (500, report("n2", 500, &[("d", "a", 40)])),
            (1000, report("n1", 1000, &[])),
        ],
        1000,
        &[("a", 40)],
    );
}

#[test]
fn reports_round_trip_through_the_envelope() {
    let r = report("n1", 5, &[("d", "a", 10)]);
    let meta = crate::envelope::Meta {
        sender: "node/n1".into(),
        traceparent: None,
    };
    let (headers, body) = crate::envelope::encode(&r, &meta).unwrap();
    let (_, back): (_, UsageReport) = crate::envelope::decode(Some(&headers), &body).unwrap();
    assert_eq!(back, r);
}
