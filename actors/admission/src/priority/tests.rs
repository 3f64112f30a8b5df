use serde_json::json;

use super::*;

fn classes() -> Vec<Value> {
    vec![
        json!({"metadata": {"name": "high"}, "value": 1000}),
        json!({"metadata": {"name": "batch"}, "value": 10, "preemptionPolicy": "Never"}),
    ]
}

fn with_default() -> Vec<Value> {
    let mut c = classes();
    c.push(json!({"metadata": {"name": "normal"}, "value": 100, "globalDefault": true}));
    c
}

fn check(spec: Value, classes: &[Value], want: Result<(Option<&str>, i64, &str), &str>) {
    let got = resolve(&spec, classes);
    let want = want
        .map(|(n, p, pol)| Resolved {
            class_name: n.map(str::to_string),
            priority: p,
            preemption_policy: pol.to_string(),
        })
        .map_err(str::to_string);
    assert_eq!(got, want, "{spec}");
}

#[test]
fn resolution() {
    let c = classes();
    let d = with_default();
    check(json!({}), &c, Ok((None, 0, "PreemptLowerPriority")));
    check(
        json!({}),
        &d,
        Ok((Some("normal"), 100, "PreemptLowerPriority")),
    );
    check(
        json!({"priorityClassName": "high"}),
        &d,
        Ok((Some("high"), 1000, "PreemptLowerPriority")),
    );
    check(
        json!({"priorityClassName": "batch"}),
        &c,
        Ok((Some("batch"), 10, "Never")),
    );
    check(
        json!({"priorityClassName": "system-node-critical"}),
        &c,
        Ok((
            Some("system-node-critical"),
            2_000_001_000,
            "PreemptLowerPriority",
        )),
    );
    check(
        json!({"priorityClassName": "system-cluster-critical"}),
        &[],
        Ok((
            Some("system-cluster-critical"),
            2_000_000_000,
            "PreemptLowerPriority",
        )),
    );
    check(
        json!({"priorityClassName": "foo"}),
        &c,
        Err("no PriorityClass with name foo was found"),
    );
    // A priority that agrees is accepted; one that disagrees is refused.
    check(
        json!({"priorityClassName": "high", "priority": 1000}),
        &c,
        Ok((Some("high"), 1000, "PreemptLowerPriority")),
    );
    check(
        json!({"priorityClassName": "high", "priority": 5}),
        &c,
        Err(
            "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name",
        ),
    );
    check(
        json!({"priorityClassName": "high", "preemptionPolicy": "Never"}),
        &c,
        Err(
            "the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name",
        ),
    );
}

#[test]
fn apply_writes_the_spec() {
    let mut spec = json!({"containers": []});
    apply(
        &mut spec,
        &Resolved {
            class_name: Some("normal".into()),
            priority: 100,
            preemption_policy: "Never".into(),
        },
    );
    assert_eq!(
        spec,
        json!({"containers": [], "priorityClassName": "normal", "priority": 100, "preemptionPolicy": "Never"})
    );
}

#[test]
fn one_global_default() {
    let d = with_default();
    let check = |class: Value, want: Result<(), &str>| {
        assert_eq!(
            check_class(&class, &d),
            want.map_err(str::to_string),
            "{class}"
        );
    };
    check(json!({"metadata": {"name": "x"}, "value": 1}), Ok(()));
    check(
        json!({"metadata": {"name": "x"}, "value": 1, "globalDefault": true}),
        Err("PriorityClass normal is already marked as default. Only one default can exist"),
    );
    // Updating the default class itself is fine.
    check(
        json!({"metadata": {"name": "normal"}, "value": 7, "globalDefault": true}),
        Ok(()),
    );
    check(
        json!({"metadata": {"name": "system-node-critical"}, "value": 1}),
        Err("system-node-critical is a built-in PriorityClass and cannot be created or changed"),
    );
}
