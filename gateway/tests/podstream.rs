//! `kubectl logs` and `kubectl exec` end to end: real kubectl against the real gateway,
//! a real nats-server and a real node agent. The agent runs a test runtime: the hollow
//! runtime (no processes) plus a CRI-format log file per container that the test writes
//! itself, and exec that runs the command as a local process: through a stand-in for
//! containerd's streaming server (a WebSocket server speaking `v5.channel.k8s.io`) for
//! container `a`, through `exec_sync` for container `b`. Deadlines are hang guards only.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::Cluster;
use drover_node::runtime::{
    self, ContainerConfig, ContainerId, ContainerStats, ContainerStatus, ExecOutput,
    Result as RtResult, RuntimeError, RuntimeVersion, SandboxConfig, SandboxId, SandboxInfo,
};
use drover_node::{HollowConfig, HollowRuntime, NodeAgent, Runtime};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Failure guard for every wait.
const GUARD: Duration = Duration::from_secs(60);

/// The hollow runtime with log files and exec.
struct TestRuntime {
    inner: HollowRuntime,
    logs: PathBuf,
    streaming: String,
    execs: Arc<Mutex<HashMap<String, runtime::ExecRequest>>>,
    /// Container ids whose name is `b` (no streaming server: `exec` is refused).
    names: Mutex<HashMap<ContainerId, String>>,
}

impl TestRuntime {
    fn with_log(&self, mut s: ContainerStatus) -> ContainerStatus {
        s.log_path = Some(self.logs.join(format!("{}.log", s.name)));
        self.names
            .lock()
            .unwrap()
            .insert(s.id.clone(), s.name.clone());
        s
    }
}

#[async_trait]
impl Runtime for TestRuntime {
    async fn version(&self) -> RtResult<RuntimeVersion> {
        self.inner.version().await
    }
    async fn update_pod_cidr(&self, cidr: &str) -> RtResult<()> {
        self.inner.update_pod_cidr(cidr).await
    }
    async fn run_sandbox(&self, config: &SandboxConfig) -> RtResult<SandboxInfo> {
        self.inner.run_sandbox(config).await
    }
    async fn stop_sandbox(&self, id: &SandboxId) -> RtResult<()> {
        self.inner.stop_sandbox(id).await
    }
    async fn remove_sandbox(&self, id: &SandboxId) -> RtResult<()> {
        self.inner.remove_sandbox(id).await
    }
    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> RtResult<ContainerId> {
        self.inner.create_container(sandbox, config).await
    }
    async fn start_container(&self, id: &ContainerId) -> RtResult<()> {
        self.inner.start_container(id).await
    }
    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> RtResult<()> {
        self.inner.stop_container(id, grace).await
    }
    async fn remove_container(&self, id: &ContainerId) -> RtResult<()> {
        self.inner.remove_container(id).await
    }
    async fn container_status(&self, id: &ContainerId) -> RtResult<ContainerStatus> {
        self.inner
            .container_status(id)
            .await
            .map(|s| self.with_log(s))
    }
    async fn container_stats(&self, id: &ContainerId) -> RtResult<ContainerStats> {
        self.inner.container_stats(id).await
    }
    async fn list_sandboxes(&self) -> RtResult<Vec<SandboxInfo>> {
        self.inner.list_sandboxes().await
    }
    async fn list_containers(&self, sandbox: Option<&SandboxId>) -> RtResult<Vec<ContainerStatus>> {
        let all = self.inner.list_containers(sandbox).await?;
        Ok(all.into_iter().map(|s| self.with_log(s)).collect())
    }
    async fn exec_sync(
        &self,
        _id: &ContainerId,
        command: &[String],
        timeout: Duration,
    ) -> RtResult<ExecOutput> {
        let run = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .output();
        let out = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| RuntimeError::Failed("timed out".into()))?
            .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        Ok(ExecOutput {
            exit_code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
    async fn exec(&self, request: &runtime::ExecRequest) -> RtResult<String> {
        let name = self.names.lock().unwrap().get(&request.container).cloned();
        if name.as_deref() == Some("b") {
            return Err(RuntimeError::Invalid("no streaming for b".into()));
        }
        let token = format!("t{}", self.execs.lock().unwrap().len());
        self.execs
            .lock()
            .unwrap()
            .insert(token.clone(), request.clone());
        Ok(format!("http://{}/exec/{token}", self.streaming))
    }
}

/// A stand-in for containerd's streaming server: runs each exec as a local process and
/// speaks `v5.channel.k8s.io` (or v4, whichever the agent offers first that it knows).
// tungstenite's handshake callback type fixes its (large) error type.
#[allow(clippy::result_large_err)]
async fn streaming_server(
    execs: Arc<Mutex<HashMap<String, runtime::ExecRequest>>>,
    resizes: Arc<Mutex<Vec<String>>>,
    hangups: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (execs, resizes, hangups) = (execs.clone(), resizes.clone(), hangups.clone());
            tokio::spawn(async move {
                let path = Arc::new(Mutex::new(String::new()));
                let seen = path.clone();
                let callback = move |req: &Request, mut resp: Response| {
                    *seen.lock().unwrap() = req.uri().path().to_string();
                    let offered = req
                        .headers()
                        .get("Sec-WebSocket-Protocol")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let pick = if offered.contains("v5.channel.k8s.io") {
                        "v5.channel.k8s.io"
                    } else {
                        "v4.channel.k8s.io"
                    };
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(pick));
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                let token = path
                    .lock()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let Some(req) = execs.lock().unwrap().remove(&token) else {
                    return;
                };
                serve_exec(ws, req, resizes, hangups).await;
            });
        }
    });
    addr
}

