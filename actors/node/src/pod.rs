//! The PodActor: one tokio task per pod bound to the node. It is told the pod's latest
//! state (level-driven: a `watch` channel holds only the newest value) and drives the
//! runtime toward it: sandbox and containers up for a live pod, everything stopped and the
//! pod deleted with grace 0 for a terminating one.
//!
//! Minimal for now: containers are created, started, and restarted per `restartPolicy`
//! with exponential backoff (CrashLoopBackOff); no init containers, probes or graceful
//! preStop yet (those come with the containerd runtime). A restarted
//! actor re-adopts the pod's sandbox and containers from the runtime by pod uid and
//! container name instead of starting new ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{DeleteOptions, Store, StoreError, object};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::node::{self, ObservedContainer};
use crate::runtime::{
    ContainerConfig, ContainerId, ContainerState, Runtime, RuntimeError, SandboxConfig,
    SandboxInfo, SandboxState,
};

/// Pause before retrying a pod whose runtime call failed with a retryable error.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Compare-and-swap rounds for one status write before waiting for the next change.
const CAS_ATTEMPTS: usize = 16;

/// What every PodActor of a node shares.
pub struct PodCtx {
    /// The store.
    pub store: Store,
    /// The node's runtime.
    pub runtime: Arc<dyn Runtime>,
    /// The node's name.
    pub node_name: String,
    /// The node's IP (`status.hostIP`).
    pub host_ip: String,
    /// The runtime's name (`containerID` scheme).
    pub runtime_name: String,
    /// First restart delay of an exited container.
    pub restart_backoff_base: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
}

/// core/v1 Pod's kind.
pub fn pod_kind() -> &'static KindInfo {
    bus_schema::kinds::of::<Pod>()
}

