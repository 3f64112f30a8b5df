use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn identity() -> NodeIdentity {
    NodeIdentity {
        name: "n1".into(),
        zone: Some("z1".into()),
        arch: "amd64".into(),
        labels: BTreeMap::from([("kubernetes.io/os".into(), "plan9".into())]),
        address: "127.0.0.1".into(),
        taints: Vec::new(),
    }
}

fn capacity() -> Capacity {
    Capacity {
        cpu_millis: 4000,
        memory_bytes: 8 * 1024 * 1024 * 1024,
        ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
        pods: DEFAULT_MAX_PODS,
    }
}

fn version() -> runtime::RuntimeVersion {
    runtime::RuntimeVersion {
        name: "hollow".into(),
        version: "0.1.0".into(),
    }
}

#[test]
fn meminfo_parsing() {
    for (text, want) in [
        (
            "MemTotal:       16314128 kB\nMemFree: 1 kB\n",
            Some(16314128 * 1024),
        ),
        ("MemFree: 1 kB\n", None),
        ("MemTotal: lots kB\n", None),
        ("MemTotal: 5 MB\n", None),
    ] {
        assert_eq!(parse_meminfo_total(text), want, "{text}");
    }
}

#[test]
fn quantities_look_like_kubelets() {
    let q = capacity().to_quantities();
    assert_eq!(q["cpu"].0, "4");
    assert_eq!(q["memory"].0, "8388608Ki");
    assert_eq!(q["pods"].0, "110");
    let odd = Capacity {
        cpu_millis: 1500,
        memory_bytes: 1000,
        ..capacity()
    };
    assert_eq!(odd.to_quantities()["cpu"].0, "1500m");
    assert_eq!(odd.to_quantities()["memory"].0, "1000");
}

#[test]
fn machine_capacity_reads_this_machine() {
    let cap = machine_capacity(Path::new("/")).unwrap();
    assert!(cap.cpu_millis >= 1000 && cap.memory_bytes > 0 && cap.ephemeral_storage_bytes > 0);
}

#[test]
fn node_object_has_labels_cidr_conditions_and_info() {
    let now = t("2026-01-01T00:00:00Z");
    let node = build_node(
        &identity(),
        &capacity(),
        &version(),
        "10.244.3.0/24",
        None,
        now,
    );
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    assert_eq!(labels["kubernetes.io/os"], "linux", "well-known labels win");
    assert_eq!(labels["topology.kubernetes.io/zone"], "z1");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(
        node.spec.as_ref().unwrap().pod_cidr.as_deref(),
        Some("10.244.3.0/24")
    );
    let status = node.status.clone().unwrap();
    assert_eq!(
        status.node_info.unwrap().container_runtime_version,
        "hollow://0.1.0"
    );
    let conditions = status.conditions.unwrap();
    let types: Vec<(&str, &str)> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("Ready", "True"),
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False")
        ]
    );
    // A later refresh moves heartbeats, not transitions.
    let later = t("2026-01-01T00:01:00Z");
    let again = build_node(
        &identity(),
        &capacity(),
        &version(),
        "10.244.3.0/24",
        Some(&node),
        later,
    );
    let ready = &again.status.unwrap().conditions.unwrap()[0];
    assert_eq!(ready.last_heartbeat_time, Some(Time(later)));
    assert_eq!(ready.last_transition_time, Some(Time(now)));
}

#[test]
fn refresh_keeps_conditions_others_own() {
    let now = t("2026-01-01T00:00:00Z");
    let mut node = build_node(
        &identity(),
        &capacity(),
        &version(),
        "10.244.3.0/24",
        None,
        now,
    );
    let gossip = NodeCondition {
        type_: "GossipReachable".into(),
        status: "True".into(),
        reason: Some("MemberAlive".into()),
        ..Default::default()
    };
    node.status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()
        .push(gossip.clone());
    let again = build_node(
        &identity(),
        &capacity(),
        &version(),
        "10.244.3.0/24",
        Some(&node),
        t("2026-01-01T00:01:00Z"),
    );
    let conditions = again.status.unwrap().conditions.unwrap();
    assert_eq!(conditions.len(), 5);
    assert_eq!(conditions[4], gossip);
}

