use super::*;
use serde_json::json;

const S: Duration = Duration::from_secs(1);

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

/// A node with the agent's healthy Ready condition and extra taints (`key:effect:added`).
fn node(taints: &[(&str, &str, i64)], conditions: serde_json::Value) -> Node {
    let taints: Vec<serde_json::Value> = taints
        .iter()
        .map(|(k, e, t)| json!({"key": k, "effect": e, "timeAdded": at(*t).to_string()}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "spec": {"taints": taints},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

fn healthy() -> serde_json::Value {
    json!([{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastTransitionTime": at(-100).to_string()}])
}

fn down_conditions() -> serde_json::Value {
    json!([
        {"type": "Ready", "status": "Unknown", "reason": REASON_STATUS_UNKNOWN,
         "lastTransitionTime": at(0).to_string()},
        {"type": GOSSIP_CONDITION, "status": "False", "reason": REASON_MEMBER_DOWN,
         "lastTransitionTime": at(0).to_string()},
    ])
}

fn tainted() -> Vec<(&'static str, &'static str, i64)> {
    vec![
        (UNREACHABLE_TAINT_KEY, "NoSchedule", 0),
        (UNREACHABLE_TAINT_KEY, "NoExecute", 0),
    ]
}

/// A pod: name, QoS class, owner kind ("" for none), tolerations, terminating, phase.
fn pod(name: &str, qos: &str, owner: &str, tolerations: serde_json::Value) -> Pod {
    let owners = if owner.is_empty() {
        json!([])
    } else {
        json!([{"apiVersion": "apps/v1", "kind": owner, "name": "o", "uid": "o-uid", "controller": true}])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid"),
                     "ownerReferences": owners},
        "spec": {"nodeName": "n1", "containers": [], "tolerations": tolerations},
        "status": {"phase": "Running", "qosClass": qos},
    }))
    .unwrap()
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(at(-1)));
    p
}

fn finished(mut p: Pod, phase: &str) -> Pod {
    p.status.get_or_insert_with(Default::default).phase = Some(phase.into());
    p
}

/// What a decision comes to, in words that are easy to tabulate.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// The taints written (key:effect), `None` when unchanged.
    taints: Option<Vec<String>>,
    /// The conditions written (type=status/reason), `None` when unchanged.
    conditions: Option<Vec<String>>,
    /// Evictions in order: "g:name" graceful, "f:name" forced.
    evictions: Vec<String>,
    /// Pods marked not ready: "name" (each new Ready condition is checked by its own
    /// test).
    not_ready: Vec<String>,
    /// Next recheck in whole seconds.
    recheck_secs: Option<u64>,
}

fn outcome(d: &Decision) -> Outcome {
    Outcome {
        taints: d.taints.as_ref().map(|t| {
            t.iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect()
        }),
        conditions: d.conditions.as_ref().map(|c| {
            c.iter()
                .map(|c| {
                    format!(
                        "{}={}/{}",
                        c.type_,
                        c.status,
                        c.reason.as_deref().unwrap_or("")
                    )
                })
                .collect()
        }),
        evictions: d
            .evictions
            .iter()
            .map(|e| {
                let k = match e.kind {
                    EvictionKind::Graceful => "g",
                    EvictionKind::Force => "f",
                };
                format!("{k}:{}", e.name)
            })
            .collect(),
        not_ready: d.not_ready.iter().map(|n| n.name.clone()).collect(),
        recheck_secs: d.recheck_after.map(|d| d.as_secs_f64().ceil() as u64),
    }
}

struct Case {
    name: &'static str,
    node: Node,
    reach: Reach,
    fence_ms: u32,
    heartbeat_age: Option<Duration>,
    pods: Vec<Pod>,
    now: i64,
    /// Uids marked not ready earlier in this down time.
    marked: &'static [&'static str],
}

/// No pod marked yet this time.
static NONE_MARKED: BTreeSet<String> = BTreeSet::new();

