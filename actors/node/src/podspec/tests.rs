use super::*;
use serde_json::json;

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn facts() -> PodFacts {
    PodFacts {
        pod_ip: "10.244.0.5".into(),
        host_ip: "192.0.2.1".into(),
        node_cpu_millis: 4000,
        node_memory_bytes: 8 << 30,
        node_ephemeral_bytes: 100 << 30,
    }
}

fn sources() -> EnvSources {
    let mut s = EnvSources::default();
    s.config_maps.insert(
        "cfg".into(),
        Some([("color".to_string(), "blue".to_string())].into()),
    );
    s.config_maps.insert("gone".into(), None);
    s.secrets.insert(
        "sec".into(),
        Some([("password".to_string(), b"hunter2".to_vec())].into()),
    );
    s
}

fn env_of(container: serde_json::Value) -> Result<Vec<(String, String)>, ConfigError> {
    let p = pod(json!({
        "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                     "labels": {"app": "web"}, "annotations": {"team": "a"}},
        "spec": {"nodeName": "n1", "containers": [container.clone()]}
    }));
    let c: Container = serde_json::from_value(container).unwrap();
    resolve_env(&p, &c, &facts(), &sources())
}

#[test]
fn env_value_from_table() {
    let cases = [
        (
            json!({"configMapKeyRef": {"name": "cfg", "key": "color"}}),
            Some("blue"),
        ),
        (
            json!({"secretKeyRef": {"name": "sec", "key": "password"}}),
            Some("hunter2"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "metadata.name"}}),
            Some("web"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "metadata.namespace"}}),
            Some("prod"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "metadata.uid"}}),
            Some("u-1"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "metadata.labels['app']"}}),
            Some("web"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "metadata.annotations['team']"}}),
            Some("a"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "spec.nodeName"}}),
            Some("n1"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "spec.serviceAccountName"}}),
            Some("default"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "status.podIP"}}),
            Some("10.244.0.5"),
        ),
        (
            json!({"fieldRef": {"fieldPath": "status.hostIP"}}),
            Some("192.0.2.1"),
        ),
        (
            json!({"resourceFieldRef": {"resource": "limits.cpu"}}),
            Some("4"),
        ),
        (
            json!({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}),
            Some("8192"),
        ),
        (
            json!({"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}),
            None,
        ),
        (
            json!({"configMapKeyRef": {"name": "gone", "key": "x", "optional": true}}),
            None,
        ),
    ];
    for (from, want) in cases {
        let env = env_of(json!({"name": "c", "env": [{"name": "X", "valueFrom": from.clone()}]}))
            .unwrap_or_else(|e| panic!("{from}: {e}"));
        let got = env.iter().find(|(k, _)| k == "X").map(|(_, v)| v.as_str());
        assert_eq!(got, want, "{from}");
    }
}

#[test]
fn env_missing_references_are_config_errors() {
    let cases = [
        (
            json!({"configMapKeyRef": {"name": "cfg", "key": "nope"}}),
            "couldn't find key nope in ConfigMap prod/cfg",
        ),
        (
            json!({"configMapKeyRef": {"name": "gone", "key": "x"}}),
            "configmap \"gone\" not found",
        ),
        (
            json!({"secretKeyRef": {"name": "sec", "key": "user"}}),
            "couldn't find key user in Secret prod/sec",
        ),
        (
            json!({"secretKeyRef": {"name": "other", "key": "user"}}),
            "secret \"other\" not found",
        ),
    ];
    for (from, want) in cases {
        let err =
            env_of(json!({"name": "c", "env": [{"name": "X", "valueFrom": from}]})).unwrap_err();
        assert_eq!(err.0, want);
    }
}

#[test]
fn env_from_and_expansion() {
    let env = env_of(json!({"name": "c",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}}],
        "env": [{"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-$(CM_color)-$(MISSING)-$$(A)"}],
        "command": ["echo", "$(B)"], "args": ["$(password)"]}))
    .unwrap();
    assert_eq!(
        env,
        vec![
            ("CM_color".into(), "blue".into()),
            ("password".into(), "hunter2".into()),
            ("A".into(), "a".into()),
            ("B".into(), "a-blue-$(MISSING)-$(A)".into()),
        ]
    );
    let c: Container = serde_json::from_value(
        json!({"name": "c", "command": ["echo", "$(B)"], "args": ["$(password)"]}),
    )
    .unwrap();
    let (cmd, args) = expand_command(&c, &env);
    assert_eq!(cmd, vec!["echo", "a-blue-$(MISSING)-$(A)"]);
    assert_eq!(args, vec!["hunter2"]);
}

