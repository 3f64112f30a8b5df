use super::*;

fn fixed_clock() -> Clock {
    let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    Arc::new(move || t)
}

fn runtime(config: HollowConfig, seed: u64) -> HollowRuntime {
    HollowRuntime::with_clock(config, StdRng::seed_from_u64(seed), fixed_clock())
}

fn sandbox_config(name: &str) -> SandboxConfig {
    SandboxConfig {
        pod_uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        hostname: name.into(),
        ..Default::default()
    }
}

fn container(name: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: "busybox".into(),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn sandbox_and_container_lifecycle() {
    let rt = runtime(HollowConfig::default(), 1);
    assert!(matches!(
        rt.run_sandbox(&sandbox_config("a")).await,
        Err(RuntimeError::Invalid(_))
    ));
    rt.update_pod_cidr("10.244.7.0/24").await.unwrap();
    let sb = rt.run_sandbox(&sandbox_config("a")).await.unwrap();
    assert_eq!(sb.ip, "10.244.7.2");
    let sb2 = rt.run_sandbox(&sandbox_config("b")).await.unwrap();
    assert_eq!(sb2.ip, "10.244.7.3");

    let c = rt
        .create_container(&sb.id, &container("web"))
        .await
        .unwrap();
    assert_eq!(
        rt.container_status(&c).await.unwrap().state,
        ContainerState::Created
    );
    rt.start_container(&c).await.unwrap();
    let status = rt.container_status(&c).await.unwrap();
    assert_eq!(status.state, ContainerState::Running);
    assert!(status.started_at.is_some());
    let stats = rt.container_stats(&c).await.unwrap();
    assert!(stats.cpu_millis > 0 && stats.memory_bytes > 0);
    assert_eq!(rt.list_containers(Some(&sb.id)).await.unwrap().len(), 1);
    assert_eq!(rt.list_containers(Some(&sb2.id)).await.unwrap().len(), 0);

    rt.stop_container(&c, Duration::from_secs(30))
        .await
        .unwrap();
    let status = rt.container_status(&c).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, Some(143))
    );
    // Idempotent stops and removals, as in CRI.
    rt.stop_container(&c, Duration::ZERO).await.unwrap();
    rt.stop_sandbox(&sb.id).await.unwrap();
    rt.stop_sandbox(&sb.id).await.unwrap();
    rt.remove_sandbox(&sb.id).await.unwrap();
    rt.remove_sandbox(&sb.id).await.unwrap();
    assert!(matches!(
        rt.container_status(&c).await,
        Err(RuntimeError::NotFound { .. })
    ));
    // The freed IP is handed out again.
    let sb3 = rt.run_sandbox(&sandbox_config("c")).await.unwrap();
    assert_eq!(sb3.ip, "10.244.7.2");
    assert_eq!(rt.list_sandboxes().await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn start_latency_follows_the_paused_clock() {
    let latency = Duration::from_secs(3);
    let rt = runtime(
        HollowConfig {
            start_latency: latency,
            ..Default::default()
        },
        1,
    );
    rt.update_pod_cidr("10.244.0.0/24").await.unwrap();
    let before = tokio::time::Instant::now();
    let sb = rt.run_sandbox(&sandbox_config("a")).await.unwrap();
    let c = rt
        .create_container(&sb.id, &container("web"))
        .await
        .unwrap();
    rt.start_container(&c).await.unwrap();
    // Virtual time: exact, not a wall-clock timing assertion.
    assert_eq!(before.elapsed(), 2 * latency);
}

#[tokio::test(start_paused = true)]
async fn failures_are_seeded_and_reproducible() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let rt = runtime(
            HollowConfig {
                failure_rate: 0.5,
                ..Default::default()
            },
            seed,
        );
        rt.update_pod_cidr("10.244.0.0/24").await.unwrap();
        let sb = rt.run_sandbox(&sandbox_config("a")).await.unwrap();
        let mut out = Vec::new();
        for i in 0..32 {
            let c = rt
                .create_container(&sb.id, &container(&format!("c{i}")))
                .await
                .unwrap();
            let ok = rt.start_container(&c).await.is_ok();
            if !ok {
                let s = rt.container_status(&c).await.unwrap();
                assert_eq!(s.reason.as_deref(), Some("StartError"));
                assert_eq!(s.state, ContainerState::Exited);
            }
            out.push(ok);
        }
        out
    }
    let a = outcomes(42).await;
    assert_eq!(a, outcomes(42).await);
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
}

#[tokio::test(start_paused = true)]
async fn errors_for_bad_input() {
    let rt = runtime(HollowConfig::default(), 1);
    assert!(matches!(
        rt.update_pod_cidr("not a cidr").await,
        Err(RuntimeError::Invalid(_))
    ));
    rt.update_pod_cidr("10.0.0.0/30").await.unwrap();
    let sb = rt.run_sandbox(&sandbox_config("a")).await.unwrap();
    // A /30 has one pod IP (network, gateway and broadcast are skipped).
    let err = rt.run_sandbox(&sandbox_config("b")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::IpExhausted { .. }) && err.is_retryable());
    let missing = SandboxId("nope".into());
    assert!(matches!(
        rt.create_container(&missing, &container("x")).await,
        Err(RuntimeError::NotFound { .. })
    ));
    rt.stop_sandbox(&sb.id).await.unwrap();
    let err = rt
        .create_container(&sb.id, &container("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Invalid(_)) && !err.is_retryable());
}
