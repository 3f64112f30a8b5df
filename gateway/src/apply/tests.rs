//! Server-side apply and update tracking as data: each case is a list of writes by named
//! managers and the object (with its `managedFields`) or the error they end in.

use serde_json::{Value, json};

use super::fieldset::{Element, Set};
use super::typed::merge_list_order;
use super::*;

const T1: &str = "2024-05-01T10:00:00Z";

/// One write in a scenario.
enum Step {
    /// `kubectl apply --server-side` by `manager` (forced or not).
    Apply(&'static str, Value, bool),
    /// A merge patch by `manager` through the main resource.
    Merge(&'static str, Value),
    /// A merge patch by `manager` through the status subresource (only `status` changes).
    Status(&'static str, Value),
}
use Step::*;

/// Runs `steps` on an object of `kind` that does not exist yet; stops at the first error.
fn run(kind: &str, steps: Vec<Step>) -> Result<Value, ApplyError> {
    let mut live: Option<Value> = None;
    for (idx, step) in steps.into_iter().enumerate() {
        let now = format!("2024-05-01T10:00:{idx:02}Z");
        let next = match step {
            Apply(manager, config, force) => {
                server_side_apply(kind, live.as_ref(), &config, manager, force, None, &now)?
            }
            Merge(manager, patch) => patched(kind, live.as_ref(), &patch, manager, None, &now),
            Status(manager, patch) => {
                patched(kind, live.as_ref(), &patch, manager, Some("status"), &now)
            }
        };
        live = Some(next);
    }
    Ok(live.unwrap_or(Value::Null))
}

/// The merge patch of `live` by `manager`, tracked.
fn patched(
    kind: &str,
    live: Option<&Value>,
    patch: &Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) -> Value {
    let mut next = live.cloned().unwrap_or_else(|| json!({}));
    json_patch::merge(&mut next, patch);
    track_update(kind, live, &mut next, manager, subresource, now);
    next
}

/// Runs a scenario and compares the whole final object.
fn check(name: &str, kind: &str, steps: Vec<Step>, expected: Value) {
    match run(kind, steps) {
        Ok(actual) => assert_eq!(
            actual,
            expected,
            "case {name:?}\n  actual:   {}\n  expected: {}",
            serde_json::to_string_pretty(&actual).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap()
        ),
        Err(error) => panic!("case {name:?} failed: {error}"),
    }
}

/// Runs a scenario that must fail with this message.
fn check_err(name: &str, kind: &str, steps: Vec<Step>, expected: &str) {
    match run(kind, steps) {
        Ok(actual) => panic!("case {name:?} succeeded: {actual}"),
        Err(error) => assert_eq!(error.to_string(), expected, "case {name:?}"),
    }
}

fn entry(manager: &str, operation: &str, time: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": operation, "apiVersion": "apps/v1", "time": time,
           "fieldsType": "FieldsV1", "fieldsV1": fields})
}

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec})
}

fn with_managed(mut obj: Value, entries: Vec<Value>) -> Value {
    obj["metadata"]["managedFields"] = Value::Array(entries);
    obj
}

#[test]
fn apply_creates_and_owns_what_it_sets() {
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
                ]}
            }
        }
    });
    let fields = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:containerPort": {}
                    }}
                }}}
            }
        }
    });
    let expected = with_managed(
        config.clone(),
        vec![entry("kubectl", "Apply", "2024-05-01T10:00:00Z", fields)],
    );
    check(
        "create",
        "Deployment",
        vec![Apply("kubectl", config.clone(), false)],
        expected.clone(),
    );
    // The same configuration again changes nothing, not even the entry's time.
    check(
        "no-op re-apply",
        "Deployment",
        vec![
            Apply("kubectl", config.clone(), false),
            Apply("kubectl", config, false),
        ],
        expected,
    );
}