#[test]
fn registration_taints_apply_once() {
    let now = t("2026-01-01T00:00:00Z");
    let taint = k8s_openapi::api::core::v1::Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    let id = NodeIdentity {
        taints: vec![taint.clone()],
        ..identity()
    };
    let first = build_node(&id, &capacity(), &version(), "10.244.3.0/24", None, now);
    assert_eq!(first.spec.as_ref().unwrap().taints, Some(vec![taint]));
    // Someone (an admin, the node lifecycle controller) changed them: a refresh keeps theirs.
    let mut edited = first.clone();
    edited.spec.as_mut().unwrap().taints = None;
    let again = build_node(
        &id,
        &capacity(),
        &version(),
        "10.244.3.0/24",
        Some(&edited),
        now,
    );
    assert_eq!(again.spec.unwrap().taints, None);
}

#[test]
fn pod_status_of_running_and_pending_containers() {
    let now = t("2026-01-01T00:00:00Z");
    let running = runtime::ContainerStatus {
        id: runtime::ContainerId("c1".into()),
        sandbox_id: runtime::SandboxId("s1".into()),
        name: "web".into(),
        image: "busybox".into(),
        state: runtime::ContainerState::Running,
        exit_code: None,
        reason: None,
        message: None,
        attempt: 0,
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        log_path: None,
    };
    let observed = [ObservedContainer {
        name: "web".into(),
        image: "busybox".into(),
        status: Some(running.clone()),
        last: None,
        backoff: false,
        runtime_name: "hollow".into(),
        ..Default::default()
    }];
    let s = pod_status(
        None,
        "Always",
        "127.0.0.1",
        "10.244.0.2",
        now,
        &observed,
        now,
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.2"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready && cs.started == Some(true));
    assert_eq!(cs.container_id.as_deref(), Some("hollow://c1"));
    assert!(cs.state.as_ref().unwrap().running.is_some());
    let conds: Vec<(&str, &str)> = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        conds,
        [
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("ContainersReady", "True"),
            ("Ready", "True"),
            ("PodScheduled", "True"),
        ]
    );
    // Same observation later: identical status (no write needed).
    let later = t("2026-01-01T00:05:00Z");
    assert_eq!(
        pod_status(
            Some(&s),
            "Always",
            "127.0.0.1",
            "10.244.0.2",
            now,
            &observed,
            later
        ),
        s
    );

    let pending = [ObservedContainer {
        status: None,
        ..observed[0].clone()
    }];
    let p = pod_status(
        None,
        "Always",
        "127.0.0.1",
        "10.244.0.2",
        now,
        &pending,
        now,
    );
    assert_eq!(p.phase.as_deref(), Some("Pending"));
    let failed = [ObservedContainer {
        status: Some(runtime::ContainerStatus {
            state: runtime::ContainerState::Exited,
            exit_code: Some(128),
            reason: Some("StartError".into()),
            started_at: None,
            ..running
        }),
        ..observed[0].clone()
    }];
    for (policy, want) in [
        ("Never", "Failed"),
        ("OnFailure", "Pending"),
        ("Always", "Pending"),
    ] {
        let f = pod_status(None, policy, "127.0.0.1", "10.244.0.2", now, &failed, now);
        assert_eq!(f.phase.as_deref(), Some(want), "{policy}");
    }
}

#[test]
fn lease_names_the_node() {
    let now = t("2026-01-01T00:00:00Z");
    let l = node_lease("n1", Some("u1"), 40, now);
    assert_eq!(l.metadata.namespace.as_deref(), Some(NODE_LEASE_NAMESPACE));
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(spec.renew_time, Some(MicroTime(now)));
    assert_eq!(l.metadata.owner_references.unwrap()[0].uid, "u1");
}

#[test]
fn restart_policy_and_backoff() {
    for (policy, code, want) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 137, true),
        ("Never", 1, false),
        ("", 1, true),
    ] {
        assert_eq!(should_restart(policy, code), want, "{policy} {code}");
    }
    let base = std::time::Duration::from_secs(10);
    let max = std::time::Duration::from_secs(300);
    let delays: Vec<u64> = (0..8)
        .map(|n| restart_backoff(n, base, max).as_secs())
        .collect();
    assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(restart_backoff(u32::MAX, base, max), max);
}