#[test]
fn qos_resources_and_cgroups() {
    let spec = |containers: serde_json::Value| -> PodSpec {
        serde_json::from_value(json!({"containers": containers})).unwrap()
    };
    let guaranteed =
        spec(json!([{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]));
    let burstable =
        spec(json!([{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}]));
    let best = spec(json!([{"name": "a"}]));
    assert_eq!(qos_class(&guaranteed), QosClass::Guaranteed);
    assert_eq!(qos_class(&burstable), QosClass::Burstable);
    assert_eq!(qos_class(&best), QosClass::BestEffort);
    assert_eq!(
        cgroup_parent("/kubepods", QosClass::Guaranteed, "u"),
        "/kubepods/podu"
    );
    assert_eq!(
        cgroup_parent("/kubepods", QosClass::Burstable, "u"),
        "/kubepods/burstable/podu"
    );
    assert_eq!(
        cgroup_parent("/kubepods", QosClass::BestEffort, "u"),
        "/kubepods/besteffort/podu"
    );
    assert_eq!(
        cgroup_parent("/drover-test/kubepods/", QosClass::Guaranteed, "u"),
        "/drover-test/kubepods/podu"
    );
    let cap = 4u64 << 30;
    let r = resources(&guaranteed.containers[0], QosClass::Guaranteed, cap);
    assert_eq!(
        r,
        Resources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_bytes: 128 << 20,
            oom_score_adj: -997
        }
    );
    let r = resources(&burstable.containers[0], QosClass::Burstable, cap);
    assert_eq!(
        r,
        Resources {
            cpu_shares: 256,
            cpu_quota: 0,
            cpu_period: 0,
            memory_limit_bytes: 0,
            oom_score_adj: 750
        }
    );
    let r = resources(&best.containers[0], QosClass::BestEffort, cap);
    assert_eq!(r.cpu_shares, 2);
    assert_eq!(r.oom_score_adj, 1000);
    // Burstable clamps: tiny request -> 999, huge request -> 3.
    assert_eq!(oom_score_adj(QosClass::Burstable, 1, cap), 999);
    assert_eq!(oom_score_adj(QosClass::Burstable, cap as i64, cap), 3);
    // A 1m limit still gets the minimum quota.
    let tiny = spec(json!([{"name": "a", "resources": {"limits": {"cpu": "1m"}}}]));
    assert_eq!(
        resources(&tiny.containers[0], QosClass::Burstable, cap).cpu_quota,
        1000
    );
}

#[test]
fn ports_dns_and_pull_policy() {
    let p = pod(
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}
        ]}}),
    );
    let spec = p.spec.clone().unwrap();
    assert_eq!(
        port_mappings(&spec),
        vec![PortMapping {
            protocol: "TCP".into(),
            container_port: 80,
            host_port: 8080,
            host_ip: String::new()
        }]
    );
    assert_eq!(dns_config(&p, &[]), None);
    let dns = dns_config(&p, &["10.96.0.10".into()]).unwrap();
    assert_eq!(dns.servers, vec!["10.96.0.10"]);
    assert_eq!(
        dns.searches,
        vec!["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    );
    assert_eq!(dns.options, vec!["ndots:5"]);
    let c = |v: serde_json::Value| -> Container { serde_json::from_value(v).unwrap() };
    assert_eq!(
        pull_policy(&c(json!({"name": "a", "image": "nginx"}))),
        "Always"
    );
    assert_eq!(
        pull_policy(&c(json!({"name": "a", "image": "nginx:latest"}))),
        "Always"
    );
    assert_eq!(
        pull_policy(&c(
            json!({"name": "a", "image": "localhost:5000/nginx:1.2"})
        )),
        "IfNotPresent"
    );
    assert_eq!(
        pull_policy(&c(json!({"name": "a", "image": "localhost:5000/nginx"}))),
        "Always"
    );
    assert_eq!(
        pull_policy(&c(
            json!({"name": "a", "image": "x", "imagePullPolicy": "Never"})
        )),
        "Never"
    );
}

#[test]
fn expansion_edge_cases() {
    let vars = |n: &str| (n == "A").then(|| "1".to_string());
    for (input, want) in [
        ("$(A)", "1"),
        ("$$", "$"),
        ("$(A", "$(A"),
        ("x$", "x$"),
        ("é$(A)é", "é1é"),
        ("$(B)", "$(B)"),
    ] {
        assert_eq!(expand(input, &vars), want, "{input}");
    }
}