#[test]
fn reapply_removes_dropped_fields_unless_someone_else_owns_them() {
    let both = deployment(json!({"replicas": 2, "paused": false}));
    let only_paused = deployment(json!({"paused": false}));
    check(
        "dropped field is removed",
        "Deployment",
        vec![
            Apply("kubectl", both.clone(), false),
            Apply("kubectl", only_paused.clone(), false),
        ],
        with_managed(
            only_paused.clone(),
            vec![entry(
                "kubectl",
                "Apply",
                "2024-05-01T10:00:01Z",
                json!({"f:spec": {"f:paused": {}}}),
            )],
        ),
    );
    check(
        "a field another applier owns too stays",
        "Deployment",
        vec![
            Apply("kubectl", both.clone(), false),
            Apply("ci", deployment(json!({"replicas": 2})), false),
            Apply("kubectl", only_paused.clone(), false),
        ],
        with_managed(
            deployment(json!({"replicas": 2, "paused": false})),
            vec![
                entry(
                    "ci",
                    "Apply",
                    "2024-05-01T10:00:01Z",
                    json!({"f:spec": {"f:replicas": {}}}),
                ),
                entry(
                    "kubectl",
                    "Apply",
                    "2024-05-01T10:00:02Z",
                    json!({"f:spec": {"f:paused": {}}}),
                ),
            ],
        ),
    );
    check(
        "a field an updater changed stays (and the apply changes nothing, so its entry keeps its time)",
        "Deployment",
        vec![
            Apply("kubectl", both, false),
            Merge("kubectl-edit", json!({"spec": {"replicas": 4}})),
            Apply("kubectl", only_paused, false),
        ],
        with_managed(
            deployment(json!({"replicas": 4, "paused": false})),
            vec![
                entry(
                    "kubectl",
                    "Apply",
                    "2024-05-01T10:00:00Z",
                    json!({"f:spec": {"f:paused": {}}}),
                ),
                entry(
                    "kubectl-edit",
                    "Update",
                    "2024-05-01T10:00:01Z",
                    json!({"f:spec": {"f:replicas": {}}}),
                ),
            ],
        ),
    );
}

#[test]
fn conflicts_and_force() {
    let replicas = |n: i64| deployment(json!({"replicas": n}));
    let steps = |force| {
        vec![
            Apply("kubectl", replicas(2), false),
            Merge("kubectl-patch", json!({"spec": {"replicas": 5}})),
            Apply("kubectl", replicas(3), force),
        ]
    };
    check_err(
        "changing a field an updater owns",
        "Deployment",
        steps(false),
        "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using apps/v1: .spec.replicas",
    );
    check(
        "force takes the field",
        "Deployment",
        steps(true),
        with_managed(
            replicas(3),
            vec![entry(
                "kubectl",
                "Apply",
                "2024-05-01T10:00:02Z",
                json!({"f:spec": {"f:replicas": {}}}),
            )],
        ),
    );
    check(
        "applying the live value shares the field",
        "Deployment",
        vec![
            Apply("kubectl", replicas(2), false),
            Merge("kubectl-patch", json!({"spec": {"replicas": 5}})),
            Apply("kubectl", replicas(5), false),
        ],
        with_managed(
            replicas(5),
            vec![
                entry(
                    "kubectl",
                    "Apply",
                    "2024-05-01T10:00:02Z",
                    json!({"f:spec": {"f:replicas": {}}}),
                ),
                entry(
                    "kubectl-patch",
                    "Update",
                    "2024-05-01T10:00:01Z",
                    json!({"f:spec": {"f:replicas": {}}}),
                ),
            ],
        ),
    );
    check_err(
        "two appliers, several fields",
        "Deployment",
        vec![
            Apply(
                "a",
                deployment(json!({"replicas": 1, "paused": true})),
                false,
            ),
            Apply(
                "b",
                deployment(json!({"replicas": 2, "paused": false, "minReadySeconds": 3})),
                false,
            ),
        ],
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.paused\n- .spec.replicas",
    );
}