#[test]
fn crash_loop_status() {
    let now = t("2026-01-01T00:00:00Z");
    let exited = runtime::ContainerStatus {
        id: runtime::ContainerId("c1".into()),
        sandbox_id: runtime::SandboxId("s1".into()),
        name: "web".into(),
        image: "busybox".into(),
        state: runtime::ContainerState::Exited,
        exit_code: Some(1),
        reason: Some("Error".into()),
        message: None,
        attempt: 2,
        created_at: now,
        started_at: Some(now),
        finished_at: Some(now),
        log_path: None,
    };
    let c = ObservedContainer {
        name: "web".into(),
        image: "busybox".into(),
        status: Some(exited),
        last: None,
        backoff: true,
        runtime_name: "hollow".into(),
        ..Default::default()
    };
    let s = container_status(&c);
    assert_eq!(s.restart_count, 2);
    let waiting = s.state.unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 1);
    let p = pod_status(None, "Always", "127.0.0.1", "10.244.0.2", now, &[c], now);
    assert_eq!(p.phase.as_deref(), Some("Running"), "it ran before");
}

#[test]
fn pod_status_view_init_sidecars_waiting_and_probes() {
    let now = t("2026-01-01T00:00:00Z");
    let running = runtime::ContainerStatus {
        id: runtime::ContainerId("c1".into()),
        sandbox_id: runtime::SandboxId("s1".into()),
        name: "web".into(),
        image: "busybox".into(),
        state: runtime::ContainerState::Running,
        exit_code: None,
        reason: None,
        message: None,
        attempt: 0,
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        log_path: None,
    };
    let exited = runtime::ContainerStatus {
        state: runtime::ContainerState::Exited,
        exit_code: Some(1),
        reason: Some("Error".into()),
        finished_at: Some(now),
        ..running.clone()
    };
    let obs = |status: Option<&runtime::ContainerStatus>| ObservedContainer {
        name: "x".into(),
        image: "busybox".into(),
        status: status.cloned(),
        runtime_name: "hollow".into(),
        ..Default::default()
    };
    let view = |init: &'static [ObservedContainer],
                containers: &'static [ObservedContainer],
                initialized: bool,
                init_failed: bool| PodView {
        restart_policy: "Always",
        host_ip: "127.0.0.1",
        pod_ip: "10.244.0.2",
        start_time: now,
        init,
        containers,
        initialized,
        init_failed,
        sandbox_ready: true,
        qos_class: Some("BestEffort"),
    };
    let leak = |v: Vec<ObservedContainer>| -> &'static [ObservedContainer] { Vec::leak(v) };
    let waiting = ObservedContainer {
        waiting: Some(("PodInitializing".into(), String::new())),
        ..obs(None)
    };
    // Still initialising: Pending, Initialized False, waiting reason shown.
    let s = pod_status_view(
        None,
        &view(
            leak(vec![obs(Some(&exited))]),
            leak(vec![waiting.clone()]),
            false,
            false,
        ),
        now,
    );
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    let cond = |s: &PodStatus, ty: &str| {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == ty)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(cond(&s, "Initialized"), "False");
    assert_eq!(cond(&s, "PodReadyToStartContainers"), "True");
    let main = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        main.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(s.init_container_statuses.as_ref().unwrap().len(), 1);
    // A failed init container under restartPolicy Never: Failed.
    let s = pod_status_view(
        None,
        &view(
            leak(vec![obs(Some(&exited))]),
            leak(vec![waiting]),
            false,
            true,
        ),
        now,
    );
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    // Running, but the readiness probe says no: not Ready; a sidecar that is not ready
    // keeps the pod unready too.
    let unready = ObservedContainer {
        ready: Some(false),
        ..obs(Some(&running))
    };
    let s = pod_status_view(None, &view(&[], leak(vec![unready]), true, false), now);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Ready"), "False");
    assert!(!s.container_statuses.as_ref().unwrap()[0].ready);
    let sidecar = ObservedContainer {
        sidecar: true,
        started: Some(false),
        ..obs(Some(&running))
    };
    let s = pod_status_view(
        None,
        &view(
            leak(vec![sidecar]),
            leak(vec![obs(Some(&running))]),
            true,
            false,
        ),
        now,
    );
    assert_eq!(cond(&s, "Ready"), "False");
    assert_eq!(
        s.init_container_statuses.as_ref().unwrap()[0].started,
        Some(false)
    );
    // A waiting override (ErrImagePull) after an exit keeps the exit as lastState.
    let pulling = ObservedContainer {
        waiting: Some(("ErrImagePull".into(), "no such image".into())),
        ..obs(Some(&exited))
    };
    let cs = container_status(&pulling);
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ErrImagePull")
    );
    assert_eq!(cs.last_state.unwrap().terminated.unwrap().exit_code, 1);
}
