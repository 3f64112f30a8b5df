//! Server-side apply and managedFields against kubectl (`apply --server-side`,
//! `--force-conflicts`, `--show-managed-fields`) on a real store.

mod common;

use common::Cluster;
use serde_json::Value;

const DEPLOY_V1: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
";

/// The same Deployment with a new image and without the `tier` label.
const DEPLOY_V2: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
";

fn get_json(c: &Cluster, args: &[&str]) -> Value {
    serde_json::from_str(&c.ok(args)).unwrap()
}

/// The managedFields entry of `manager` with `operation`.
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply() {
    let c = Cluster::start().await;
    let v1 = c.write("deploy-v1.yaml", DEPLOY_V1);
    let v2 = c.write("deploy-v2.yaml", DEPLOY_V2);
    let ssa = |file: &str| {
        vec![
            "apply".to_owned(),
            "--server-side".to_owned(),
            "-f".to_owned(),
            file.to_owned(),
        ]
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        c.kubectl(&args)
    };

    // Apply creates the object; kubectl owns what it applied.
    let (ok, out, err) = run(&ssa(&v1));
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let yaml = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(yaml.contains("manager: kubectl"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    assert!(yaml.contains("k:{\"name\":\"nginx\"}"), "{yaml}");
    let hidden = c.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(!hidden.contains("managedFields"), "{hidden}");

    // Applying the edited manifest changes the image and drops the label kubectl no
    // longer applies.
    let (ok, out, err) = run(&ssa(&v2));
    assert!(ok, "{out}\n{err}");
    let obj = get_json(
        &c,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(obj["metadata"]["labels"], serde_json::json!({"app": "web"}));
    let applied = entry(&obj, "kubectl", "Apply").expect("kubectl's Apply entry");
    assert!(applied["fieldsV1"]["f:metadata"]["f:labels"]["f:tier"].is_null());
    assert!(!applied["fieldsV1"]["f:spec"]["f:replicas"].is_null());

    // Another manager changes replicas: it takes the field over.
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
    let obj = get_json(
        &c,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
    let patched = entry(&obj, "kubectl-patch", "Update").expect("kubectl-patch's entry");
    assert!(!patched["fieldsV1"]["f:spec"]["f:replicas"].is_null());

    // Applying replicas: 2 again now conflicts, naming the field and its manager.
    let (ok, out, err) = run(&ssa(&v2));
    assert!(!ok, "apply over another manager's field must fail: {out}");
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains(".spec.replicas"), "{err}");
    assert!(err.contains("kubectl-patch"), "{err}");
    assert_eq!(
        get_json(&c, &["get", "deploy", "web", "-o", "json"])["spec"]["replicas"],
        5
    );

    // --force-conflicts takes the field back.
    let mut forced = ssa(&v2);
    forced.push("--force-conflicts".to_owned());
    let (ok, out, err) = run(&forced);
    assert!(ok, "{out}\n{err}");
    let obj = get_json(
        &c,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
    assert_eq!(obj["spec"]["replicas"], 2);
    assert!(
        entry(&obj, "kubectl-patch", "Update").is_none(),
        "kubectl-patch owned only replicas: {}",
        obj["metadata"]["managedFields"]
    );

    // Ordinary writes are tracked too: kubectl create records kubectl-create.
    let cm = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
    );
    c.ok(&["create", "-f", &cm]);
    let obj = get_json(
        &c,
        &[
            "get",
            "cm",
            "settings",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    );
    let created = entry(&obj, "kubectl-create", "Update").expect("kubectl-create's entry");
    assert!(
        !created["fieldsV1"]["f:data"]["f:mode"].is_null(),
        "{created}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_requires_a_field_manager() {
    let c = Cluster::start().await;
    let url = format!(
        "https://127.0.0.1:{}/api/v1/namespaces/default/configmaps/x",
        c.port()
    );
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1"}}"#;
    let (code, status) = patch_apply(&c, &url, body);
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("fieldManager: Required value"),
        "{status}"
    );

    // YAML bodies work, and an apply that creates answers 201.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"1\"\n";
    let (code, obj) = patch_apply(&c, &format!("{url}?fieldManager=tool"), yaml);
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "tool");

    // A conflict is a 409 with one FieldManagerConflict cause per field.
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"2\"\n";
    let (code, status) = patch_apply(&c, &format!("{url}?fieldManager=other"), other);
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"],
        serde_json::json!([{"reason": "FieldManagerConflict",
                            "message": "conflict with \"tool\"", "field": ".data.a"}])
    );
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"tool\": .data.a"
    );

    // force belongs to apply only; a merge patch by another manager takes the field.
    let merge = "application/merge-patch+json";
    let (code, status) = patch(&c, &format!("{url}?force=true"), merge, "{}");
    assert_eq!(code, 422, "{status}");
    let (code, obj) = patch(
        &c,
        &format!("{url}?fieldManager=editor"),
        merge,
        r#"{"data":{"a":"3"}}"#,
    );
    assert_eq!(code, 200, "{obj}");
    let managers: Vec<(&str, &str)> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap(),
                e["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(managers, [("editor", "Update")], "tool owned only data.a");
}

/// PATCH with `application/apply-patch+yaml` over curl; returns (HTTP code, body).
fn patch_apply(c: &Cluster, url: &str, body: &str) -> (u16, Value) {
    patch(c, url, "application/apply-patch+yaml", body)
}

/// PATCH over curl; returns (HTTP code, body).
fn patch(c: &Cluster, url: &str, content_type: &str, body: &str) -> (u16, Value) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            c.dir.path().join("pki/ca.crt").to_str().unwrap(),
            "-X",
            "PATCH",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {}", c.pki.admin_token),
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            body,
            url,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}
