//! The agent's logs service against a real nats-server, driven the way the gateway
//! drives it (raw NATS: request, frames, acks, close), over a fake runtime whose
//! containers and log files the test controls: the previous instance, the credit
//! window, close, and a followed log ending when its container exits. Deadlines are
//! hang guards only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bus_schema::envelope::{self, Meta};
use bus_schema::podstream::{Control, Frame, FrameBody, LogRequest, WINDOW};
use bus_schema::subjects;
use drover_node::runtime::{
    ContainerConfig, ContainerId, ContainerState, ContainerStats, ContainerStatus,
    Result as RtResult, Runtime, RuntimeError, RuntimeVersion, SandboxConfig, SandboxId,
    SandboxInfo, SandboxState,
};
use drover_testkit::TestNats;
use futures::StreamExt;

const GUARD: Duration = Duration::from_secs(30);

/// One pod `default/web` with the given container instances; nothing else works.
struct FakeRuntime {
    containers: Mutex<Vec<ContainerStatus>>,
}

fn refuse<T>() -> RtResult<T> {
    Err(RuntimeError::Invalid("not in this fake".into()))
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> RtResult<RuntimeVersion> {
        refuse()
    }
    async fn update_pod_cidr(&self, _: &str) -> RtResult<()> {
        refuse()
    }
    async fn run_sandbox(&self, _: &SandboxConfig) -> RtResult<SandboxInfo> {
        refuse()
    }
    async fn stop_sandbox(&self, _: &SandboxId) -> RtResult<()> {
        refuse()
    }
    async fn remove_sandbox(&self, _: &SandboxId) -> RtResult<()> {
        refuse()
    }
    async fn create_container(&self, _: &SandboxId, _: &ContainerConfig) -> RtResult<ContainerId> {
        refuse()
    }
    async fn start_container(&self, _: &ContainerId) -> RtResult<()> {
        refuse()
    }
    async fn stop_container(&self, _: &ContainerId, _: Duration) -> RtResult<()> {
        refuse()
    }
    async fn remove_container(&self, _: &ContainerId) -> RtResult<()> {
        refuse()
    }
    async fn container_status(&self, id: &ContainerId) -> RtResult<ContainerStatus> {
        let all = self.containers.lock().unwrap();
        all.iter()
            .find(|c| &c.id == id)
            .cloned()
            .ok_or(RuntimeError::NotFound {
                what: "container",
                id: id.0.clone(),
            })
    }
    async fn container_stats(&self, _: &ContainerId) -> RtResult<ContainerStats> {
        refuse()
    }
    async fn list_sandboxes(&self) -> RtResult<Vec<SandboxInfo>> {
        Ok(vec![SandboxInfo {
            id: SandboxId("s1".into()),
            ip: "10.244.0.2".into(),
            state: SandboxState::Ready,
            config: SandboxConfig {
                pod_uid: "uid-1".into(),
                namespace: "default".into(),
                name: "web".into(),
                ..SandboxConfig::default()
            },
            created_at: jiff::Timestamp::UNIX_EPOCH,
        }])
    }
    async fn list_containers(&self, _: Option<&SandboxId>) -> RtResult<Vec<ContainerStatus>> {
        Ok(self.containers.lock().unwrap().clone())
    }
}

fn instance(
    dir: &std::path::Path,
    id: &str,
    attempt: u32,
    state: ContainerState,
) -> ContainerStatus {
    ContainerStatus {
        id: ContainerId(id.into()),
        sandbox_id: SandboxId("s1".into()),
        name: "c".into(),
        image: "busybox".into(),
        state,
        exit_code: None,
        reason: None,
        message: None,
        attempt,
        created_at: jiff::Timestamp::UNIX_EPOCH,
        started_at: None,
        finished_at: None,
        log_path: Some(dir.join(format!("{id}.log"))),
    }
}

/// The gateway's side of one stream, by hand.
struct Client {
    nats: async_nats::Client,
    inbox: async_nats::Subscriber,
    control: String,
}

impl Client {
    async fn open(nats: &async_nats::Client, request: LogRequest) -> Client {
        let reply = nats.new_inbox();
        let inbox = nats.subscribe(reply.clone()).await.unwrap();
        let meta = Meta {
            sender: "test".into(),
            traceparent: None,
        };
        let (headers, payload) = envelope::encode(&request, &meta).unwrap();
        nats.publish_with_reply_and_headers(subjects::node_logs("n1"), reply, headers, payload)
            .await
            .unwrap();
        Client {
            nats: nats.clone(),
            inbox,
            control: subjects::podstream_control(&request.session),
        }
    }

    async fn frame(&mut self) -> Frame {
        let msg = tokio::time::timeout(GUARD, self.inbox.next())
            .await
            .expect("a frame before the guard")
            .unwrap();
        envelope::decode::<Frame>(msg.headers.as_ref(), &msg.payload)
            .unwrap()
            .1
    }

    /// The next frame that is not a keepalive.
    async fn content(&mut self) -> Frame {
        loop {
            let f = self.frame().await;
            if f.body != FrameBody::Keepalive {
                return f;
            }
        }
    }