fn check(case: Case, expected: Outcome) {
    let marked: BTreeSet<String> = case.marked.iter().map(|u| u.to_string()).collect();
    let view = NodeView {
        node: &case.node,
        reach: case.reach,
        fence_timeout_ms: case.fence_ms,
        heartbeat_age: case.heartbeat_age,
        marked_not_ready: &marked,
    };
    let got = decide(&view, &case.pods, at(case.now));
    assert_eq!(outcome(&got), expected, "case {}", case.name);
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn down(secs: u64) -> Reach {
    Reach::Down {
        down_for: Duration::from_secs(secs),
    }
}

#[test]
fn down_node_gets_taints_and_conditions_then_nothing_more() {
    check(
        Case {
            name: "first sight of down",
            node: node(&[("dedicated", "NoSchedule", -50)], healthy()),
            reach: down(0),
            fence_ms: 1000,
            heartbeat_age: None,
            pods: vec![],
            now: 0,
            marked: &[],
        },
        Outcome {
            taints: Some(strings(&[
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
            ])),
            conditions: Some(strings(&[
                "Ready=Unknown/NodeStatusUnknown",
                "GossipReachable=False/MemberDown",
            ])),
            evictions: vec![],
            not_ready: vec![],
            recheck_secs: None,
        },
    );
    check(
        Case {
            name: "already marked: no write",
            node: node(&tainted(), down_conditions()),
            reach: down(5),
            fence_ms: 1000,
            heartbeat_age: None,
            pods: vec![],
            now: 5,
            marked: &[],
        },
        Outcome {
            taints: None,
            conditions: None,
            evictions: vec![],
            not_ready: vec![],
            recheck_secs: None,
        },
    );
    check(
        Case {
            name: "suspect changes nothing",
            node: node(&[], healthy()),
            reach: Reach::Suspect,
            fence_ms: 1000,
            heartbeat_age: None,
            pods: vec![pod("a", "BestEffort", "ReplicaSet", json!([]))],
            now: 0,
            marked: &[],
        },
        Outcome {
            taints: None,
            conditions: None,
            evictions: vec![],
            not_ready: vec![],
            recheck_secs: None,
        },
    );
}

#[test]
fn ready_and_transition_times() {
    let n = node(&[], healthy());
    let view = NodeView {
        node: &n,
        reach: down(0),
        fence_timeout_ms: 0,
        heartbeat_age: None,
        marked_not_ready: &NONE_MARKED,
    };
    let d = decide(&view, &[], at(7));
    let conditions = d.conditions.unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.last_transition_time, Some(Time(at(7))));
    assert_eq!(ready.message.as_deref(), Some(MESSAGE_STATUS_UNKNOWN));
    let taint = d.taints.unwrap().pop().unwrap();
    assert_eq!(taint.time_added, Some(Time(at(7))));
    assert_eq!(d.node_event.unwrap().0, "NodeNotReady");
}

#[test]
fn pods_evicted_in_qos_order_and_only_live_ones() {
    check(
        Case {
            name: "qos order, terminal and stateful skipped before the fence",
            node: node(&tainted(), down_conditions()),
            reach: down(0),
            fence_ms: 1000,
            heartbeat_age: None,
            pods: vec![
                pod("guaranteed", "Guaranteed", "ReplicaSet", json!([])),
                pod("burstable", "Burstable", "", json!([])),
                pod("besteffort-b", "BestEffort", "Job", json!([])),
                pod("besteffort-a", "BestEffort", "ReplicaSet", json!([])),
                finished(pod("done", "BestEffort", "Job", json!([])), "Succeeded"),
                finished(pod("failed", "BestEffort", "Job", json!([])), "Failed"),
                pod("web-0", "BestEffort", "StatefulSet", json!([])),
            ],
            now: 0,
            marked: &[],
        },
        Outcome {
            taints: None,
            conditions: None,
            evictions: strings(&[
                "g:besteffort-a",
                "g:besteffort-b",
                "g:burstable",
                "g:guaranteed",
            ]),
            not_ready: vec![],
            recheck_secs: Some(3),
        },
    );
    check(
        Case {
            name: "taint written in the same decision: evictions still listed (the shell writes the node first)",
            node: node(&[], healthy()),
            reach: down(0),
            fence_ms: 0,
            heartbeat_age: None,
            pods: vec![pod("a", "BestEffort", "ReplicaSet", json!([]))],
            now: 0,
            marked: &[],
        },
        Outcome {
            taints: Some(strings(&[
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
            ])),
            conditions: Some(strings(&[
                "Ready=Unknown/NodeStatusUnknown",
                "GossipReachable=False/MemberDown",
            ])),
            evictions: strings(&["g:a"]),
            not_ready: vec![],
            recheck_secs: None,
        },
    );
}

