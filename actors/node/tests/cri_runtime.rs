//! `CriRuntime` against real containerd, runc and CNI, call by call: the pod CIDR update,
//! a sandbox with DNS, ports, labels and a cgroup parent that re-lists with its full
//! config, a container with env, a mount, resources and working dir (checked from inside
//! with `exec_sync`), stats, log paths, image presence and pulls (a missing image is an
//! `ImagePull` error), a pull from a plain-HTTP registry, and teardown.
//!
//! Runs in fresh namespaces (see `common`); nothing leaves the test's netns.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{POD_CIDR, TestNode, block_on, wait_for};
use drover_node::cni::PodCidr;
use drover_node::runtime::{
    ContainerConfig, ContainerState, DnsConfig, Mount, PortMapping, Resources, Runtime,
    RuntimeError, SandboxConfig, SandboxState,
};
use drover_testkit::registry::TestRegistry;

const REGISTRY: &str = "127.0.0.1:5000";

/// Removes the sandbox's cgroup parent (`/drover-test/poduid-1`, in every hierarchy) once
/// the test is over, also when it fails: runc creates the parents and leaves them.
struct CgroupParentGuard;

impl Drop for CgroupParentGuard {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hierarchies.flatten() {
            let parent = h.path().join("drover-test");
            // Empty cgroups only (rmdir refuses others); children first.
            let _ = std::fs::remove_dir(parent.join("poduid-1"));
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

#[test]
fn cri_runtime_end_to_end() {
    if !drover_testkit::netns::enter("cri_runtime_end_to_end") {
        return;
    }
    // Dropped after everything in `scenario` (containerd included) has stopped.
    let _cgroups = CgroupParentGuard;
    block_on(scenario());
}

async fn scenario() {
    let node = TestNode::start_with(|c| c.insecure_registries = vec![REGISTRY.into()]).await;
    let rt = node.runtime.clone();
    let version = rt.version().await.unwrap();
    assert_eq!(version.name, "containerd");

    // Before a pod CIDR there is no network for sandboxes.
    let sandbox_config = SandboxConfig {
        pod_uid: "uid-1".into(),
        namespace: "default".into(),
        name: "probe".into(),
        hostname: "probe-host".into(),
        labels: BTreeMap::from([("app".into(), "probe".into())]),
        port_mappings: vec![PortMapping {
            protocol: "TCP".into(),
            container_port: 8080,
            host_port: 18080,
            host_ip: String::new(),
        }],
        dns: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        cgroup_parent: Some("/drover-test/poduid-1".into()),
        ..Default::default()
    };
    assert!(matches!(
        rt.run_sandbox(&sandbox_config).await,
        Err(RuntimeError::Invalid(_))
    ));
    assert!(matches!(
        rt.update_pod_cidr("10.244.0.1/24").await,
        Err(RuntimeError::Invalid(_))
    ));
    rt.update_pod_cidr(POD_CIDR).await.unwrap();

    // A missing image is an ImagePull error, never a panic; so is an unreachable
    // registry. Image presence is a plain false.
    assert!(!rt.image_present("localhost/absent:latest").await.unwrap());
    let err = rt.pull_image("localhost/absent:latest").await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImagePull { .. }), "{err:?}");
    assert!(err.is_retryable());
    let err = rt.pull_image("127.0.0.1:1/nothing:1").await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImagePull { .. }), "{err:?}");

    // A pull from a plain-HTTP registry on this netns's loopback, allowed by the host
    // config.
    let registry = TestRegistry::start(node.dir.path(), REGISTRY);
    let pushed = registry.push(
        &common::busybox_archive(node.dir.path()),
        "busybox",
        "pulled",
    );
    assert!(!rt.image_present(&pushed).await.unwrap());
    rt.pull_image(&pushed).await.unwrap();
    assert!(rt.image_present(&pushed).await.unwrap());

    let sandbox = rt.run_sandbox(&sandbox_config).await.unwrap();
    assert_eq!(sandbox.state, SandboxState::Ready);
    let ip: std::net::Ipv4Addr = sandbox.ip.parse().unwrap();
    assert!(PodCidr::parse(POD_CIDR).unwrap().contains(ip), "{ip}");
    // Re-listing gives back the whole config (what re-adoption relies on).
    let listed = rt.list_sandboxes().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].config, sandbox_config);
    assert_eq!(listed[0].ip, sandbox.ip);
    assert_eq!(listed[0].id, sandbox.id);

    // A container from the pulled image (create pulls only when absent; it is there).
    let volume = node.dir.path().join("vol");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("greeting"), "from-the-node").unwrap();
    let config = ContainerConfig {
        name: "main".into(),
        image: pushed.clone(),
        command: vec!["sh".into(), "-c".into()],
        args: vec!["echo started; exec sleep 3600".into()],
        env: vec![("GREETING".into(), "hello".into())],
        working_dir: Some("/tmp".into()),
        mounts: vec![Mount {
            host_path: volume.clone(),
            container_path: "/vol".into(),
            read_only: true,
        }],
        resources: Resources {
            cpu_shares: 256,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_bytes: 128 << 20,
            oom_score_adj: 900,
        },
        labels: BTreeMap::from([("drover.io/test".into(), "yes".into())]),
        ..Default::default()
    };
    let id = rt.create_container(&sandbox.id, &config).await.unwrap();
    let created = rt.container_status(&id).await.unwrap();
    assert_eq!(created.state, ContainerState::Created);
    rt.start_container(&id).await.unwrap();
    let status = wait_for("the container to run", || {
        let rt = rt.clone();
        let id = id.clone();
        async move {
            let s = rt.container_status(&id).await.unwrap();
            (s.state == ContainerState::Running).then_some(s)
        }
    })
    .await;
    assert_eq!(status.name, "main");
    assert_eq!(status.image, pushed);
    assert_eq!(status.sandbox_id, sandbox.id);
    assert_eq!(status.attempt, 0);
    assert!(status.started_at.is_some());
    let log_path = status.log_path.clone().unwrap();
    assert_eq!(
        log_path,
        node.paths
            .data_dir
            .join("pods/default_probe_uid-1/main/0.log")
    );
    wait_for("the container's log line", || {
        let log_path = log_path.clone();
        async move {
            std::fs::read_to_string(&log_path)
                .ok()
                .filter(|t| t.contains("stdout F started"))
        }
    })
    .await;

    // Inside: env, working dir, the read-only mount, hostname, DNS, limits.
    let exec = |script: &str| {
        let rt = rt.clone();
        let id = id.clone();
        let cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        async move {
            rt.exec_sync(&id, &cmd, Duration::from_secs(10))
                .await
                .unwrap()
        }
    };
    let out = exec("echo $GREETING $(pwd) $(cat /vol/greeting) $(hostname)").await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello /tmp from-the-node probe-host"
    );
    let out = exec("cat /etc/resolv.conf").await;
    let resolv = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    assert_ne!(
        exec("echo x > /vol/new").await.exit_code,
        0,
        "mount is read-only"
    );
    assert_eq!(exec("exit 3").await.exit_code, 3);
    let out = exec("cat /proc/self/oom_score_adj").await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "900");

    let stats = rt.container_stats(&id).await.unwrap();
    assert!(stats.memory_bytes > 0, "{stats:?}");
    let url = rt
        .exec(&drover_node::runtime::ExecRequest {
            container: id.clone(),
            command: vec!["sh".into()],
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let listed = rt.list_containers(Some(&sandbox.id)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    // Creating in a stopped sandbox is refused; teardown is idempotent.
    rt.stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    rt.stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    let stopped = rt.container_status(&id).await.unwrap();
    assert_eq!(stopped.state, ContainerState::Exited);
    assert!(stopped.exit_code.is_some() && stopped.reason.is_some());
    rt.stop_sandbox(&sandbox.id).await.unwrap();
    assert!(matches!(
        rt.create_container(&sandbox.id, &config).await,
        Err(RuntimeError::Invalid(_))
    ));
    rt.remove_container(&id).await.unwrap();
    rt.remove_container(&id).await.unwrap();
    assert!(matches!(
        rt.container_status(&id).await,
        Err(RuntimeError::NotFound { .. })
    ));
    rt.remove_sandbox(&sandbox.id).await.unwrap();
    rt.remove_sandbox(&sandbox.id).await.unwrap();
    assert!(rt.list_sandboxes().await.unwrap().is_empty());
    assert!(matches!(
        rt.stop_sandbox(&sandbox.id).await,
        Err(RuntimeError::NotFound { .. })
    ));

    // A container whose image cannot be pulled: ImagePull from create_container.
    let sandbox = rt.run_sandbox(&sandbox_config).await.unwrap();
    let missing = ContainerConfig {
        name: "missing".into(),
        image: "localhost/absent:latest".into(),
        ..Default::default()
    };
    let err = rt
        .create_container(&sandbox.id, &missing)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ImagePull { .. }), "{err:?}");
    rt.stop_sandbox(&sandbox.id).await.unwrap();
    rt.remove_sandbox(&sandbox.id).await.unwrap();
    drop(registry);
    node.host.unwrap().stop().await;
}
