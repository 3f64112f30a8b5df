//! OpenAPI v2/v3 against real clients: kubectl's default (strict) validation, which reads
//! `/openapi/v3` to learn that the server takes `fieldValidation`, `kubectl explain`, and the
//! caching and content negotiation of the raw endpoints (curl).

mod common;

use std::process::Command;

use common::Cluster;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: web\n    image: busybox:1\n";

/// Raw HTTPS request; returns the status code, the response headers (lower-cased names)
/// and the body.
fn raw(c: &Cluster, token: Option<&str>, path: &str, headers: &[&str]) -> (u16, String, String) {
    let ca = c.dir.path().join("pki").join("ca.crt");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "--cacert"])
        .arg(&ca)
        .arg(format!("https://127.0.0.1:{}{path}", c.port()));
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_validates_through_the_server_and_explains_from_openapi_v3() {
    let c = Cluster::start().await;

    // Default validation (strict): kubectl finds fieldValidation on the pod's PATCH
    // operation in /openapi/v3/api/v1 and lets the server validate.
    let pod = c.write("pod.yaml", POD);
    let (ok, out, log) = c.kubectl(&["create", "-f", &pod, "-v=6"]);
    assert!(ok, "{out}\n{log}");
    assert!(out.contains("pod/web created"), "{out}");
    assert!(log.contains("/openapi/v3"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("POST")
            && l.contains("/pods?")
            && l.contains("fieldValidation=Strict")),
        "{log}"
    );

    // An unknown field is not rejected client-side: the server decides (Strict).
    let typo = c.write(
        "typo.yaml",
        &POD.replace("name: web\n  labels", "name: typo\n  labels")
            .replace(
                "image: busybox:1\n",
                "image: busybox:1\n    imagePullPolcy: Always\n",
            ),
    );
    let (ok, out, log) = c.kubectl(&["create", "-f", &typo, "-v=6"]);
    assert!(!log.contains("error validating data"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("POST") && l.contains("fieldValidation=Strict")),
        "{log}"
    );
    assert!(
        !ok && log
            .contains("strict decoding error: unknown field \"spec.containers[0].imagePullPolcy\""),
        "kubectl's default (Strict) must be refused by the server:\n{out}\n{log}"
    );
    assert!(!c.kubectl(&["get", "pod", "typo"]).0, "nothing is written");
    // Warn (kubectl --validate=warn) stores the pod without the unknown field and warns.
    let (ok, out, err) = c.kubectl(&["create", "-f", &typo, "--validate=warn"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("unknown field \"spec.containers[0].imagePullPolcy\""),
        "{err}"
    );
    let stored = c.ok(&["get", "pod", "typo", "-o", "json"]);
    assert!(!stored.contains("imagePullPolcy"), "{stored}");

    // A `kind: List` manifest: kubectl validates its items itself, from /openapi/v2 (the
    // protobuf encoding), and reports unknown fields the way it does against Kubernetes.
    let list = c.write(
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: listed}\n  data: {greeting: hello}\n",
    );
    let (ok, out, log) = c.kubectl(&["create", "-f", &list, "-v=6"]);
    assert!(
        ok && out.contains("configmap/listed created"),
        "{out}\n{log}"
    );
    assert!(log.contains("/openapi/v2"), "{log}");
    let bad_list = c.write(
        "bad-list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: drover.io/v1\n  kind: TrafficSplit\n  metadata: {name: bad}\n  spec: {service: web, backends: [{service: a, weight: 1, wieght: 2}]}\n",
    );
    let (ok, _, err) = c.kubectl(&["create", "-f", &bad_list]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(r#"unknown field "wieght" in io.drover.v1.TrafficSplitBackend"#),
        "{err}"
    );

    // apply: create, then a patch (kubectl computes it from its built-in patch metadata).
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: api}\n  template:\n    metadata:\n      labels: {app: api}\n    spec:\n      containers:\n      - name: api\n        image: busybox:1\n      - name: sidecar\n        image: busybox:1\n";
    let f1 = c.write("deploy.yaml", deploy);
    assert!(
        c.ok(&["apply", "-f", &f1])
            .contains("deployment.apps/api created")
    );
    let f2 = c.write(
        "deploy2.yaml",
        &deploy
            .replace("replicas: 2", "replicas: 3")
            .replace("      - name: sidecar\n        image: busybox:1\n", ""),
    );
    let (ok, out, err) = c.kubectl(&["apply", "-f", &f2]);
    assert!(ok && out.contains("configured"), "{out}\n{err}");
    assert!(!err.contains("warning"), "{err}");
    let got: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "api", "-o", "json"])).unwrap();
    assert_eq!(got["spec"]["replicas"], 3);
    let containers = got["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(
        containers.len(),
        1,
        "apply removed the sidecar: {containers:?}"
    );

    // explain reads /openapi/v3.
    let containers = c.ok(&["explain", "pod.spec.containers"]);
    for want in [
        "KIND:       Pod",
        "VERSION:    v1",
        "FIELD: containers <[]Container>",
        "DESCRIPTION:",
        "FIELDS:",
        "image\t<string>",
        "imagePullPolicy\t<string>",
        "name\t<string> -required-",
    ] {
        assert!(containers.contains(want), "{want:?} missing:\n{containers}");
    }
    let replicas = c.ok(&["explain", "deployment.spec.replicas"]);
    assert!(replicas.contains("GROUP:      apps"), "{replicas}");
    assert!(replicas.contains("FIELD: replicas <integer>"), "{replicas}");
    let pod = c.ok(&["explain", "pods"]);
    assert!(pod.contains("metadata\t<ObjectMeta>\n"), "{pod}");

    // drover's own kind: create with default validation, explain, apply twice.
    let split = c.write(
        "split.yaml",
        "apiVersion: drover.io/v1\nkind: TrafficSplit\nmetadata:\n  name: canary\nspec:\n  service: web\n  backends:\n  - {service: web-v1, weight: 90}\n  - {service: web-v2, weight: 10}\n",
    );
    c.ok(&["create", "-f", &split]);
    let spec = c.ok(&["explain", "trafficsplits.spec"]);
    for want in [
        "GROUP:      drover.io",
        "KIND:       TrafficSplit",
        "FIELD: spec <TrafficSplitSpec>",
        "The root service and its weighted backends.",
        "backends\t<[]TrafficSplitBackend>",
        "service\t<string> -required-",
    ] {
        assert!(spec.contains(want), "{want:?} missing:\n{spec}");
    }
    let v2 = c.ok(&["explain", "ts.spec", "--output=plaintext-openapiv2"]);
    assert!(
        v2.contains("The root service and its weighted backends."),
        "{v2}"
    );
    let weight = c.ok(&["explain", "ts.spec.backends.weight"]);
    assert!(weight.contains("FIELD: weight <integer>"), "{weight}");
    assert!(weight.contains("out of rotation"), "{weight}");
    let split2 = c.write(
        "split2.yaml",
        "apiVersion: drover.io/v1\nkind: TrafficSplit\nmetadata:\n  name: canary\nspec:\n  service: web\n  backends:\n  - {service: web-v1, weight: 50}\n",
    );
    c.ok(&["apply", "-f", &split2]);
    let got: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "ts", "canary", "-o", "json"])).unwrap();
    assert_eq!(got["spec"]["backends"][0]["weight"], 50);

    // A bad split: a 422 Status whose causes name every bad field; nothing stored.
    let bad = c.write(
        "bad-split.yaml",
        "apiVersion: drover.io/v1\nkind: TrafficSplit\nmetadata:\n  name: bad\nspec:\n  service: Web\n  backends:\n  - {service: web-v1, weight: -1}\n  - {service: web-v1, weight: 1}\n",
    );
    let (ok, _, err) = c.kubectl(&["apply", "-f", &bad, "-v=6"]);
    assert!(!ok, "{err}");
    assert!(err.contains(" 422 "), "{err}");
    for want in [
        r#"The TrafficSplit "bad" is invalid"#,
        r#"spec.service: Invalid value: "Web""#,
        "spec.backends[0].weight: Invalid value: -1",
        r#"spec.backends[1].service: Duplicate value: "web-v1""#,
    ] {
        assert!(err.contains(want), "{want:?} missing:\n{err}");
    }
    let (ok, _, _) = c.kubectl(&["get", "ts", "bad"]);
    assert!(!ok, "the bad split was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_endpoints_negotiate_cache_and_authenticate() {
    let c = Cluster::start().await;
    let token = c.pki.admin_token.clone();
    let t = Some(token.as_str());

    let (code, _, _) = raw(&c, None, "/openapi/v3", &[]);
    assert_eq!(code, 401);
    let (code, _, _) = raw(&c, None, "/openapi/v2", &[]);
    assert_eq!(code, 401);

    // The index, and a group version through the URL it gives.
    let (code, head, body) = raw(&c, t, "/openapi/v3", &[]);
    assert_eq!(code, 200, "{head}");
    let index: serde_json::Value = serde_json::from_str(&body).unwrap();
    let url = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let hash = url.split_once("?hash=").unwrap().1.to_string();
    let (code, head, body) = raw(&c, t, &url, &["Accept: application/json"]);
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("cache-control: public, immutable"), "{head}");
    assert!(head.contains("expires: "), "{head}");
    assert!(
        head.contains(&format!("etag: \"{}\"", hash.to_ascii_lowercase())),
        "{head}"
    );
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());

    // Revalidation, an outdated hash, no hash, an unknown group version.
    let (code, _, body) = raw(&c, t, &url, &[&format!("If-None-Match: \"{hash}\"")]);
    assert_eq!((code, body.as_str()), (304, ""));
    let (code, head, _) = raw(&c, t, "/openapi/v3/api/v1?hash=OLD", &[]);
    assert_eq!(code, 301);
    assert!(
        head.contains(&format!("location: {}", url.to_ascii_lowercase())),
        "{head}"
    );
    let (code, head, _) = raw(&c, t, "/openapi/v3/api/v1", &[]);
    assert_eq!(code, 200);
    assert!(!head.contains("immutable"), "{head}");
    let (code, _, _) = raw(&c, t, "/openapi/v3/apis/nope/v1", &[]);
    assert_eq!(code, 404);

    // v2: JSON or protobuf as asked, 406 for anything else.
    let (code, head, body) = raw(&c, t, "/openapi/v2", &["Accept: application/json"]);
    assert_eq!(code, 200, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v2: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
    assert!(v2["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"].is_object());
    let protobuf = "Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    let (code, head, body) = raw(&c, t, "/openapi/v2", &[protobuf]);
    assert_eq!(code, 200, "{head}");
    assert!(
        head.contains("content-type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        "{head}"
    );
    assert!(body.contains("io.k8s.api.core.v1.Pod"));
    let (code, _, _) = raw(&c, t, "/openapi/v2", &["Accept: text/html"]);
    assert_eq!(code, 406);
    let (code, _, _) = raw(
        &c,
        t,
        "/openapi/v3/api/v1",
        &["Accept: application/com.github.proto-openapi.spec.v3@v1.0+protobuf"],
    );
    assert_eq!(code, 406);
}