#[test]
fn keyed_lists_merge_by_key() {
    let pod = |containers: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": containers}})
    };
    let entry_v1 = |manager: &str, time: &str, fields: Value| {
        json!({"manager": manager, "operation": "Apply", "apiVersion": "v1", "time": time,
               "fieldsType": "FieldsV1", "fieldsV1": fields})
    };
    let container_fields = |name: &str, extra: Value| {
        let mut fields = json!({".": {}, "f:name": {}, "f:image": {}});
        if let (Some(fields), Value::Object(extra)) = (fields.as_object_mut(), extra) {
            fields.extend(extra);
        }
        json!({"f:spec": {"f:containers": {format!("k:{{\"name\":\"{name}\"}}"): fields}}})
    };
    check(
        "two appliers own one container each; one changes an env var of its own",
        "Pod",
        vec![
            Apply(
                "app",
                pod(json!([{"name": "app", "image": "app:1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])),
                false,
            ),
            Apply(
                "mesh",
                pod(json!([{"name": "sidecar", "image": "proxy:1"}])),
                false,
            ),
            Apply(
                "app",
                pod(json!([{"name": "app", "image": "app:2",
                            "env": [{"name": "B", "value": "3"}]}])),
                false,
            ),
        ],
        with_managed(
            pod(json!([
                {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "3"}]},
                {"name": "sidecar", "image": "proxy:1"}
            ])),
            vec![
                entry_v1(
                    "mesh",
                    "2024-05-01T10:00:01Z",
                    container_fields("sidecar", json!({})),
                ),
                entry_v1(
                    "app",
                    "2024-05-01T10:00:02Z",
                    container_fields(
                        "app",
                        json!({"f:env": {"k:{\"name\":\"B\"}": {".": {}, "f:name": {}, "f:value": {}}}}),
                    ),
                ),
            ],
        ),
    );
    check(
        "dropping a container removes it even where another manager owns a field in it",
        "Pod",
        vec![
            Apply(
                "app",
                pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])),
                false,
            ),
            Merge(
                "kubectl-set-image",
                json!({"spec": {"containers": [
                    {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}
                ]}}),
            ),
            Apply("app", pod(json!([{"name": "a", "image": "a:1"}])), false),
        ],
        with_managed(
            pod(json!([{"name": "a", "image": "a:1"}])),
            vec![entry_v1(
                "app",
                "2024-05-01T10:00:02Z",
                container_fields("a", json!({})),
            )],
        ),
    );
    check_err(
        "duplicate keys are invalid",
        "Pod",
        vec![Apply(
            "app",
            pod(json!([{"name": "a", "image": "a:1"}, {"name": "a", "image": "a:2"}])),
            false,
        )],
        ".spec.containers: duplicate entries for key [name=\"a\"]",
    );
    check_err(
        "an item without its key is invalid",
        "Pod",
        vec![Apply("app", pod(json!([{"image": "a:1"}])), false)],
        ".spec.containers: an item lacks its key field \"name\"",
    );
}

#[test]
fn sets_and_atomic_lists() {
    let cm = |finalizers: Value, data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "finalizers": finalizers}, "data": data})
    };
    let obj = run(
        "ConfigMap",
        vec![
            Apply("a", cm(json!(["x.io/a"]), json!({"k": "1"})), false),
            Apply("b", cm(json!(["x.io/b"]), json!({"k": "1"})), false),
            Apply("a", cm(json!([]), json!({"k": "1"})), false),
        ],
    )
    .unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["x.io/b"]));
    assert_eq!(obj["data"], json!({"k": "1"}), "b still owns data.k");
    let managed = &obj["metadata"]["managedFields"];
    assert_eq!(managed[0]["manager"], "b");
    assert_eq!(
        managed[0]["fieldsV1"],
        json!({"f:data": {"f:k": {}}, "f:metadata": {"f:finalizers": {"v:\"x.io/b\"": {}}}})
    );
    assert_eq!(managed[1]["manager"], "a");
    assert_eq!(managed[1]["fieldsV1"], json!({"f:data": {"f:k": {}}}));

    // Tolerations are atomic: a second applier's list replaces the first's, and is a
    // conflict when it differs.
    let pod = |tolerations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"tolerations": tolerations}})
    };
    check_err(
        "atomic list",
        "Pod",
        vec![
            Apply("a", pod(json!([{"key": "k1"}])), false),
            Apply("b", pod(json!([{"key": "k2"}])), false),
        ],
        "Apply failed with 1 conflict: conflict with \"a\": .spec.tolerations",
    );
}