    async fn send(&self, control: Control) {
        let meta = Meta {
            sender: "test".into(),
            traceparent: None,
        };
        let (headers, payload) = envelope::encode(&control, &meta).unwrap();
        self.nats
            .publish_with_headers(self.control.clone(), headers, payload)
            .await
            .unwrap();
    }

    /// Whether the agent still listens on the session's control subject (a request to
    /// a subject nobody subscribes to fails at once with "no responders").
    async fn agent_listens(&self) -> bool {
        let req = self.nats.request(self.control.clone(), bytes::Bytes::new());
        match tokio::time::timeout(Duration::from_millis(300), req).await {
            Err(_) => true,
            Ok(Err(e)) => e.kind() != async_nats::RequestErrorKind::NoResponders,
            Ok(Ok(_)) => true,
        }
    }
}

fn data(frame: &Frame) -> String {
    match &frame.body {
        FrameBody::Data { data, .. } => String::from_utf8_lossy(data).into_owned(),
        other => panic!("expected data, got {other:?}"),
    }
}

fn request(session: &str) -> LogRequest {
    LogRequest {
        session: session.into(),
        namespace: "default".into(),
        pod: "web".into(),
        pod_uid: "uid-1".into(),
        container: "c".into(),
        ..LogRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_service_over_nats() {
    let nats = TestNats::start().await;
    let client = nats.client().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c0.log"),
        "2026-11-23T08:00:00Z stdout F before restart\n",
    )
    .unwrap();
    let line = format!("2026-11-23T08:00:01Z stdout F {}\n", "x".repeat(1000));
    std::fs::write(dir.path().join("c1.log"), line.repeat(1100)).unwrap();
    let runtime = Arc::new(FakeRuntime {
        containers: Mutex::new(vec![
            instance(dir.path(), "c0", 0, ContainerState::Exited),
            instance(dir.path(), "c1", 1, ContainerState::Running),
        ]),
    });
    let service = drover_node::stream::serve(client.clone(), "n1", runtime.clone())
        .await
        .unwrap();

    // --previous reads the exited instance.
    let mut s = Client::open(
        &client,
        LogRequest {
            previous: true,
            ..request("prev")
        },
    )
    .await;
    assert_eq!(data(&s.content().await), "before restart\n");
    assert_eq!(s.content().await.body, FrameBody::End);

    // Without acks the agent stops after WINDOW frames; an ack lets more through.
    let mut s = Client::open(&client, request("window")).await;
    let mut seqs = Vec::new();
    for _ in 0..WINDOW {
        seqs.push(s.content().await.seq);
    }
    assert_eq!(seqs, (0..WINDOW).collect::<Vec<_>>());
    let more = tokio::time::timeout(Duration::from_millis(500), s.inbox.next()).await;
    assert!(
        more.is_err(),
        "a frame beyond the window arrived without an ack"
    );
    s.send(Control::Ack { seq: 3 }).await;
    for want in WINDOW..WINDOW + 4 {
        assert_eq!(s.content().await.seq, want);
    }
    // Close ends the session on the agent (it leaves the control subject).
    assert!(s.agent_listens().await);
    s.send(Control::Close).await;
    let deadline = tokio::time::Instant::now() + GUARD;
    while s.agent_listens().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent kept the session"
        );
    }

    // Follow: appended lines arrive; the stream ends once the container has exited.
    let mut s = Client::open(
        &client,
        LogRequest {
            follow: true,
            // Only what comes after the big file (whenever the agent opens it).
            since_time: Some("2026-11-23T08:00:02Z".into()),
            ..request("follow")
        },
    )
    .await;
    let ack = |f: &Frame| Control::Ack { seq: f.seq };
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("c1.log"))
            .unwrap();
        f.write_all(b"2026-11-23T08:00:02Z stdout F late line\n")
            .unwrap();
    }
    let frame = s.content().await;
    assert_eq!(data(&frame), "late line\n");
    s.send(ack(&frame)).await;
    // Rotation: the file is renamed and a new one takes its path.
    let log = dir.path().join("c1.log");
    std::fs::rename(&log, dir.path().join("c1.log.1")).unwrap();
    std::fs::write(&log, "2026-11-23T08:00:03Z stdout F rotated\n").unwrap();
    let frame = s.content().await;
    assert_eq!(data(&frame), "rotated\n");
    s.send(ack(&frame)).await;
    // Truncation in place (seen when the file is shorter than what was read; CRI
    // runtimes rotate by rename, so this is a fallback): read again from the start.
    std::fs::write(&log, "2026-11-23T08:00:04Z stdout F t\n").unwrap();
    let frame = s.content().await;
    assert_eq!(data(&frame), "t\n");
    s.send(ack(&frame)).await;
    runtime.containers.lock().unwrap()[1].state = ContainerState::Exited;
    assert_eq!(s.content().await.body, FrameBody::End);

    // A container the runtime does not know is a clear error.
    let mut s = Client::open(
        &client,
        LogRequest {
            container: "zz".into(),
            ..request("missing")
        },
    )
    .await;
    match s.content().await.body {
        FrameBody::Error(e) => assert!(e.message.contains(r#"container "zz""#), "{e:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
    service.abort();
}
