use super::*;
use crate::runtime::{ContainerId, SandboxConfig, SandboxId};
use jiff::Timestamp;

fn sandbox(id: &str, ns: &str, name: &str, ready: bool) -> SandboxInfo {
    SandboxInfo {
        id: SandboxId(id.into()),
        ip: "10.244.0.2".into(),
        state: if ready {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        config: SandboxConfig {
            pod_uid: format!("uid-{name}"),
            namespace: ns.into(),
            name: name.into(),
            ..SandboxConfig::default()
        },
        created_at: Timestamp::UNIX_EPOCH,
    }
}

fn container(
    sandbox: &str,
    name: &str,
    state: ContainerState,
    cpu: u64,
) -> (ContainerStatus, ContainerStats) {
    (
        ContainerStatus {
            id: ContainerId(format!("{sandbox}-{name}")),
            sandbox_id: SandboxId(sandbox.into()),
            name: name.into(),
            image: "busybox".into(),
            state,
            exit_code: None,
            reason: None,
            message: None,
            attempt: 0,
            created_at: Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            log_path: None,
        },
        ContainerStats {
            cpu_millis: cpu,
            memory_bytes: cpu * 1000,
        },
    )
}

/// Expected: (namespace/name, [(container, cpu)]) per pod, and the node's cpu.
fn check(
    sandboxes: Vec<SandboxInfo>,
    containers: Vec<(ContainerStatus, ContainerStats)>,
    expected_pods: &[(&str, &[(&str, u64)])],
    expected_node_cpu: u64,
) {
    let report = build_report("n1", 7, Duration::from_secs(15), &sandboxes, &containers);
    let got: Vec<(String, Vec<(String, u64)>)> = report
        .pods
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p.namespace, p.name),
                p.containers
                    .iter()
                    .map(|c| (c.name.clone(), c.usage.cpu_millis))
                    .collect(),
            )
        })
        .collect();
    let want: Vec<(String, Vec<(String, u64)>)> = expected_pods
        .iter()
        .map(|(k, cs)| {
            (
                k.to_string(),
                cs.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(report.node_usage.cpu_millis, expected_node_cpu);
    assert_eq!(report.window_ms, 15_000);
    assert_eq!(report.timestamp_ms, 7);
}

#[test]
fn containers_group_by_pod_and_sum_into_the_node() {
    check(
        vec![sandbox("s1", "d", "b", true), sandbox("s2", "d", "a", true)],
        vec![
            container("s1", "web", ContainerState::Running, 100),
            container("s1", "side", ContainerState::Running, 5),
            container("s2", "web", ContainerState::Running, 50),
        ],
        &[
            ("d/a", &[("web", 50)]),
            ("d/b", &[("web", 100), ("side", 5)]),
        ],
        155,
    );
}

#[test]
fn stopped_containers_and_sandboxes_and_orphans_are_left_out() {
    check(
        vec![
            sandbox("s1", "d", "a", true),
            sandbox("s2", "d", "gone", false),
        ],
        vec![
            container("s1", "web", ContainerState::Running, 100),
            container("s1", "init", ContainerState::Exited, 900),
            container("s2", "web", ContainerState::Running, 70),
            container("s9", "web", ContainerState::Running, 70),
        ],
        &[("d/a", &[("web", 100)])],
        100,
    );
}