#[test]
fn update_tracking() {
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
    let update = |manager: &str, time: &str, fields: Value| {
        json!({"manager": manager, "operation": "Update", "apiVersion": "v1", "time": time,
               "fieldsType": "FieldsV1", "fieldsV1": fields})
    };
    check(
        "create, then another manager changes one key and removes another",
        "ConfigMap",
        vec![
            Merge("kubectl-create", cm(json!({"a": "1", "b": "2"}))),
            Merge("kubectl-edit", json!({"data": {"a": "9", "b": null}})),
        ],
        with_managed(
            cm(json!({"a": "9"})),
            vec![
                update(
                    "kubectl-create",
                    "2024-05-01T10:00:00Z",
                    json!({"f:data": {}}),
                ),
                update(
                    "kubectl-edit",
                    "2024-05-01T10:00:01Z",
                    json!({"f:data": {"f:a": {}}}),
                ),
            ],
        ),
    );
    check(
        "a write that changes nothing records nothing",
        "ConfigMap",
        vec![
            Merge("kubectl-create", cm(json!({"a": "1"}))),
            Merge("other", json!({"data": {"a": "1"}})),
        ],
        with_managed(
            cm(json!({"a": "1"})),
            vec![update(
                "kubectl-create",
                "2024-05-01T10:00:00Z",
                json!({"f:data": {".": {}, "f:a": {}}}),
            )],
        ),
    );
    // The status subresource's writers own status; main-resource writers never do.
    let obj = run(
        "Deployment",
        vec![
            Apply("kubectl", deployment(json!({"replicas": 1})), false),
            Status("deployment-controller", json!({"status": {"replicas": 1}})),
        ],
    )
    .unwrap();
    assert_eq!(
        obj["metadata"]["managedFields"][1],
        json!({"manager": "deployment-controller", "operation": "Update", "apiVersion": "apps/v1",
               "time": "2024-05-01T10:00:01Z", "fieldsType": "FieldsV1",
               "fieldsV1": {"f:status": {".": {}, "f:replicas": {}}}, "subresource": "status"})
    );
    let mut with_status = deployment(json!({"replicas": 1}));
    with_status["status"] = json!({"replicas": 1});
    track_update(
        "Deployment",
        None,
        &mut with_status,
        "kubectl-create",
        None,
        T1,
    );
    assert_eq!(
        with_status["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:spec": {".": {}, "f:replicas": {}}})
    );
}

#[test]
fn managed_fields_sent_by_the_client() {
    let created = run(
        "ConfigMap",
        vec![Merge(
            "kubectl-create",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
        )],
    )
    .unwrap();
    // Leaving managedFields out of a full update keeps the stored ones.
    let mut replaced = created.clone();
    replaced["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    track_update("ConfigMap", Some(&created), &mut replaced, "x", None, T1);
    assert_eq!(replaced, created);
    // An empty list clears them (and this write, changing nothing, adds no entry).
    let mut reset = created.clone();
    reset["metadata"]["managedFields"] = json!([]);
    track_update("ConfigMap", Some(&created), &mut reset, "x", None, T1);
    assert_eq!(reset["metadata"].get("managedFields"), None);
}

#[test]
fn invalid_configurations() {
    let cases = [
        (json!([1]), "an apply configuration must be an object"),
        (
            json!({"kind": "Deployment"}),
            "an apply configuration must set apiVersion and kind",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "managedFields": []}}),
            "metadata.managedFields must be nil",
        ),
    ];
    for (config, expected) in cases {
        match server_side_apply("Deployment", None, &config, "m", false, None, T1) {
            Err(ApplyError::Invalid(message)) => assert_eq!(message, expected),
            other => panic!("{config}: {other:?}"),
        }
    }
}

#[test]
fn merged_list_order() {
    // (live, configuration, merged order)
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (&["a", "b"], &["a", "b"], &["a", "b"]),
        (&["a"], &["b"], &["a", "b"]),
        (&["a", "b", "c"], &["c", "a"], &["b", "c", "a"]),
        (&["a", "x", "b"], &["b", "n", "a"], &["x", "b", "n", "a"]),
        (&[], &["a", "b"], &["a", "b"]),
        (&["a", "b"], &[], &["a", "b"]),
    ];
    for (live, config, expected) in cases {
        let items = |names: &[&str]| -> Vec<(Element, Value)> {
            names
                .iter()
                .map(|n| (Element::value(&json!(n)), json!(n)))
                .collect()
        };
        let (live_items, config_items) = (items(live), items(config));
        let live_refs: Vec<(Element, &Value)> =
            live_items.iter().map(|(e, v)| (e.clone(), v)).collect();
        let config_refs: Vec<(Element, &Value)> =
            config_items.iter().map(|(e, v)| (e.clone(), v)).collect();
        let merged: Vec<String> = merge_list_order(&live_refs, &config_refs)
            .into_iter()
            .map(|(_, l, c)| c.or(l).and_then(Value::as_str).unwrap().to_owned())
            .collect();
        assert_eq!(merged, *expected, "live {live:?} config {config:?}");
    }
}