/// Why one reconcile of a pod failed.
#[derive(Debug, thiserror::Error)]
enum PodError {
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl PodError {
    fn is_retryable(&self) -> bool {
        match self {
            PodError::Runtime(e) => e.is_retryable(),
            PodError::Store(e) => e.is_retryable(),
        }
    }
}

/// What the actor holds between reconciles (rebuilt from the runtime after a restart).
#[derive(Default)]
struct Running {
    sandbox: Option<SandboxInfo>,
    /// Current instance of each container, by spec name.
    containers: BTreeMap<String, ContainerId>,
    /// When each exited container's restart is due.
    restart_at: BTreeMap<String, Instant>,
    /// Final state of each container's previous instance (`lastState`).
    last: BTreeMap<String, crate::runtime::ContainerStatus>,
}

/// The actor's body: reconcile on every change until the pod is gone.
pub async fn run(ctx: Arc<PodCtx>, mut rx: watch::Receiver<Option<Value>>) {
    let mut running = Running::default();
    // The uid this actor serves (the agent keys actors by uid), to find its sandboxes
    // even after the pod itself is gone.
    let mut uid = rx
        .borrow()
        .as_ref()
        .and_then(|p| object::meta_str(p, "uid"))
        .unwrap_or("")
        .to_string();
    loop {
        let pod = rx.borrow_and_update().clone();
        match pod {
            None => {
                // Deleted from the store without passing through termination (grace 0
                // by someone else): nothing to report, just clean up.
                if let Some(known) = running_uid(&running) {
                    uid = known;
                }
                if !uid.is_empty() {
                    teardown(&ctx, &mut running, &uid, Duration::ZERO).await;
                }
                return;
            }
            Some(pod) if object::is_terminating(&pod) => {
                terminate(&ctx, &mut running, &pod).await;
                return;
            }
            Some(pod) => match reconcile(&ctx, &mut running, pod).await {
                Ok(Some(wake_at)) => {
                    // A restart is due then, unless the pod changes first.
                    if let Ok(Err(_)) = tokio::time::timeout_at(wake_at, rx.changed()).await {
                        return; // The agent is stopping.
                    }
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(message = "pod reconcile failed", %error);
                    if error.is_retryable() {
                        // Retry after a pause, or at once if the pod changes.
                        if let Ok(Err(_)) = tokio::time::timeout(RETRY_AFTER, rx.changed()).await {
                            return; // The agent is stopping.
                        }
                        continue;
                    }
                }
            },
        }
        if rx.changed().await.is_err() {
            // The agent is stopping: leave the pod running for the next agent to adopt.
            return;
        }
    }
}

fn running_uid(running: &Running) -> Option<String> {
    running.sandbox.as_ref().map(|s| s.config.pod_uid.clone())
}

/// Sandbox up, containers created, started and restarted per the restart policy (with
/// exponential backoff), status written. Returns when to look again (a restart is due).
async fn reconcile(
    ctx: &PodCtx,
    running: &mut Running,
    pod: Value,
) -> Result<Option<Instant>, PodError> {
    let typed: Pod = match serde_json::from_value(pod.clone()) {
        Ok(p) => p,
        Err(error) => {
            // Garbage from the store: log and drop, never panic.
            tracing::warn!(message = "pod does not decode; ignoring", %error);
            return Ok(None);
        }
    };
    let uid = typed.metadata.uid.clone().unwrap_or_default();
    let spec = typed.spec.clone().unwrap_or_default();
    let sandbox = match &running.sandbox {
        Some(s) => s.clone(),
        None => {
            let existing = ctx
                .runtime
                .list_sandboxes()
                .await?
                .into_iter()
                .find(|s| s.config.pod_uid == uid && s.state == SandboxState::Ready);
            let sandbox = match existing {
                Some(s) => {
                    // Re-adopt the newest instance of each container.
                    let mut newest: BTreeMap<String, (u32, ContainerId)> = BTreeMap::new();
                    for c in ctx.runtime.list_containers(Some(&s.id)).await? {
                        if newest.get(&c.name).is_none_or(|(a, _)| *a <= c.attempt) {
                            newest.insert(c.name.clone(), (c.attempt, c.id));
                        }
                    }
                    running
                        .containers
                        .extend(newest.into_iter().map(|(name, (_, id))| (name, id)));
                    s
                }
                None => {
                    let config = SandboxConfig {
                        pod_uid: uid.clone(),
                        namespace: typed.metadata.namespace.clone().unwrap_or_default(),
                        name: typed.metadata.name.clone().unwrap_or_default(),
                        hostname: spec
                            .hostname
                            .clone()
                            .or_else(|| typed.metadata.name.clone())
                            .unwrap_or_default(),
                        host_network: spec.host_network.unwrap_or(false),
                        labels: typed.metadata.labels.clone().unwrap_or_default(),
                        ..Default::default()
                    };
                    ctx.runtime.run_sandbox(&config).await?
                }
            };
            running.sandbox = Some(sandbox.clone());
            sandbox
        }
    };
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut observed = Vec::new();
    let mut wake_at: Option<Instant> = None;
    for c in &spec.containers {
        let config = ContainerConfig {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            env: c
                .env
                .iter()
                .flatten()
                .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                .collect(),
            working_dir: c.working_dir.clone(),
            attempt: 0,
            ..Default::default()
        };
        let mut status = match running.containers.get(&c.name) {
            Some(id) => match ctx.runtime.container_status(id).await {
                Ok(s) => Some(s),
                Err(RuntimeError::NotFound { .. }) => {
                    running.containers.remove(&c.name);
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        if status.is_none() {
            status = Some(start_container(ctx, running, &sandbox, config.clone()).await?);
        }
        let mut backoff = false;
        if let Some(exited) = status.clone().filter(|s| {
            s.state == ContainerState::Exited
                && node::should_restart(restart_policy, s.exit_code.unwrap_or(-1))
        }) {
            let delay = node::restart_backoff(
                exited.attempt,
                ctx.restart_backoff_base,
                ctx.restart_backoff_max,
            );
            let due = *running
                .restart_at
                .entry(c.name.clone())
                .or_insert_with(|| Instant::now() + delay);
            if Instant::now() >= due {
                running.restart_at.remove(&c.name);
                ctx.runtime.remove_container(&exited.id).await?;
                running.containers.remove(&c.name);
                running.last.insert(c.name.clone(), exited.clone());
                let config = ContainerConfig {
                    attempt: exited.attempt + 1,
                    ..config
                };
                let restarted = start_container(ctx, running, &sandbox, config).await?;
                if restarted.state == ContainerState::Exited
                    && node::should_restart(restart_policy, restarted.exit_code.unwrap_or(-1))
                {
                    let delay = node::restart_backoff(
                        restarted.attempt,
                        ctx.restart_backoff_base,
                        ctx.restart_backoff_max,
                    );
                    let due = Instant::now() + delay;
                    running.restart_at.insert(c.name.clone(), due);
                    wake_at = Some(wake_at.map_or(due, |w| w.min(due)));
                    backoff = true;
                }
                status = Some(restarted);
            } else {
                wake_at = Some(wake_at.map_or(due, |w| w.min(due)));
                backoff = true;
            }
        }
        observed.push(ObservedContainer {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            status,
            last: running.last.get(&c.name).cloned(),
            backoff,
            runtime_name: ctx.runtime_name.clone(),
        });
    }
    let start_time = typed
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(sandbox.created_at);
    write_status(ctx, pod, |previous| {
        node::pod_status(
            previous,
            restart_policy,
            &ctx.host_ip,
            &sandbox.ip,
            start_time,
            &observed,
            Timestamp::now(),
        )
    })
    .await?;
    Ok(wake_at)
}

/// Creates and starts one container; a start failure leaves it Exited (`StartError`) and
/// is reported through its status, not as an error.
async fn start_container(
    ctx: &PodCtx,
    running: &mut Running,
    sandbox: &SandboxInfo,
    config: ContainerConfig,
) -> Result<crate::runtime::ContainerStatus, PodError> {
    let id = ctx.runtime.create_container(&sandbox.id, &config).await?;
    running.containers.insert(config.name.clone(), id.clone());
    if let Err(error) = ctx.runtime.start_container(&id).await {
        tracing::warn!(message = "container failed to start", container = %config.name, %error);
    }
    Ok(ctx.runtime.container_status(&id).await?)
}

/// Writes `status(previous)` into the pod with a CAS, re-reading on conflict. Stops
/// (successfully) when the pod is gone or terminating: the next event handles that.
async fn write_status(
    ctx: &PodCtx,
    mut pod: Value,
    status: impl Fn(Option<&PodStatus>) -> PodStatus,
) -> Result<(), PodError> {
    let kind = pod_kind();
    for _ in 0..CAS_ATTEMPTS {
        if object::is_terminating(&pod) {
            return Ok(());
        }
        let previous: Option<PodStatus> = pod
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let new = serde_json::to_value(status(previous.as_ref()))
            .map_err(|e| StoreError::BadRequest(format!("encoding pod status: {e}")))?;
        if pod.get("status") == Some(&new) {
            return Ok(());
        }
        if let Some(map) = pod.as_object_mut() {
            map.insert("status".into(), new);
        }
        match ctx.store.update(kind, pod.clone()).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {
                let namespace = object::namespace(&pod).map(str::to_string);
                let name = object::name(&pod).to_string();
                pod = match ctx.store.get(kind, namespace.as_deref(), &name).await {
                    Ok(p) => p,
                    Err(StoreError::NotFound { .. }) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
            }
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        kind: kind.group_resource(),
        name: object::name(&pod).to_string(),
        reason: "pod status write lost every race".into(),
    }
    .into())
}

/// Graceful deletion: stop everything within the pod's grace period, then delete the
/// pod with grace 0 (uid precondition: never a newer pod of the same name).
async fn terminate(ctx: &PodCtx, running: &mut Running, pod: &Value) {
    let uid = object::meta_str(pod, "uid").unwrap_or("").to_string();
    let grace_seconds = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(object::DEFAULT_POD_GRACE_SECONDS)
        .max(0);
    teardown(
        ctx,
        running,
        &uid,
        Duration::from_secs(grace_seconds as u64),
    )
    .await;
    let opts = DeleteOptions {
        uid: Some(uid),
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    match ctx
        .store
        .delete(pod_kind(), object::namespace(pod), object::name(pod), &opts)
        .await
    {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        // Finalizers of others keep it; or a different pod now holds the name.
        Err(error) => tracing::warn!(message = "final pod delete failed", %error),
    }
}

/// Stops and removes every container and sandbox of the pod (found by uid in the
/// runtime, so it also cleans up what a previous agent started). Errors are logged:
/// removal is retried by the next agent start's re-adoption.
async fn teardown(ctx: &PodCtx, running: &mut Running, uid: &str, grace: Duration) {
    let mut sandboxes: Vec<SandboxInfo> = running.sandbox.take().into_iter().collect();
    match ctx.runtime.list_sandboxes().await {
        Ok(all) => {
            for s in all {
                if s.config.pod_uid == uid && !sandboxes.iter().any(|k| k.id == s.id) {
                    sandboxes.push(s);
                }
            }
        }
        Err(error) => tracing::warn!(message = "listing sandboxes failed", %error),
    }
    running.containers.clear();
    for sandbox in sandboxes {
        match ctx.runtime.list_containers(Some(&sandbox.id)).await {
            Ok(containers) => {
                for c in containers {
                    if let Err(error) = ctx.runtime.stop_container(&c.id, grace).await {
                        tracing::warn!(message = "stopping container failed", container = %c.name, %error);
                    }
                }
            }
            Err(error) => tracing::warn!(message = "listing containers failed", %error),
        }
        if let Err(error) = ctx.runtime.stop_sandbox(&sandbox.id).await {
            tracing::warn!(message = "stopping sandbox failed", %error);
        }
        if let Err(error) = ctx.runtime.remove_sandbox(&sandbox.id).await {
            tracing::warn!(message = "removing sandbox failed", %error);
        }
    }
}