async fn serve_exec(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    req: runtime::ExecRequest,
    resizes: Arc<Mutex<Vec<String>>>,
    hangups: Arc<std::sync::atomic::AtomicUsize>,
) {
    let (mut sink, mut source) = ws.split();
    let mut child = tokio::process::Command::new(&req.command[0])
        .args(&req.command[1..])
        .stdin(if req.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    for (channel, mut pipe) in [
        (
            1u8,
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        ),
        (
            2u8,
            Box::new(stderr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        ),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                let mut msg = vec![channel];
                msg.extend_from_slice(&buf[..n]);
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(msg) => { let _ = sink.send(Message::Binary(msg.into())).await; }
                None => break,
            },
            msg = source.next() => match msg {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(0) => if let Some(s) = stdin.as_mut() { let _ = s.write_all(&data[1..]).await; },
                    Some(255) => { stdin = None; }
                    Some(4) => resizes.lock().unwrap().push(String::from_utf8_lossy(&data[1..]).into_owned()),
                    _ => {}
                },
                Some(Ok(_)) => {}
                // The agent hung up: the command is killed (kill_on_drop), as a runtime
                // ends an exec whose stream closed.
                None | Some(Err(_)) => {
                    hangups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
            },
        }
    }
    let code = child.wait().await.unwrap().code().unwrap_or(-1);
    let status = bus_schema::podstream::channel::exit_status(code);
    let mut msg = vec![3u8];
    msg.extend_from_slice(&serde_json::to_vec(&status).unwrap());
    let _ = sink.send(Message::Binary(msg.into())).await;
    let _ = sink.send(Message::Close(None)).await;
}

struct Env {
    cluster: Cluster,
    /// Terminal sizes the stand-in streaming server received (channel 4).
    resizes: Arc<Mutex<Vec<String>>>,
    /// Exec streams the agent closed before the command ended.
    hangups: Arc<std::sync::atomic::AtomicUsize>,
    _agent: NodeAgent,
    node: String,
    logs: PathBuf,
}

impl Env {
    async fn start() -> Env {
        let cluster = Cluster::start().await;
        let logs = cluster.dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let execs = Arc::new(Mutex::new(HashMap::new()));
        let resizes = Arc::new(Mutex::new(Vec::new()));
        let hangups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let streaming = streaming_server(execs.clone(), resizes.clone(), hangups.clone()).await;
        let runtime = Arc::new(TestRuntime {
            inner: HollowRuntime::seeded(
                HollowConfig {
                    start_latency: Duration::ZERO,
                    failure_rate: 0.0,
                    ..HollowConfig::default()
                },
                7,
            ),
            logs: logs.clone(),
            streaming,
            execs,
            names: Mutex::new(HashMap::new()),
        });
        let config = drover_node::fleet::node_config(&drover_node::FleetConfig::default(), 0);
        let agent = NodeAgent::start(cluster.store.clone(), runtime, config)
            .await
            .unwrap();
        let node = agent.node_name().to_string();
        Env {
            cluster,
            resizes,
            hangups,
            _agent: agent,
            node,
            logs,
        }
    }