#[test]
fn fields_v1_round_trip() {
    let stored = json!({
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:ports": {"k:{\"protocol\":\"TCP\",\"port\":80}": {".": {}, "f:port": {}}}}
    });
    let set = Set::from_fields_v1(&stored).unwrap();
    let port = Element::parse("k:{\"port\":80,\"protocol\":\"TCP\"}").unwrap();
    assert!(set.contains(&[
        Element::field("spec"),
        Element::field("ports"),
        port.clone()
    ]));
    assert!(set.contains(&[Element::field("metadata"), Element::field("labels")]));
    assert!(!set.contains(&[Element::field("metadata")]));
    assert_eq!(
        set.to_fields_v1(),
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}
        })
    );
    assert_eq!(port.display(), "[port=80,protocol=\"TCP\"]");
    for bad in [
        json!({"x:y": {}}),
        json!({"k:[1]": {}}),
        json!({"f:a": 1}),
        json!(3),
    ] {
        assert!(Set::from_fields_v1(&bad).is_err(), "{bad}");
    }
}

#[test]
fn manager_names() {
    let cases = [
        ("kubectl/v1.32.0 (linux/amd64) kubernetes/abc", "kubectl"),
        ("kube-controller-manager/v1.32.0", "kube-controller-manager"),
        ("curl", "curl"),
        ("", ""),
        ("a\u{7}b/1", "ab"),
    ];
    for (user_agent, expected) in cases {
        assert_eq!(
            manager_from_user_agent(user_agent),
            expected,
            "{user_agent:?}"
        );
    }
    assert_eq!(manager_from_user_agent(&"x".repeat(300)).len(), 128);
    assert!(validate_field_manager("kubectl").is_ok());
    assert!(validate_field_manager(&"x".repeat(129)).is_err());
    assert!(validate_field_manager("a\nb").is_err());
}

#[test]
fn update_managers_are_capped() {
    let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    for idx in 0..12 {
        let old = obj.clone();
        obj["data"][format!("k{idx}")] = json!("v");
        let now = format!("2024-05-01T10:00:{idx:02}Z");
        track_update(
            "ConfigMap",
            Some(&old),
            &mut obj,
            &format!("m{idx:02}"),
            None,
            &now,
        );
    }
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers.len(), MAX_UPDATE_MANAGERS);
    assert_eq!(managers[0], "ancient-changes");
    assert_eq!(
        obj["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}})
    );
}

#[test]
fn nulls_status_applies_and_odd_objects() {
    // A null in the configuration removes the field; the applier owns it (as null).
    let obj = run(
        "Deployment",
        vec![
            Merge("kubectl-create", deployment(json!({"paused": true}))),
            Apply("kubectl", deployment(json!({"paused": null})), false),
        ],
    )
    .unwrap();
    assert_eq!(obj["spec"], json!({}));
    let managed = &obj["metadata"]["managedFields"];
    assert_eq!(managed[0]["manager"], "kubectl");
    assert_eq!(managed[0]["fieldsV1"], json!({"f:spec": {"f:paused": {}}}));
    assert_eq!(managed[1]["fieldsV1"], json!({"f:spec": {}}));

    // An apply to the status subresource owns status fields only, under its own entry.
    let live = run(
        "Deployment",
        vec![Apply("kubectl", deployment(json!({"replicas": 1})), false)],
    )
    .unwrap();
    let mut config = deployment(json!({"replicas": 9}));
    config["status"] = json!({"readyReplicas": 1});
    let applied = server_side_apply(
        "Deployment",
        Some(&live),
        &config,
        "kubectl",
        false,
        Some("status"),
        T1,
    )
    .unwrap();
    let entries = applied["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["subresource"], "status");
    assert_eq!(
        entries[1]["fieldsV1"],
        json!({"f:status": {"f:readyReplicas": {}}})
    );
    assert_eq!(
        entries[0]["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );

    // Live objects that break the list metadata are tracked, never rejected: duplicate
    // container names make the list one field.
    let pod = |image: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "a", "image": image}, {"name": "a"}]}})
    };
    let mut next = pod("b");
    track_update("Pod", Some(&pod("a")), &mut next, "m", None, T1);
    assert_eq!(
        next["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:spec": {"f:containers": {}}})
    );
    for mut odd in [json!(null), json!([1, 2]), json!({"metadata": 3})] {
        track_update("Pod", Some(&pod("a")), &mut odd, "m", None, T1);
    }
    // A garbage managedFields on the live object does not block an apply.
    let mut live = pod("a");
    live["metadata"]["managedFields"] = json!([{"operation": "Nope"}]);
    assert!(server_side_apply("Pod", Some(&live), &pod("a"), "m", false, None, T1).is_err());
    let mut unique = pod("a");
    unique["spec"]["containers"] = json!([{"name": "a", "image": "a"}]);
    assert!(server_side_apply("Pod", Some(&live), &unique, "m", false, None, T1).is_ok());
}
