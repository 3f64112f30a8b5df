//! The shared harness of the gateway's end-to-end tests: a real nats-server (testkit), a
//! store, a gateway over TLS with its generated CA, a kubeconfig, and helpers to run
//! kubectl and curl against it. Each test file uses what it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use drover_gateway::auth::{Auth, MastersOnly};
use drover_gateway::pki::Pki;
use drover_gateway::{Gateway, GatewayConfig};
use drover_store::{Store, StoreConfig};
use drover_testkit::TestNats;

pub struct Cluster {
    pub nats: TestNats,
    pub gateway: Gateway,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    /// The store and authenticator the gateway was started with, kept so that
    /// [`Cluster::restart_gateway`] can start a new one over the same state.
    pub store: Store,
    pub auth: Arc<Auth>,
    /// The garbage collector and namespace controller, as `drover up` runs them.
    pub controllers: drover_controllers::Controllers,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let nats = TestNats::start().await;
        let store = Store::new(nats.client().await, StoreConfig::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let auth = Arc::new(Auth::new(pki.admin_token.clone(), Box::new(MastersOnly)));
        let bind = "127.0.0.1:0".parse().unwrap();
        let controllers = drover_controllers::Controllers::start(store.clone());
        let gateway = Gateway::start(
            store.clone(),
            GatewayConfig {
                bind,
                tls: pki.clone(),
                auth: auth.clone(),
            },
        )
        .await
        .unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        pki.write_kubeconfig(
            &kubeconfig,
            &format!("https://127.0.0.1:{}", gateway.addr.port()),
        )
        .unwrap();
        Cluster {
            nats,
            gateway,
            dir,
            kubeconfig,
            pki,
            store,
            auth,
            controllers,
        }
    }

    /// Stops the gateway and starts a new one on the same address over the same store,
    /// CA and token, as a gateway restart looks to clients: open watches are cut and the
    /// kubeconfig stays valid.
    pub async fn restart_gateway(&mut self) {
        let (pki, auth) = (self.pki.clone(), self.auth.clone());
        let config = |bind| GatewayConfig {
            bind,
            tls: pki.clone(),
            auth: auth.clone(),
        };
        let addr = self.gateway.addr;
        // `Gateway::stop` takes the gateway by value, and the port must be free before the
        // new one binds it: a short-lived stand-in on port 0 holds `self.gateway` meanwhile.
        let stand_in = Gateway::start(self.store.clone(), config("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        std::mem::replace(&mut self.gateway, stand_in).stop().await;
        let restarted = Gateway::start(self.store.clone(), config(addr))
            .await
            .expect("restart the gateway on its previous address");
        std::mem::replace(&mut self.gateway, restarted).stop().await;
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("kubectl on PATH (scripts/setup)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    pub fn write(&self, name: &str, yaml: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p.to_str().unwrap().to_string()
    }

    pub fn port(&self) -> u16 {
        self.gateway.addr.port()
    }
}

pub fn curl(
    ca: &Path,
    token: Option<&str>,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--cacert",
        ca.to_str().unwrap(),
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        url,
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Test-only stand-in for the scheduler (which `drover up` runs and this harness does
/// not): binds every unbound, live pod to one of `nodes` hollow nodes
/// (`hollow-0000`, ...) in turn.
pub async fn bind_round_robin(store: Store, nodes: usize) {
    use drover_store::{StoreError, WatchEvent, WatchOptions, object};
    use futures::StreamExt;
    use serde_json::{Value, json};

    let pods = bus_schema::kinds::by_group_resource("", "pods").unwrap();
    let mut watch = store
        .watch(pods, None, 0, WatchOptions::default())
        .await
        .unwrap();
    let mut next = 0usize;
    while let Some(Ok(event)) = watch.next().await {
        let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else {
            continue;
        };
        let unbound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        if !unbound || object::is_terminating(&pod) {
            continue;
        }
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!(format!("hollow-{:04}", next % nodes.max(1)));
        next += 1;
        match store.update(pods, bound).await {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => panic!("bind: {e}"),
        }
    }
}