#[test]
fn qos_computed_when_not_stored() {
    let mut p = pod("p", "", "", json!([]));
    p.status.as_mut().unwrap().qos_class = None;
    assert_eq!(qos_rank(&p), 0);
    let mut g: Pod = serde_json::from_value(json!({"spec": {"containers": [
        {"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}))
    .unwrap();
    assert_eq!(qos_rank(&g), 2);
    g.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests = Some(
        [(
            "cpu".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("500m".into()),
        )]
        .into(),
    );
    assert_eq!(qos_rank(&g), 1);
}

#[test]
fn toleration_seconds_delay_eviction() {
    let unreachable_for = |secs: Option<i64>| {
        json!([{"key": UNREACHABLE_TAINT_KEY, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": secs}])
    };
    let cases = [
        // (tolerations, now since the taint, expected evictions, recheck)
        (json!([]), 0, vec!["g:p"], None),
        (unreachable_for(None), 1000, vec![], None),
        (unreachable_for(Some(30)), 10, vec![], Some(20)),
        (unreachable_for(Some(30)), 30, vec!["g:p"], None),
        (unreachable_for(Some(0)), 0, vec!["g:p"], None),
        (unreachable_for(Some(-5)), 0, vec!["g:p"], None),
        // A toleration of another taint does not help.
        (
            json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]),
            0,
            vec!["g:p"],
            None,
        ),
        // Tolerating NoSchedule only does not help either.
        (
            json!([{"key": UNREACHABLE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]),
            0,
            vec!["g:p"],
            None,
        ),
        // Kubernetes' getMinTolerationTime: one with seconds wins over one without.
        (
            json!([{"operator": "Exists"},
                   {"key": UNREACHABLE_TAINT_KEY, "operator": "Exists", "tolerationSeconds": 60}]),
            10,
            vec![],
            Some(50),
        ),
    ];
    for (tolerations, now, evictions, recheck) in cases {
        check(
            Case {
                name: "tolerations",
                node: node(&tainted(), down_conditions()),
                reach: down(now as u64),
                fence_ms: 0,
                heartbeat_age: None,
                pods: vec![pod("p", "BestEffort", "ReplicaSet", tolerations.clone())],
                now,
                marked: &[],
            },
            Outcome {
                taints: None,
                conditions: None,
                evictions: strings(&evictions),
                not_ready: vec![],
                recheck_secs: recheck,
            },
        );
    }
}

#[test]
fn daemon_pods_tolerate_unreachable_forever() {
    let tolerations = crate::daemonset::core::with_default_tolerations(&[], false);
    let p = pod(
        "ds",
        "BestEffort",
        "DaemonSet",
        serde_json::to_value(tolerations).unwrap(),
    );
    check(
        Case {
            name: "daemon pod",
            node: node(&tainted(), down_conditions()),
            reach: down(3600),
            fence_ms: 1000,
            heartbeat_age: None,
            pods: vec![p],
            now: 3600,
            marked: &[],
        },
        Outcome {
            taints: None,
            conditions: None,
            evictions: vec![],
            not_ready: vec![],
            recheck_secs: None,
        },
    );
}

#[test]
fn fencing_rule() {
    // fence 1000 ms + 2 s margin = 3 s.
    // (case, fence ms, down for s, heartbeat age, evictions, recheck s)
    type Row = (
        &'static str,
        u32,
        u64,
        Option<Duration>,
        Vec<&'static str>,
        Option<u64>,
    );
    let cases: [Row; 7] = [
        ("not before down + fence", 1000, 2, None, vec![], Some(1)),
        (
            "at down + fence, no heartbeat ever",
            1000,
            3,
            None,
            vec!["f:web-0"],
            None,
        ),
        (
            "heartbeats still arrive",
            1000,
            60,
            Some(S / 2),
            vec![],
            Some(3),
        ),
        (
            "last heartbeat 2 s ago",
            1000,
            60,
            Some(2 * S),
            vec![],
            Some(1),
        ),
        (
            "heartbeats stopped a fence ago",
            1000,
            60,
            Some(3 * S),
            vec!["f:web-0"],
            None,
        ),
        ("fence 0: never", 0, 3600, None, vec![], None),
        (
            "fence 0 and silent: still never",
            0,
            3600,
            Some(3600 * S),
            vec![],
            None,
        ),
    ];
    for (name, fence_ms, down_secs, heartbeat_age, evictions, recheck) in cases {
        check(
            Case {
                name,
                node: node(&tainted(), down_conditions()),
                reach: down(down_secs),
                fence_ms,
                heartbeat_age,
                pods: vec![pod("web-0", "Guaranteed", "StatefulSet", json!([]))],
                now: down_secs as i64,
                marked: &[],
            },
            Outcome {
                taints: None,
                conditions: None,
                evictions: strings(&evictions),
                not_ready: vec![],
                recheck_secs: recheck,
            },
        );
    }
}

#[test]
fn terminating_pods_are_forced_after_the_fence_only() {
    let pods = || {
        vec![
            terminating(pod("rs-a", "BestEffort", "ReplicaSet", json!([]))),
            terminating(pod("web-0", "BestEffort", "StatefulSet", json!([]))),
            // Tolerations do not keep a pod that is already being deleted.
            terminating(pod(
                "ds",
                "BestEffort",
                "DaemonSet",
                json!([{"operator": "Exists"}]),
            )),
        ]
    };
    for (down_secs, fence_ms, evictions, recheck) in [
        (1, 1000, vec![], Some(2)),
        (3, 1000, vec!["f:ds", "f:rs-a", "f:web-0"], None),
        (3600, 0, vec![], None),
    ] {
        check(
            Case {
                name: "terminating",
                node: node(&tainted(), down_conditions()),
                reach: down(down_secs),
                fence_ms,
                heartbeat_age: None,
                pods: pods(),
                now: down_secs as i64,
                marked: &[],
            },
            Outcome {
                taints: None,
                conditions: None,
                evictions: strings(&evictions),
                not_ready: vec![],
                recheck_secs: recheck,
            },
        );
    }
}

#[test]
fn alive_again_clears_what_the_controller_set() {
    check(
        Case {
            name: "back up",
            node: node(
                &[
                    ("dedicated", "NoSchedule", -50),
                    (UNREACHABLE_TAINT_KEY, "NoSchedule", 0),
                    (UNREACHABLE_TAINT_KEY, "NoExecute", 0),
                ],
                down_conditions(),
            ),
            reach: Reach::Alive,
            fence_ms: 1000,
            heartbeat_age: Some(S),
            pods: vec![pod("a", "BestEffort", "ReplicaSet", json!([]))],
            now: 10,
            marked: &[],
        },
        Outcome {
            taints: Some(strings(&["dedicated:NoSchedule"])),
            conditions: Some(strings(&[
                "Ready=True/KubeletReady",
                "GossipReachable=True/MemberAlive",
            ])),
            evictions: vec![],
            not_ready: vec![],
            recheck_secs: None,
        },
    );
    check(
        Case {
            name: "agent's own NotReady is kept",
            node: node(
                &[],
                json!([{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]),
            ),
            reach: Reach::Alive,
            fence_ms: 1000,
            heartbeat_age: None,
            pods: vec![],
            now: 10,
            marked: &[],
        },
        Outcome {
            taints: None,
            conditions: Some(strings(&[
                "Ready=False/KubeletNotReady",
                "GossipReachable=True/MemberAlive",
            ])),
            evictions: vec![],
            not_ready: vec![],
            recheck_secs: None,
        },
    );
    check(
        Case {
            name: "healthy and already marked alive: no write",
            node: node(
                &[],
                json!([
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                    {"type": GOSSIP_CONDITION, "status": "True", "reason": REASON_MEMBER_ALIVE},
                ]),
            ),
            reach: Reach::Alive,
            fence_ms: 1000,
            heartbeat_age: None,
            pods: vec![],
            now: 10,
            marked: &[],
        },
        Outcome {
            taints: None,
            conditions: None,
            evictions: vec![],
            not_ready: vec![],
            recheck_secs: None,
        },
    );
}

#[test]
fn member_states_by_name() {
    let m = |name: &str, port: u16, state: MemberState| Member {
        name: name.into(),
        addr: ([127, 0, 0, 1], port).into(),
        metadata: Default::default(),
        state,
    };
    let view = vec![
        m("a", 1, MemberState::Down),
        m("a", 2, MemberState::Alive),
        m("b", 3, MemberState::Suspect),
        m("b", 4, MemberState::Down),
        m("c", 5, MemberState::Down),
    ];
    let state = |name: &str| member_of(&view, name).map(|m| m.state);
    assert_eq!(state("a"), Some(MemberState::Alive));
    assert_eq!(state("b"), Some(MemberState::Suspect));
    assert_eq!(state("c"), Some(MemberState::Down));
    assert_eq!(state("control-plane"), None);
}

/// `p` as the node agent reports it: `Ready` (and `ContainersReady`) with `status`.
fn reported(mut p: Pod, status: &str) -> Pod {
    let conditions = serde_json::from_value(json!([
        {"type": "ContainersReady", "status": status, "lastTransitionTime": at(-100).to_string()},
        {"type": "Ready", "status": status, "reason": "R", "message": "m",
         "lastTransitionTime": at(-100).to_string()},
    ]))
    .unwrap();
    p.status.get_or_insert_with(Default::default).conditions = Some(conditions);
    p
}

fn tolerates_forever() -> serde_json::Value {
    json!([{"key": UNREACHABLE_TAINT_KEY, "operator": "Exists", "effect": "NoExecute"}])
}

#[test]
fn pods_of_a_down_node_are_marked_not_ready() {
    // (case, reach, fence ms, pods, marked earlier, evictions, marked now)
    type Row = (
        &'static str,
        Reach,
        u32,
        Vec<Pod>,
        &'static [&'static str],
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let tol = || reported(pod("tol", "BestEffort", "", tolerates_forever()), "True");
    let cases: [Row; 12] = [
        (
            "tolerating forever: stays, marked",
            down(0),
            0,
            vec![tol()],
            &[],
            vec![],
            vec!["tol"],
        ),
        (
            "not tolerating: evicted and marked",
            down(0),
            0,
            vec![reported(
                pod("a", "BestEffort", "ReplicaSet", json!([])),
                "True",
            )],
            &[],
            vec!["g:a"],
            vec!["a"],
        ),
        (
            "Ready Unknown becomes False too",
            down(0),
            0,
            vec![reported(
                pod("u", "BestEffort", "", tolerates_forever()),
                "Unknown",
            )],
            &[],
            vec![],
            vec!["u"],
        ),
        (
            "already False: no write",
            down(0),
            0,
            vec![reported(
                pod("f", "BestEffort", "", tolerates_forever()),
                "False",
            )],
            &[],
            vec![],
            vec![],
        ),
        (
            "no Ready condition (never reported): nothing to change",
            down(0),
            0,
            vec![pod("new", "BestEffort", "", tolerates_forever())],
            &[],
            vec![],
            vec![],
        ),
        (
            "finished: no longer an endpoint, left alone",
            down(0),
            0,
            vec![finished(
                reported(pod("done", "BestEffort", "Job", json!([])), "True"),
                "Succeeded",
            )],
            &[],
            vec![],
            vec![],
        ),
        (
            "terminating, not forced (fence 0): marked",
            down(60),
            0,
            vec![terminating(reported(
                pod("t", "BestEffort", "ReplicaSet", json!([])),
                "True",
            ))],
            &[],
            vec![],
            vec!["t"],
        ),
        (
            "StatefulSet pod waiting for the fence: marked",
            down(0),
            1000,
            vec![reported(
                pod("web-0", "BestEffort", "StatefulSet", json!([])),
                "True",
            )],
            &[],
            vec![],
            vec!["web-0"],
        ),
        (
            "force-deleted now: no status write first",
            down(3),
            1000,
            vec![
                reported(pod("web-0", "BestEffort", "StatefulSet", json!([])), "True"),
                terminating(reported(
                    pod("t", "BestEffort", "ReplicaSet", json!([])),
                    "True",
                )),
                tol(),
            ],
            &[],
            vec!["f:t", "f:web-0"],
            vec!["tol"],
        ),
        (
            "marked earlier this time and reported ready again by its agent: believed",
            down(30),
            0,
            vec![
                tol(),
                reported(pod("other", "BestEffort", "", tolerates_forever()), "True"),
            ],
            &["tol-uid"],
            vec![],
            vec!["other"],
        ),
        (
            "suspect: nothing",
            Reach::Suspect,
            0,
            vec![tol()],
            &[],
            vec![],
            vec![],
        ),
        (
            "alive: nothing",
            Reach::Alive,
            0,
            vec![tol()],
            &[],
            vec![],
            vec![],
        ),
    ];
    for (name, reach, fence_ms, pods, marked, evictions, not_ready) in cases {
        let alive = reach == Reach::Alive;
        let suspect = reach == Reach::Suspect;
        check(
            Case {
                name,
                node: node(&tainted(), down_conditions()),
                reach,
                fence_ms,
                heartbeat_age: None,
                pods,
                now: 0,
                marked,
            },
            Outcome {
                // Coming back clears the taints and conditions this controller set.
                taints: alive.then(Vec::new),
                conditions: alive.then(|| {
                    strings(&[
                        "Ready=True/KubeletReady",
                        "GossipReachable=True/MemberAlive",
                    ])
                }),
                evictions: strings(&evictions),
                not_ready: strings(&not_ready),
                recheck_secs: (fence_ms > 0 && !alive && !suspect && evictions.is_empty())
                    .then_some(3),
            },
        );
    }
}

#[test]
fn not_ready_changes_only_the_ready_status_and_its_transition_time() {
    let p = reported(pod("tol", "BestEffort", "", tolerates_forever()), "True");
    let n = node(&tainted(), down_conditions());
    let view = NodeView {
        node: &n,
        reach: down(0),
        fence_timeout_ms: 0,
        heartbeat_age: None,
        marked_not_ready: &NONE_MARKED,
    };
    let d = decide(&view, &[p], at(7));
    let marked = &d.not_ready[0];
    assert_eq!(
        (marked.namespace.as_str(), marked.uid.as_str()),
        ("ns", "tol-uid")
    );
    assert_eq!(
        marked.ready,
        serde_json::from_value::<PodCondition>(json!({
            "type": "Ready", "status": "False", "reason": "R", "message": "m",
            "lastTransitionTime": at(7).to_string(),
        }))
        .unwrap()
    );
}