    fn write_log(&self, container: &str, records: &[&str]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{container}.log")))
            .unwrap();
        for r in records {
            std::io::Write::write_all(&mut f, format!("{r}\n").as_bytes()).unwrap();
        }
    }

    /// Creates a pod with containers `a` and `b` on the node and waits until it runs.
    async fn running_pod(&self, name: &str) {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {}\n  containers:\n  - {{name: a, image: busybox}}\n  - {{name: b, image: busybox}}\n",
            self.node
        );
        let file = self.cluster.write(&format!("{name}.yaml"), &yaml);
        self.cluster.ok(&["create", "-f", &file]);
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let phase = self
                .cluster
                .ok(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]);
            if phase == "Running" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pod {name} not running: {phase}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST");
        cmd
    }
}

/// Runs a blocking kubectl off the runtime (the gateway and agent share it).
async fn kubectl(env: &Env, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = env.kubectl_cmd(args);
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl on PATH (scripts/setup)");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            std::io::Write::write_all(&mut pipe, input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn ok(env: &Env, args: &[&str]) -> String {
    let (code, out, err) = kubectl(env, args, None).await;
    assert_eq!(code, 0, "kubectl {args:?}:\n{out}\n{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_through_the_node_agent() {
    let env = Env::start().await;
    env.write_log(
        "a",
        &[
            "2026-11-23T08:00:00.000000001Z stdout F one",
            "2026-11-23T08:00:01Z stderr F two",
            "2026-11-23T08:00:02Z stdout P thr",
            "2026-11-23T08:00:02.5Z stdout F ee",
        ],
    );
    env.write_log("b", &["2026-11-23T08:00:00Z stdout F from b"]);
    env.running_pod("web").await;

    assert_eq!(
        ok(&env, &["logs", "web", "-c", "a"]).await,
        "one\ntwo\nthree\n"
    );
    assert_eq!(ok(&env, &["logs", "web", "-c", "b"]).await, "from b\n");
    assert_eq!(
        ok(&env, &["logs", "web", "-c", "a", "--tail=1"]).await,
        "three\n"
    );
    assert_eq!(
        ok(
            &env,
            &["logs", "web", "-c", "a", "--tail=2", "--timestamps"]
        )
        .await,
        "2026-11-23T08:00:01Z two\n2026-11-23T08:00:02Z thr2026-11-23T08:00:02.5Z ee\n"
    );
    assert_eq!(
        ok(&env, &["logs", "web", "-c", "a", "--limit-bytes=6"]).await,
        "one\ntw"
    );
    // kubectl picks the first container itself and says so.
    let (code, out, err) = kubectl(&env, &["logs", "web"], None).await;
    assert_eq!((code, out.as_str()), (0, "one\ntwo\nthree\n"), "{err}");

    // Errors come back as Status objects kubectl prints.
    let (code, _, err) = kubectl(&env, &["logs", "web", "-c", "b", "--previous"], None).await;
    assert_ne!(code, 0);
    assert!(
        err.contains(r#"previous terminated container "b" in pod "web" not found"#),
        "{err}"
    );
    let (code, _, err) = kubectl(&env, &["logs", "nope"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = kubectl(&env, &["logs", "web", "-c", "zz"], None).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("container zz is not valid for pod web"),
        "{err}"
    );
    env.cluster.ok(&[
        "create",
        "-f",
        &env.cluster.write(
            "unbound.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: unbound}\nspec:\n  containers: [{name: a, image: busybox}]\n",
        ),
    ]);
    let (code, _, err) = kubectl(&env, &["logs", "unbound"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("does not have a host assigned"), "{err}");
    // A node nobody serves: NATS says so at once (no responders), a 503 naming it.
    env.cluster.ok(&[
        "create",
        "-f",
        &env.cluster.write(
            "ghost.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: haunted}\nspec:\n  nodeName: ghost\n  containers: [{name: a, image: busybox}]\n",
        ),
    ]);
    let (code, _, err) = kubectl(&env, &["logs", "haunted"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("node ghost is not reachable"), "{err}");

    // Follow: lines appended later arrive; the stream ends when the container stops.
    let mut follow = env
        .kubectl_cmd(&["logs", "-f", "web", "-c", "a", "--tail=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        tokio::time::timeout(GUARD, rx.recv())
            .await
            .expect("a followed line")
            .expect("open stream")
    };
    assert_eq!(next_line(&mut line_rx).await, "three");
    env.write_log("a", &["2026-11-23T08:00:05Z stdout F appended"]);
    assert_eq!(next_line(&mut line_rx).await, "appended");
    env.write_log(
        "a",
        &[
            "2026-11-23T08:00:06Z stdout P split ",
            "2026-11-23T08:00:07Z stdout F line",
        ],
    );
    assert_eq!(next_line(&mut line_rx).await, "split line");
    env.cluster.ok(&["delete", "pod", "web", "--wait=false"]);
    let status = tokio::task::spawn_blocking(move || follow.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "kubectl logs -f ends cleanly when the container stops"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_exec_through_the_node_agent() {
    let env = Env::start().await;
    env.running_pod("box").await;

    // WebSocket all the way: kubectl -> gateway -> NATS -> agent -> streaming server.
    assert_eq!(
        ok(&env, &["exec", "box", "-c", "a", "--", "echo", "hello"]).await,
        "hello\n"
    );
    let (code, out, err) = kubectl(
        &env,
        &[
            "exec",
            "box",
            "-c",
            "a",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    )
    .await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(out, "out\n");
    assert!(err.contains("err"), "{err}");
    // stdin, ended by v5's close signal.
    let (code, out, err) = kubectl(
        &env,
        &["exec", "-i", "box", "-c", "a", "--", "cat"],
        Some("piped\ninput\n"),
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "piped\ninput\n"), "{err}");

    // A runtime without streaming still runs commands without stdin (exec_sync).
    assert_eq!(
        ok(&env, &["exec", "box", "-c", "b", "--", "echo", "sync"]).await,
        "sync\n"
    );
    let (code, _, _) = kubectl(&env, &["exec", "box", "-c", "b", "--", "false"], None).await;
    assert_eq!(code, 1);

    // A terminal (kubectl -it under script(1), which gives it a pty of a known size):
    // the initial size reaches the runtime on channel 4.
    let (code, out, err) = tokio::task::spawn_blocking({
        let mut cmd = Command::new("script");
        cmd.args([
            "-qec",
            "stty cols 100 rows 30; kubectl exec -it box -c a -- sh -c 'sleep 1; echo tty-ok'",
            "/dev/null",
        ])
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .stdin(Stdio::null());
        move || {
            let out = cmd.output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("tty-ok"), "{out}");
    let resizes = env.resizes.lock().unwrap().clone();
    assert!(
        resizes
            .iter()
            .any(|r| r.contains(r#""Width":100"#) && r.contains(r#""Height":30"#)),
        "{resizes:?}"
    );

    // A client that goes away ends the command: gateway -> Close -> agent -> runtime.
    let mut long = env
        .kubectl_cmd(&[
            "exec",
            "box",
            "-c",
            "a",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(long.stdout.take().unwrap());
    let first = tokio::task::spawn_blocking(move || {
        std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
        first
    })
    .await
    .unwrap();
    assert_eq!(first, "started\n");
    long.kill().unwrap();
    long.wait().unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    while env.hangups.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runtime's exec stream stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Errors.
    let (code, _, err) = kubectl(&env, &["exec", "box", "-c", "zz", "--", "true"], None).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("container zz is not valid for pod box"),
        "{err}"
    );
    let (code, _, err) = kubectl(&env, &["exec", "nope", "--", "true"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
}
