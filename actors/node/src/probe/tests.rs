use super::*;
use serde_json::json;

fn container(v: serde_json::Value) -> Container {
    serde_json::from_value(v).unwrap()
}

#[test]
fn thresholds_and_startup_gating() {
    let t0 = Instant::now();
    let c = container(json!({"name": "c",
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 2},
        "livenessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2},
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3, "successThreshold": 2}}));
    let mut t = ProbeTracker::new(&c, ContainerId("x".into()), t0).unwrap();
    assert!(!t.started());
    assert_eq!(t.ready(), Some(false));
    assert_eq!(t.due(t0), vec![ProbeKind::Startup]);
    // Startup fails once (threshold 2: not yet failed), then passes.
    let s = t.state_mut(ProbeKind::Startup).unwrap();
    assert!(!s.observe(false, t0));
    assert!(!s.failed_now());
    assert!(s.observe(true, t0 + Duration::from_secs(1)));
    assert!(t.started());
    // Liveness waits for its initial delay; readiness is due at once.
    assert_eq!(
        t.due(t0 + Duration::from_secs(1)),
        vec![ProbeKind::Readiness]
    );
    assert_eq!(
        t.due(t0 + Duration::from_secs(5)),
        vec![ProbeKind::Liveness, ProbeKind::Readiness]
    );
    // Readiness needs two successes in a row.
    let r = t.state_mut(ProbeKind::Readiness).unwrap();
    assert!(!r.observe(true, t0));
    assert!(r.observe(true, t0));
    assert_eq!(t.ready(), Some(true));
    // Liveness fails after two failures in a row, once.
    let l = t.state_mut(ProbeKind::Liveness).unwrap();
    assert!(!l.observe(false, t0));
    assert!(l.observe(false, t0));
    assert!(l.failed_now());
    assert!(!l.observe(false, t0));
    assert!(!l.failed_now());
    assert_eq!(l.next_due, t0 + Duration::from_secs(2));
}

#[test]
fn no_probes_no_tracker_and_ports() {
    let c = container(json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}));
    assert!(ProbeTracker::new(&c, ContainerId("x".into()), Instant::now()).is_none());
    assert_eq!(
        resolve_port(&IntOrString::String("http".into()), &c),
        Some(8080)
    );
    assert_eq!(resolve_port(&IntOrString::Int(81), &c), Some(81));
    assert_eq!(resolve_port(&IntOrString::String("nope".into()), &c), None);
}

#[tokio::test]
async fn http_and_tcp_against_loopback() {
    use crate::hollow::HollowRuntime;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let code = if n == 0 {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            n += 1;
            let _ = s
                .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    let rt = HollowRuntime::seeded(Default::default(), 1);
    let spec = container(json!({"name": "c"}));
    let id = ContainerId("x".into());
    let target = Target {
        runtime: &rt,
        id: &id,
        spec: &spec,
        pod_ip: "127.0.0.1",
        scripted_network: false,
    };
    let probe: Probe =
        serde_json::from_value(json!({"httpGet": {"path": "/healthz", "port": port}})).unwrap();
    assert_eq!(
        run_probe(&target, &probe, Duration::from_secs(5)).await,
        Ok(())
    );
    let err = run_probe(&target, &probe, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.contains("503"), "{err}");
    let tcp: Probe = serde_json::from_value(json!({"tcpSocket": {"port": port}})).unwrap();
    assert_eq!(
        run_probe(&target, &tcp, Duration::from_secs(5)).await,
        Ok(())
    );
}
