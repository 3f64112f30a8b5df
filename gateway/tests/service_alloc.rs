//! Service ClusterIP and NodePort allocation end to end, through kubectl against the real
//! gateway and store: dynamic and requested cluster IPs with Kubernetes' 422s, headless
//! services, concurrent creates, release on delete and on type change, node ports, and
//! the immutable cluster IP.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::Cluster;
use serde_json::Value;

fn svc_json(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.ok(&["get", "svc", name, "-o", "json"])).unwrap()
}

fn cluster_ip(c: &Cluster, name: &str) -> String {
    svc_json(c, name)["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn in_service_cidr(ip: &str) -> bool {
    let ip: Ipv4Addr = ip.parse().expect("an IPv4 cluster IP");
    u32::from(ip) & 0xfff0_0000 == u32::from(Ipv4Addr::new(10, 96, 0, 0))
}

fn service_yaml(name: &str, ty: &str, cluster_ip: &str, node_port: Option<u16>) -> String {
    let ip = if cluster_ip.is_empty() {
        String::new()
    } else {
        format!("  clusterIP: {cluster_ip}\n")
    };
    let np = node_port
        .map(|p| format!("    nodePort: {p}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n{ip}  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n{np}"
    )
}

/// Creates from YAML; returns (ok, stderr).
fn create(c: &Cluster, file: &str, yaml: &str) -> (bool, String) {
    let path = c.write(file, yaml);
    let (ok, _, err) = c.kubectl(&["create", "-f", &path]);
    (ok, err)
}

fn absent(c: &Cluster, name: &str) -> bool {
    let (ok, _, err) = c.kubectl(&["get", "svc", name]);
    !ok && err.contains("NotFound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ips_are_allocated_checked_and_freed() {
    let c = Cluster::start().await;
    c.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let web = svc_json(&c, "web");
    let ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(in_service_cidr(&ip), "{ip}");
    assert_eq!(web["spec"]["clusterIPs"], serde_json::json!([ip]));
    assert_eq!(web["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(web["spec"]["ipFamilyPolicy"], "SingleStack");
    let table = c.ok(&["get", "svc", "web"]);
    assert!(
        table.contains(&ip),
        "kubectl get svc shows the cluster IP:\n{table}"
    );

    // A create that loses to an existing name gives back what it claimed, and only that:
    // the existing Service keeps its IP.
    let (ok, err) = create(
        &c,
        "web2.yaml",
        &service_yaml("web", "ClusterIP", &ip, None),
    );
    assert!(!ok && err.contains("AlreadyExists"), "{err}");
    let (ok, err) = create(
        &c,
        "thief.yaml",
        &service_yaml("thief", "ClusterIP", &ip, None),
    );
    assert!(
        !ok && err.contains("provided IP is already allocated"),
        "{err}"
    );

    // Headless: no allocation.
    c.ok(&["create", "service", "clusterip", "hl", "--clusterip=None"]);
    assert_eq!(cluster_ip(&c, "hl"), "None");

    // A requested free IP is honoured (the DNS address sits in the static band, which
    // dynamic picks leave alone); a taken one and one outside the range are 422s and
    // create nothing.
    let (ok, err) = create(
        &c,
        "dns.yaml",
        &service_yaml("dns", "ClusterIP", "10.96.0.10", None),
    );
    assert!(ok, "{err}");
    assert_eq!(cluster_ip(&c, "dns"), "10.96.0.10");
    let (ok, err) = create(
        &c,
        "a.yaml",
        &service_yaml("a", "ClusterIP", "10.96.0.5", None),
    );
    assert!(ok, "{err}");
    let (ok, err) = create(
        &c,
        "b.yaml",
        &service_yaml("b", "ClusterIP", "10.96.0.5", None),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"Service "b" is invalid: spec.clusterIPs: Invalid value: "10.96.0.5": provided IP is already allocated"#),
        "{err}"
    );
    assert!(absent(&c, "b"));
    let (ok, err) = create(
        &c,
        "c.yaml",
        &service_yaml("c", "ClusterIP", "192.168.0.5", None),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"spec.clusterIPs: Invalid value: "192.168.0.5": provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"#),
        "{err}"
    );
    assert!(absent(&c, "c"));
    let (ok, err) = create(
        &c,
        "net.yaml",
        &service_yaml("net", "ClusterIP", "10.96.0.0", None),
    );
    assert!(
        !ok && err.contains("provided IP is not in the valid range"),
        "{err}"
    );

    // The cluster IP is immutable; an update that leaves it out keeps it.
    let (ok, _, err) = c.kubectl(&[
        "patch",
        "svc",
        "a",
        "--type=merge",
        "-p",
        r#"{"spec":{"clusterIP":"10.96.0.6"}}"#,
    ]);
    assert!(!ok);
    assert!(
        err.contains(r#"spec.clusterIP: Invalid value: "10.96.0.6": field is immutable"#),
        "{err}"
    );
    let mut replaced = svc_json(&c, "a");
    for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        replaced["spec"].as_object_mut().unwrap().remove(key);
    }
    replaced["metadata"]["labels"] = serde_json::json!({"tier": "front"});
    let path = c.write("a-replaced.json", &replaced.to_string());
    c.ok(&["replace", "-f", &path]);
    assert_eq!(cluster_ip(&c, "a"), "10.96.0.5");

    // Delete frees: the IP can be requested again.
    c.ok(&["delete", "svc", "a"]);
    let (ok, err) = create(
        &c,
        "b2.yaml",
        &service_yaml("b", "ClusterIP", "10.96.0.5", None),
    );
    assert!(ok, "the deleted service's IP is free again: {err}");
    assert_eq!(cluster_ip(&c, "b"), "10.96.0.5");

    // A type change to ExternalName gives the IP back.
    c.ok(&[
        "patch", "svc", "b", "--type=merge", "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"db.example.com","clusterIP":"","clusterIPs":null,"ipFamilies":null,"ipFamilyPolicy":null}}"#,
    ]);
    let (ok, err) = create(
        &c,
        "d.yaml",
        &service_yaml("d", "ClusterIP", "10.96.0.5", None),
    );
    assert!(
        ok,
        "the IP of a service turned ExternalName is free again: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_distinct_ips() {
    let c = Cluster::start().await;
    let names: Vec<String> = (0..20).map(|i| format!("svc-{i}")).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let c = &c;
                s.spawn(move || c.ok(&["create", "service", "clusterip", n, "--tcp=80:8080"]))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let list: Value = serde_json::from_str(&c.ok(&["get", "svc", "-o", "json"])).unwrap();
    let ips: BTreeSet<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metadata"]["name"].as_str().unwrap().starts_with("svc-"))
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 20, "20 services, 20 distinct IPs: {ips:?}");
    assert!(ips.iter().all(|ip| in_service_cidr(ip)), "{ips:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_are_allocated_checked_and_freed() {
    let c = Cluster::start().await;
    c.ok(&["create", "service", "nodeport", "auto", "--tcp=80:8080"]);
    let auto = svc_json(&c, "auto");
    let port = auto["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    assert!(in_service_cidr(auto["spec"]["clusterIP"].as_str().unwrap()));

    c.ok(&[
        "create",
        "service",
        "nodeport",
        "fixed",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    assert_eq!(svc_json(&c, "fixed")["spec"]["ports"][0]["nodePort"], 30080);
    let (ok, err) = create(
        &c,
        "taken.yaml",
        &service_yaml("taken", "NodePort", "", Some(30080)),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"Service "taken" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"#),
        "{err}"
    );
    assert!(absent(&c, "taken"));
    let (ok, err) = create(
        &c,
        "out.yaml",
        &service_yaml("out", "NodePort", "", Some(8080)),
    );
    assert!(!ok);
    assert!(
        err.contains("spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{err}"
    );
    // A LoadBalancer gets node ports too.
    c.ok(&["create", "service", "loadbalancer", "lb", "--tcp=443:8443"]);
    let lb_port = svc_json(&c, "lb")["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    assert!(
        (30000..=32767).contains(&lb_port) && lb_port != port,
        "{lb_port}"
    );

    // Turning the service into a ClusterIP one drops and frees its node port.
    c.ok(&[
        "patch",
        "svc",
        "fixed",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let fixed = svc_json(&c, "fixed");
    assert!(
        fixed["spec"]["ports"][0].get("nodePort").is_none(),
        "{fixed}"
    );
    let (ok, err) = create(
        &c,
        "taken2.yaml",
        &service_yaml("taken", "NodePort", "", Some(30080)),
    );
    assert!(ok, "the dropped node port is free again: {err}");

    // Delete frees.
    c.ok(&["delete", "svc", "taken"]);
    let (ok, err) = create(
        &c,
        "again.yaml",
        &service_yaml("again", "NodePort", "", Some(30080)),
    );
    assert!(ok, "the deleted service's node port is free again: {err}");
}
