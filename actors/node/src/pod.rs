//! The PodActor: one tokio task per pod bound to the node, doing what the kubelet does
//! for a pod spec. It is told the pod's latest state (level-driven: a `watch` channel
//! holds only the newest value) and drives the runtime toward it:
//!
//! * volumes materialised ([`crate::volumes`]), sandbox up with ports, DNS and the QoS
//!   cgroup parent ([`crate::podspec`]);
//! * init containers in order, each to completion (retried with backoff per
//!   `restartPolicy`); sidecars (init containers with `restartPolicy: Always`) started in
//!   order and kept running; then the regular containers;
//! * per container: `imagePullPolicy` (`ErrImagePull` / `ImagePullBackOff`), the env
//!   (`CreateContainerConfigError` when a reference is missing), restarts with
//!   CrashLoopBackOff, probes ([`crate::probe`], run inline when due), `OOMKilled`;
//! * graceful termination (`pod/lifecycle.rs`): preStop hooks within the grace period, main
//!   containers first, sidecars last in reverse order, then sandbox and volumes.
//!
//! Every step records Events ([`crate::events`]). The actor wakes on pod changes, when a
//! restart or probe is due, and every `sync_interval` to notice exits (the kubelet's
//! PLEG relist); an unchanged observation writes nothing. A restarted actor re-adopts the
//! pod's sandbox and containers from the runtime by pod uid and container name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus_schema::KindInfo;
use drover_store::{Store, StoreError, object};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::{self, EventType, Involved, Recorder};
use crate::fence::{self, FenceState};
use crate::node::{self, Capacity, ObservedContainer, PodView};
use crate::podspec::{self, PodFacts, QosClass};
use crate::probe::{self, ProbeKind, ProbeTracker};
use crate::runtime::{
    ContainerId, ContainerState, ContainerStatus, Runtime, RuntimeError, SandboxConfig,
    SandboxInfo, SandboxState,
};

mod drain;
mod lifecycle;
mod sources;

/// Pause before retrying a pod whose runtime call failed with a retryable error.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often a pod's containers are re-checked without any pod change (the kubelet's
/// PLEG relist period).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How often configMap/secret/downwardAPI volumes are refreshed (kubelet sync period).
pub const DEFAULT_VOLUME_RESYNC_INTERVAL: Duration = Duration::from_secs(60);
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
    /// First restart delay of an exited container (and of an image pull retry).
    pub restart_backoff_base: Duration,
    /// Longest restart delay.
    pub restart_backoff_max: Duration,
    /// Where pod volumes are materialised (`<pods dir>/<uid>/volumes/...`); `None`
    /// leaves volumes out (cheap hollow fleets): containers get no mounts.
    pub pods_dir: Option<PathBuf>,
    /// Cluster DNS servers for `dnsPolicy: ClusterFirst`; empty keeps the runtime's
    /// resolv.conf.
    pub cluster_dns: Vec<String>,
    /// The node's capacity (Burstable `oom_score_adj`, resourceFieldRef defaults).
    pub capacity: Capacity,
    /// Re-check period without pod changes.
    pub sync_interval: Duration,
    /// Refresh period of API-data volumes.
    pub volume_resync_interval: Duration,
    /// The cgroup every pod's cgroup is created under ([`podspec::cgroup_parent`]).
    pub cgroup_root: String,
    /// How long a deleted pod that was a Service endpoint keeps serving after the
    /// EndpointSlices stopped listing it as ready, before its containers get SIGTERM
    /// (so every node's proxy has stopped sending it new connections; see
    /// `pod/drain.rs`).
    pub endpoint_drain_delay: Duration,
    /// The node's StatefulSet fence ([`crate::fence`]): while it is closed, StatefulSet
    /// pods' containers are killed and none start.
    pub fence: watch::Receiver<FenceState>,
    /// The cgroup parents of this node's StatefulSet pods, for the fence guard.
    pub stateful_cgroups: fence::StatefulCgroups,
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

/// What was last written, to skip writes of an unchanged observation.
#[derive(Debug, Clone, PartialEq)]
struct Observation {
    init: Vec<ObservedContainer>,
    containers: Vec<ObservedContainer>,
    initialized: bool,
    init_failed: bool,
    pod_ip: String,
}

/// What the actor holds between reconciles (rebuilt from the runtime after a restart).
#[derive(Default)]
struct Running {
    sandbox: Option<SandboxInfo>,
    /// Current instance of each container (init and regular names are unique), by
    /// spec name.
    containers: BTreeMap<String, ContainerId>,
    /// The exited instance before the current one, kept for `kubectl logs --previous`.
    previous: BTreeMap<String, ContainerId>,
    /// When each exited container's restart is due.
    restart_at: BTreeMap<String, Instant>,
    /// Final state of each container's previous instance (`lastState`).
    last: BTreeMap<String, ContainerStatus>,
    /// Image pull backoff per container: (retry not before, failures so far).
    pull_backoff: BTreeMap<String, (Instant, u32)>,
    /// Probe state per container (only containers with probes have one).
    probes: BTreeMap<String, ProbeTracker>,
    /// Exited instances already reported (events fire once per exit).
    reported_exits: BTreeSet<ContainerId>,
    recorder: Option<Recorder>,
    /// Volume paths by name, once set up; when they were last refreshed.
    volumes: Option<(BTreeMap<String, PathBuf>, Instant)>,
    /// The last written observation and the status value it produced.
    written: Option<(Observation, Value)>,
}

impl Running {
    async fn event(&mut self, field_path: &str, type_: EventType, reason: &str, message: &str) {
        if let Some(r) = self.recorder.as_mut() {
            r.record(field_path, type_, reason, message).await;
        }
    }

    /// An event about a state seen on every sync (written at most every
    /// [`events::STATE_EVENT_INTERVAL`]).
    async fn state_event(
        &mut self,
        field_path: &str,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        if let Some(r) = self.recorder.as_mut() {
            r.record_at_most(
                field_path,
                type_,
                reason,
                message,
                events::STATE_EVENT_INTERVAL,
            )
            .await;
        }
    }
}

/// Lowers `wake` to `at` if earlier.
fn soon(wake: &mut Instant, at: Instant) {
    if at < *wake {
        *wake = at;
    }
}

/// What ended a wait of the actor.
enum Wake {
    /// The pod changed (or the timer ran out).
    Look,
    /// The node's fence opened or closed.
    Fence,
    /// The agent is stopping.
    Stop,
}

/// Waits until the pod changes, `until` passes (never when `None`), or the fence changes.
async fn wait(
    rx: &mut watch::Receiver<Option<Value>>,
    fence: &mut watch::Receiver<FenceState>,
    until: Option<Instant>,
) -> Wake {
    let timer = async {
        match until {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    // A fence without a sender (fencing off) never changes.
    let fence_changed = async {
        if fence.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        changed = rx.changed() => if changed.is_ok() { Wake::Look } else { Wake::Stop },
        () = timer => Wake::Look,
        () = fence_changed => Wake::Fence,
    }
}

/// What the store says about a StatefulSet pod when the fence opens.
enum Recheck {
    /// Still this pod (same uid), still bound here: its latest state.
    Ours(Value),
    /// Deleted or replaced (a new uid, possibly on another node) while fenced.
    Gone,
    /// The store could not tell; try again.
    Unknown,
}

/// Re-reads a StatefulSet pod from the store before its containers may start again after
/// a fence: its watch may still lag behind the deletion the control plane made while the
/// node was fenced, and starting a second copy of the identity is what the fence prevents.
async fn recheck(ctx: &PodCtx, pod: &Value) -> Recheck {
    let name = object::name(pod);
    let (Some(ns), Some(uid)) = (object::namespace(pod), object::meta_str(pod, "uid")) else {
        return Recheck::Gone;
    };
    match ctx.store.get(pod_kind(), Some(ns), name).await {
        Ok(fresh)
            if object::meta_str(&fresh, "uid") == Some(uid)
                && fresh.pointer("/spec/nodeName").and_then(Value::as_str)
                    == Some(ctx.node_name.as_str()) =>
        {
            Recheck::Ours(fresh)
        }
        Ok(_) | Err(StoreError::NotFound { .. }) => Recheck::Gone,
        Err(error) => {
            tracing::warn!(message = "re-reading a fenced StatefulSet pod failed", %error);
            Recheck::Unknown
        }
    }
}

/// Kills (no grace: the fence is late already) every running container of a fenced
/// StatefulSet pod; the sandbox stays, so the pod resumes in place if it is still ours
/// when the fence opens.
async fn fence_containers(ctx: &PodCtx, running: &mut Running, uid: &str) {
    let sandboxes: Vec<SandboxInfo> = match ctx.runtime.list_sandboxes().await {
        Ok(all) => all
            .into_iter()
            .filter(|s| s.config.pod_uid == uid)
            .collect(),
        Err(error) => {
            tracing::warn!(message = "listing sandboxes to fence failed", %error);
            return;
        }
    };
    for sandbox in sandboxes {
        let Ok(containers) = ctx.runtime.list_containers(Some(&sandbox.id)).await else {
            continue;
        };
        for c in containers {
            if c.state == ContainerState::Exited {
                continue;
            }
            tracing::warn!(message = "fenced: killing StatefulSet container", container = %c.name);
            if let Err(error) = ctx.runtime.stop_container(&c.id, Duration::ZERO).await {
                tracing::warn!(message = "killing a fenced container failed", container = %c.name, %error);
            }
        }
    }
    // Probes restart from scratch once the pod runs again.
    running.probes.clear();
}

/// The actor's body: reconcile on every change until the pod is gone.
pub async fn run(ctx: Arc<PodCtx>, mut rx: watch::Receiver<Option<Value>>) {
    let mut running = Running::default();
    let mut fence = ctx.fence.clone();
    // Whether this actor has seen the fence closed since the pod last ran.
    let mut was_fenced = false;
    // A StatefulSet pod's cgroup, registered with the fence guard while this actor runs.
    let mut _guarded: Option<fence::Registered> = None;
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
        let wake = match pod {
            None => {
                // Deleted from the store without passing through termination (grace 0
                // by someone else): nothing to report, just clean up.
                if let Some(known) = running_uid(&running) {
                    uid = known;
                }
                if !uid.is_empty() {
                    lifecycle::teardown(&ctx, &mut running, &uid, Duration::ZERO).await;
                }
                return;
            }
            Some(pod) if object::is_terminating(&pod) => {
                lifecycle::terminate(&ctx, &mut running, &pod).await;
                return;
            }
            Some(mut pod) => {
                let typed = serde_json::from_value::<Pod>(pod.clone()).ok();
                let stateful = typed.as_ref().is_some_and(fence::is_statefulset_pod);
                if stateful
                    && _guarded.is_none()
                    && let Some(p) = &typed
                {
                    let qos = podspec::qos_class(&p.spec.clone().unwrap_or_default());
                    _guarded = Some(ctx.stateful_cgroups.register(podspec::cgroup_parent(
                        &ctx.cgroup_root,
                        qos,
                        &uid,
                    )));
                }
                if stateful && *fence.borrow_and_update() == FenceState::Fenced {
                    was_fenced = true;
                    fence_containers(&ctx, &mut running, &uid).await;
                    match wait(&mut rx, &mut fence, None).await {
                        Wake::Stop => return,
                        Wake::Look | Wake::Fence => continue,
                    }
                }
                if stateful && was_fenced {
                    match recheck(&ctx, &pod).await {
                        Recheck::Ours(fresh) => pod = fresh,
                        Recheck::Gone => {
                            tracing::info!(
                                message =
                                    "fenced StatefulSet pod was replaced meanwhile; removing it"
                            );
                            lifecycle::teardown(&ctx, &mut running, &uid, Duration::ZERO).await;
                            return;
                        }
                        Recheck::Unknown => {
                            match wait(&mut rx, &mut fence, Some(Instant::now() + RETRY_AFTER))
                                .await
                            {
                                Wake::Stop => return,
                                Wake::Look | Wake::Fence => continue,
                            }
                        }
                    }
                    if object::is_terminating(&pod) {
                        lifecycle::terminate(&ctx, &mut running, &pod).await;
                        return;
                    }
                    was_fenced = false;
                }
                match reconcile(&ctx, &mut running, pod).await {
                    // Look again then (a restart, probe or relist is due), unless the pod
                    // changes first.
                    Ok(wake_at) => wait(&mut rx, &mut fence, Some(wake_at)).await,
                    Err(error) => {
                        tracing::warn!(message = "pod reconcile failed", %error);
                        if error.is_retryable() {
                            // Retry after a pause, or at once if the pod changes.
                            wait(&mut rx, &mut fence, Some(Instant::now() + RETRY_AFTER)).await
                        } else {
                            wait(&mut rx, &mut fence, None).await
                        }
                    }
                }
            }
        };
        if let Wake::Stop = wake {
            // The agent is stopping: leave the pod running for the next agent to adopt.
            return;
        }
    }
}

/// Whether a sandbox in the runtime is one of this agent's pods: its cgroup is under the
/// agent's cgroup root (a runtime shared with something else keeps the other's sandboxes).
pub(crate) fn is_own_sandbox(ctx: &PodCtx, sandbox: &SandboxInfo) -> bool {
    let root = ctx.cgroup_root.trim_end_matches('/');
    sandbox
        .config
        .cgroup_parent
        .as_deref()
        .and_then(|p| p.strip_prefix(root))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Stops and removes what the runtime still runs for a pod that no longer exists in the
/// store (deleted or replaced while the agent was down or cut off): a node that comes back
/// must not keep running pods the cluster has started elsewhere.
pub(crate) async fn remove_orphan(ctx: &PodCtx, uid: &str) {
    tracing::info!(message = "removing a pod that is no longer bound to this node", pod.uid = %uid);
    let mut running = Running::default();
    lifecycle::teardown(ctx, &mut running, uid, Duration::ZERO).await;
}

fn running_uid(running: &Running) -> Option<String> {
    running.sandbox.as_ref().map(|s| s.config.pod_uid.clone())
}

/// Finds the pod's ready sandbox and the newest instance of each container in the
/// runtime (after an agent restart); `None` when there is no sandbox.
async fn adopt(
    ctx: &PodCtx,
    running: &mut Running,
    uid: &str,
) -> Result<Option<SandboxInfo>, RuntimeError> {
    if let Some(s) = &running.sandbox {
        return Ok(Some(s.clone()));
    }
    let existing = ctx
        .runtime
        .list_sandboxes()
        .await?
        .into_iter()
        .find(|s| s.config.pod_uid == uid && s.state == SandboxState::Ready);
    let Some(sandbox) = existing else {
        // Dead sandboxes of this pod (their containers went with them) are removed
        // before a new one is made.
        for dead in ctx.runtime.list_sandboxes().await? {
            if dead.config.pod_uid == uid {
                let _ = ctx.runtime.stop_sandbox(&dead.id).await;
                ctx.runtime.remove_sandbox(&dead.id).await?;
            }
        }
        return Ok(None);
    };
    // Newest instance of each container is current, the one before is `previous`
    // (its final state is `lastState`); older ones go.
    let mut by_name: BTreeMap<String, Vec<ContainerStatus>> = BTreeMap::new();
    for c in ctx.runtime.list_containers(Some(&sandbox.id)).await? {
        by_name.entry(c.name.clone()).or_default().push(c);
    }
    for (name, mut instances) in by_name {
        instances.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
        let mut rest = instances.into_iter();
        if let Some(current) = rest.next() {
            running.containers.insert(name.clone(), current.id);
        }
        if let Some(previous) = rest.next() {
            running.previous.insert(name.clone(), previous.id.clone());
            running.reported_exits.insert(previous.id.clone());
            running.last.insert(name.clone(), previous);
        }
        for old in rest {
            if let Err(error) = ctx.runtime.remove_container(&old.id).await {
                tracing::warn!(message = "removing old container failed", %error);
            }
        }
    }
    running.sandbox = Some(sandbox.clone());
    Ok(Some(sandbox))
}

/// What one reconcile works with.
struct PodCx<'a> {
    pod: &'a Pod,
    sandbox: &'a SandboxInfo,
    facts: PodFacts,
    qos: QosClass,
    volumes: Option<&'a BTreeMap<String, PathBuf>>,
    /// `terminationGracePeriodSeconds` (liveness kills).
    grace: Duration,
}

impl PodCx<'_> {
    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("")
    }
}

fn pod_facts(ctx: &PodCtx, pod_ip: &str) -> PodFacts {
    PodFacts {
        pod_ip: pod_ip.to_string(),
        host_ip: ctx.host_ip.clone(),
        node_cpu_millis: ctx.capacity.cpu_millis,
        node_memory_bytes: ctx.capacity.memory_bytes,
        node_ephemeral_bytes: ctx.capacity.ephemeral_storage_bytes,
    }
}

fn waiting_obs(ctx: &PodCtx, c: &Container, sidecar: bool, reason: &str) -> ObservedContainer {
    ObservedContainer {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        runtime_name: ctx.runtime_name.clone(),
        waiting: Some((reason.to_string(), String::new())),
        sidecar,
        ..Default::default()
    }
}

/// Volumes up, sandbox up, init containers then regular containers driven one step,
/// status written. Returns when to look again.
async fn reconcile(ctx: &PodCtx, running: &mut Running, pod: Value) -> Result<Instant, PodError> {
    let now = Instant::now();
    let mut wake = now + ctx.sync_interval;
    let typed: Pod = match serde_json::from_value(pod.clone()) {
        Ok(p) => p,
        Err(error) => {
            // Garbage from the store: log and drop, never panic.
            tracing::warn!(message = "pod does not decode; ignoring", %error);
            return Ok(now + ctx.volume_resync_interval.max(ctx.sync_interval));
        }
    };
    let uid = typed.metadata.uid.clone().unwrap_or_default();
    let spec = typed.spec.clone().unwrap_or_default();
    if running.recorder.is_none() {
        running.recorder = Some(Recorder::new(
            ctx.store.clone(),
            &ctx.node_name,
            Involved {
                namespace: typed.metadata.namespace.clone().unwrap_or_default(),
                name: typed.metadata.name.clone().unwrap_or_default(),
                uid: uid.clone(),
            },
        ));
    }
    let restart_policy = spec
        .restart_policy
        .as_deref()
        .unwrap_or("Always")
        .to_string();
    let qos = podspec::qos_class(&spec);
    let grace = Duration::from_secs(
        spec.termination_grace_period_seconds
            .unwrap_or(object::DEFAULT_POD_GRACE_SECONDS)
            .max(0) as u64,
    );

    // Volumes first (the kubelet mounts before it starts the sandbox).
    let volume_paths = match sources::prepare_volumes(ctx, running, &typed).await? {
        Ok(paths) => paths,
        Err(error) => {
            let message = format!("MountVolume.SetUp failed: {error}");
            running
                .event("", EventType::Warning, "FailedMount", &message)
                .await;
            let init: Vec<_> = spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| waiting_obs(ctx, c, podspec::is_sidecar(c), "PodInitializing"))
                .collect();
            let containers: Vec<_> = spec
                .containers
                .iter()
                .map(|c| waiting_obs(ctx, c, false, "ContainerCreating"))
                .collect();
            let observation = Observation {
                init,
                containers,
                initialized: false,
                init_failed: false,
                pod_ip: String::new(),
            };
            publish(ctx, running, pod, &restart_policy, qos, None, observation).await?;
            return Ok(now + RETRY_AFTER);
        }
    };

    let sandbox = match adopt(ctx, running, &uid).await? {
        Some(s) => s,
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
                port_mappings: podspec::port_mappings(&spec),
                dns: podspec::dns_config(&typed, &ctx.cluster_dns),
                cgroup_parent: Some(podspec::cgroup_parent(&ctx.cgroup_root, qos, &uid)),
            };
            let sandbox = ctx.runtime.run_sandbox(&config).await?;
            running.sandbox = Some(sandbox.clone());
            sandbox
        }
    };
    let cx = PodCx {
        pod: &typed,
        sandbox: &sandbox,
        facts: pod_facts(ctx, &sandbox.ip),
        qos,
        volumes: volume_paths.as_ref(),
        grace,
    };

    // Once every regular container has finished for good (a Job's pod), sidecars are
    // stopped and not restarted, as the kubelet does.
    let mut mains_done = !spec.containers.is_empty();
    for c in &spec.containers {
        let finished = current_status(ctx, running, &c.name)
            .await?
            .is_some_and(|s| {
                s.state == ContainerState::Exited
                    && !node::should_restart(&restart_policy, s.exit_code.unwrap_or(-1))
            });
        mains_done &= finished;
    }

    // Init containers in order; sidecars must be started before the next one.
    let mut init = Vec::new();
    let mut initialized = true;
    let mut init_failed = false;
    for c in spec.init_containers.iter().flatten() {
        let sidecar = podspec::is_sidecar(c);
        if !initialized || init_failed {
            init.push(waiting_obs(ctx, c, sidecar, "PodInitializing"));
            continue;
        }
        if sidecar {
            let policy = if mains_done { "Never" } else { "Always" };
            let obs = ensure_container(ctx, running, &cx, c, true, policy, &mut wake).await?;
            let started = obs
                .status
                .as_ref()
                .is_some_and(|s| s.state == ContainerState::Running)
                && obs.waiting.is_none()
                && obs.started != Some(false);
            // After the regular containers finished, stopped sidecars are expected.
            initialized &= started || mains_done;
            init.push(obs);
            continue;
        }
        let policy = if restart_policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        let obs = ensure_container(ctx, running, &cx, c, true, policy, &mut wake).await?;
        let exit = obs
            .status
            .as_ref()
            .filter(|s| s.state == ContainerState::Exited)
            .map(|s| s.exit_code.unwrap_or(-1));
        let done = exit == Some(0) && obs.waiting.is_none() && !obs.backoff;
        if !done {
            initialized = false;
            if policy == "Never" && exit.is_some_and(|code| code != 0) {
                init_failed = true;
            }
        }
        init.push(obs);
    }

    let mut containers = Vec::new();
    for c in &spec.containers {
        if initialized && !init_failed {
            let obs =
                ensure_container(ctx, running, &cx, c, false, &restart_policy, &mut wake).await?;
            containers.push(obs);
        } else {
            containers.push(waiting_obs(ctx, c, false, "PodInitializing"));
        }
    }
    if mains_done {
        lifecycle::stop_sidecars(ctx, running, &typed, &sandbox, grace).await;
    }
    let observation = Observation {
        init,
        containers,
        initialized: initialized && !init_failed,
        init_failed,
        pod_ip: sandbox.ip.clone(),
    };
    publish(
        ctx,
        running,
        pod,
        &restart_policy,
        qos,
        Some(&sandbox),
        observation,
    )
    .await?;
    Ok(wake)
}

/// Writes the pod status for `observation` unless it is what was last written and the
/// stored status is still ours.
async fn publish(
    ctx: &PodCtx,
    running: &mut Running,
    pod: Value,
    restart_policy: &str,
    qos: QosClass,
    sandbox: Option<&SandboxInfo>,
    observation: Observation,
) -> Result<(), PodError> {
    if let Some((last, value)) = &running.written
        && *last == observation
        && pod.get("status") == Some(value)
    {
        return Ok(());
    }
    let start_time = pod
        .pointer("/status/startTime")
        .and_then(|t| {
            serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>(
                t.clone(),
            )
            .ok()
        })
        .map(|t| t.0)
        .or(sandbox.map(|s| s.created_at))
        .unwrap_or_else(Timestamp::now);
    let written = write_status(ctx, pod, |previous| {
        node::pod_status_view(
            previous,
            &PodView {
                restart_policy,
                host_ip: &ctx.host_ip,
                pod_ip: &observation.pod_ip,
                start_time,
                init: &observation.init,
                containers: &observation.containers,
                initialized: observation.initialized,
                init_failed: observation.init_failed,
                sandbox_ready: sandbox.is_some(),
                qos_class: Some(qos.as_str()),
            },
            Timestamp::now(),
        )
    })
    .await?;
    running.written = written.map(|v| (observation, v));
    Ok(())
}

/// The current instance's status (`None` if there is none or it vanished).
async fn current_status(
    ctx: &PodCtx,
    running: &mut Running,
    name: &str,
) -> Result<Option<ContainerStatus>, PodError> {
    let Some(id) = running.containers.get(name) else {
        return Ok(None);
    };
    match ctx.runtime.container_status(id).await {
        Ok(s) => Ok(Some(s)),
        Err(RuntimeError::NotFound { .. }) => {
            running.containers.remove(name);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Drives one container a step: create it, restart it after its backoff per `policy`,
/// run its due probes. Never fails for the container's own problems (image, config,
/// start): those become its waiting/terminated state and Events.
async fn ensure_container(
    ctx: &PodCtx,
    running: &mut Running,
    cx: &PodCx<'_>,
    c: &Container,
    init: bool,
    policy: &str,
    wake: &mut Instant,
) -> Result<ObservedContainer, PodError> {
    let name = c.name.clone();
    let field_path = events::container_field_path(init, &name);
    let mut obs = ObservedContainer {
        name: name.clone(),
        image: c.image.clone().unwrap_or_default(),
        runtime_name: ctx.runtime_name.clone(),
        sidecar: init && podspec::is_sidecar(c),
        ..Default::default()
    };
    let mut status = current_status(ctx, running, &name).await?;
    if let Some(s) = &status
        && s.state == ContainerState::Exited
        && running.reported_exits.insert(s.id.clone())
    {
        running.probes.remove(&name);
        if s.reason.as_deref() == Some("OOMKilled") {
            let message = format!("Memory cgroup out of memory: container {name} was OOM-killed");
            running
                .event(&field_path, EventType::Warning, "OOMKilling", &message)
                .await;
        }
    }
    match status.clone() {
        None => {
            status = create_and_start(ctx, running, cx, c, init, 0, &mut obs, wake).await?;
        }
        Some(s)
            if s.state == ContainerState::Exited
                && node::should_restart(policy, s.exit_code.unwrap_or(-1)) =>
        {
            let due = schedule_restart(ctx, running, cx, &field_path, &s).await;
            if Instant::now() >= due {
                running.restart_at.remove(&name);
                let restarted =
                    create_and_start(ctx, running, cx, c, init, s.attempt + 1, &mut obs, wake)
                        .await?;
                if let Some(new) = restarted {
                    // Keep the exited instance (logs --previous), drop the one before.
                    if let Some(old) = running.previous.insert(name.clone(), s.id.clone())
                        && old != s.id
                    {
                        running.reported_exits.remove(&old);
                        if let Err(error) = ctx.runtime.remove_container(&old).await {
                            tracing::warn!(message = "removing old container failed", %error);
                        }
                    }
                    running.last.insert(name.clone(), s.clone());
                    status = Some(new);
                }
            }
        }
        Some(_) => {}
    }
    // An exited instance waiting for its restart: CrashLoopBackOff until it is due.
    if let Some(s) = &status
        && s.state == ContainerState::Exited
        && node::should_restart(policy, s.exit_code.unwrap_or(-1))
        && obs.waiting.is_none()
    {
        let due = schedule_restart(ctx, running, cx, &field_path, s).await;
        obs.backoff = true;
        soon(wake, due);
    }
    if let Some(s) = status.clone()
        && s.state == ContainerState::Running
    {
        status = Some(run_probes(ctx, running, cx, c, init, s, &mut obs, wake).await?);
    }
    obs.status = status;
    obs.last = running.last.get(&name).cloned();
    Ok(obs)
}

/// When the exited instance `s` is restarted (scheduled, with a `BackOff` event, on
/// first sight).
async fn schedule_restart(
    ctx: &PodCtx,
    running: &mut Running,
    cx: &PodCx<'_>,
    field_path: &str,
    s: &ContainerStatus,
) -> Instant {
    if let Some(due) = running.restart_at.get(&s.name) {
        return *due;
    }
    let delay = node::restart_backoff(s.attempt, ctx.restart_backoff_base, ctx.restart_backoff_max);
    let due = Instant::now() + delay;
    running.restart_at.insert(s.name.clone(), due);
    if !delay.is_zero() {
        let message = format!(
            "Back-off restarting failed container {} in pod {}_{}({})",
            s.name,
            cx.pod.metadata.name.as_deref().unwrap_or(""),
            cx.namespace(),
            cx.pod.metadata.uid.as_deref().unwrap_or("")
        );
        running
            .event(field_path, EventType::Warning, "BackOff", &message)
            .await;
    }
    due
}

/// Pulls the image per policy, builds the config, creates and starts the container.
/// `None` when it could not be created (the reason is in `obs.waiting`).
#[allow(clippy::too_many_arguments)]
async fn create_and_start(
    ctx: &PodCtx,
    running: &mut Running,
    cx: &PodCx<'_>,
    c: &Container,
    init: bool,
    attempt: u32,
    obs: &mut ObservedContainer,
    wake: &mut Instant,
) -> Result<Option<ContainerStatus>, PodError> {
    let name = c.name.clone();
    let field_path = events::container_field_path(init, &name);
    let image = c.image.clone().unwrap_or_default();
    let pull_policy = podspec::pull_policy(c);
    let present = pull_policy != "Always" && ctx.runtime.image_present(&image).await?;
    if pull_policy == "Never" && !present {
        let message =
            format!("Container image \"{image}\" is not present with pull policy of Never");
        running
            .event(
                &field_path,
                EventType::Warning,
                "ErrImageNeverPull",
                &message,
            )
            .await;
        obs.waiting = Some(("ErrImageNeverPull".into(), message));
        return Ok(None);
    }
    if !present {
        let now = Instant::now();
        if let Some((until, _)) = running.pull_backoff.get(&name).copied()
            && now < until
        {
            let message = format!("Back-off pulling image \"{image}\"");
            running
                .state_event(&field_path, EventType::Normal, "BackOff", &message)
                .await;
            obs.waiting = Some(("ImagePullBackOff".into(), message));
            soon(wake, until);
            return Ok(None);
        }
        running
            .event(
                &field_path,
                EventType::Normal,
                "Pulling",
                &format!("Pulling image \"{image}\""),
            )
            .await;
        match ctx.runtime.pull_image(&image).await {
            Ok(()) => {
                running.pull_backoff.remove(&name);
                let message = format!("Successfully pulled image \"{image}\"");
                running
                    .event(&field_path, EventType::Normal, "Pulled", &message)
                    .await;
            }
            Err(e @ (RuntimeError::ImagePull { .. } | RuntimeError::Invalid(_))) => {
                pull_failed(ctx, running, &field_path, &name, &image, &e, obs, wake).await;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        let message = format!("Container image \"{image}\" already present on machine");
        running
            .event(&field_path, EventType::Normal, "Pulled", &message)
            .await;
    }
    let config = match sources::container_config(ctx, cx, c, attempt).await? {
        Ok(config) => config,
        Err(message) => {
            running
                .event(
                    &field_path,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
            obs.waiting = Some(("CreateContainerConfigError".into(), message));
            return Ok(None);
        }
    };
    let id = match ctx.runtime.create_container(&cx.sandbox.id, &config).await {
        Ok(id) => id,
        Err(RuntimeError::NotFound {
            what: "sandbox", ..
        }) => {
            // The sandbox died under us (runtime restart, node reboot): forget it so the
            // next reconcile starts a new one, as the kubelet recreates a dead sandbox.
            running.sandbox = None;
            running.containers.clear();
            return Err(
                RuntimeError::Unavailable("the pod sandbox is gone; recreating it".into()).into(),
            );
        }
        Err(RuntimeError::Invalid(message)) if message.contains("not ready") => {
            running.sandbox = None;
            running.containers.clear();
            return Err(
                RuntimeError::Unavailable(format!("{message}; recreating the sandbox")).into(),
            );
        }
        Err(e @ RuntimeError::ImagePull { .. }) => {
            pull_failed(ctx, running, &field_path, &name, &image, &e, obs, wake).await;
            return Ok(None);
        }
        Err(e) if !e.is_retryable() => {
            let message = e.to_string();
            running
                .event(
                    &field_path,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
            obs.waiting = Some(("CreateContainerError".into(), message));
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    running.containers.insert(name.clone(), id.clone());
    running.probes.remove(&name);
    running
        .event(
            &field_path,
            EventType::Normal,
            "Created",
            &format!("Created container {name}"),
        )
        .await;
    match ctx.runtime.start_container(&id).await {
        Ok(()) => {
            running
                .event(
                    &field_path,
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
        }
        Err(error) => {
            tracing::warn!(message = "container failed to start", container = %name, %error);
            running
                .event(
                    &field_path,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {error}"),
                )
                .await;
        }
    }
    Ok(Some(ctx.runtime.container_status(&id).await?))
}

/// `ErrImagePull`: events, and the next pull not before the backoff.
#[allow(clippy::too_many_arguments)]
async fn pull_failed(
    ctx: &PodCtx,
    running: &mut Running,
    field_path: &str,
    name: &str,
    image: &str,
    error: &RuntimeError,
    obs: &mut ObservedContainer,
    wake: &mut Instant,
) {
    let message = format!("Failed to pull image \"{image}\": {error}");
    running
        .event(field_path, EventType::Warning, "Failed", &message)
        .await;
    running
        .event(
            field_path,
            EventType::Warning,
            "Failed",
            "Error: ErrImagePull",
        )
        .await;
    let failures = running.pull_backoff.get(name).map_or(0, |b| b.1);
    let delay = node::restart_backoff(failures, ctx.restart_backoff_base, ctx.restart_backoff_max);
    let until = Instant::now() + delay;
    running
        .pull_backoff
        .insert(name.to_string(), (until, failures + 1));
    soon(wake, until);
    obs.waiting = Some(("ErrImagePull".into(), message));
}

/// Runs the container's due probes; a failed liveness or startup probe kills it (it is
/// then restarted per policy). Returns the container's status afterwards.
#[allow(clippy::too_many_arguments)]
async fn run_probes(
    ctx: &PodCtx,
    running: &mut Running,
    cx: &PodCx<'_>,
    c: &Container,
    init: bool,
    status: ContainerStatus,
    obs: &mut ObservedContainer,
    wake: &mut Instant,
) -> Result<ContainerStatus, PodError> {
    let name = c.name.clone();
    let mut tracker = match running.probes.remove(&name) {
        Some(t) if t.container == status.id => t,
        _ => match ProbeTracker::new(c, status.id.clone(), Instant::now()) {
            Some(mut t) => {
                // Re-adopted after an agent restart: keep what was published for this
                // very instance.
                let id = format!("{}://{}", ctx.runtime_name, status.id);
                let published = cx.pod.status.as_ref().and_then(|s| {
                    let list = if init {
                        s.init_container_statuses.as_ref()
                    } else {
                        s.container_statuses.as_ref()
                    };
                    list?
                        .iter()
                        .find(|p| p.name == name && p.container_id.as_deref() == Some(id.as_str()))
                });
                if let Some(p) = published {
                    t.resume(p.ready, p.started.unwrap_or(false));
                }
                t
            }
            None => return Ok(status),
        },
    };
    let field_path = events::container_field_path(init, &name);
    let target = probe::Target {
        runtime: ctx.runtime.as_ref(),
        id: &status.id,
        spec: c,
        pod_ip: &cx.sandbox.ip,
        scripted_network: ctx.runtime_name == crate::hollow::HOLLOW_RUNTIME_NAME,
    };
    let mut kill: Option<ProbeKind> = None;
    for kind in tracker.due(Instant::now()) {
        let Some(state) = tracker.state_mut(kind) else {
            continue;
        };
        let spec = state.probe.clone();
        let timeout = state.timeout();
        let result = probe::run_probe(&target, &spec, timeout).await;
        let Some(state) = tracker.state_mut(kind) else {
            continue;
        };
        state.observe(result.is_ok(), Instant::now());
        let failed_now = state.failed_now();
        if let Err(message) = result {
            let message = format!("{} probe failed: {message}", kind.as_str());
            running
                .event(&field_path, EventType::Warning, "Unhealthy", &message)
                .await;
        }
        if failed_now && matches!(kind, ProbeKind::Liveness | ProbeKind::Startup) {
            kill = Some(kind);
        }
    }
    obs.started = Some(tracker.started());
    obs.ready = tracker.ready();
    if let Some(kind) = kill {
        let message = format!(
            "Container {name} failed {} probe, will be restarted",
            kind.as_str().to_lowercase()
        );
        running
            .event(&field_path, EventType::Normal, "Killing", &message)
            .await;
        let deadline = Instant::now() + cx.grace;
        lifecycle::stop_one(ctx, c, &status.id, &cx.sandbox.ip, deadline, cx.grace).await;
        obs.started = None;
        obs.ready = None;
        return Ok(ctx.runtime.container_status(&status.id).await?);
    }
    if let Some(next) = tracker.next_due() {
        soon(wake, next);
    }
    running.probes.insert(name, tracker);
    Ok(status)
}

/// Writes `status(previous)` into the pod with a CAS, re-reading on conflict. Stops
/// (successfully) when the pod is gone or terminating: the next event handles that.
async fn write_status(
    ctx: &PodCtx,
    mut pod: Value,
    status: impl Fn(Option<&PodStatus>) -> PodStatus,
) -> Result<Option<Value>, PodError> {
    let kind = pod_kind();
    for _ in 0..CAS_ATTEMPTS {
        if object::is_terminating(&pod) {
            return Ok(None);
        }
        let previous: Option<PodStatus> = pod
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let new = serde_json::to_value(status(previous.as_ref()))
            .map_err(|e| StoreError::BadRequest(format!("encoding pod status: {e}")))?;
        if pod.get("status") == Some(&new) {
            return Ok(Some(new));
        }
        if let Some(map) = pod.as_object_mut() {
            map.insert("status".into(), new.clone());
        }
        match ctx.store.update(kind, pod.clone()).await {
            Ok(_) => return Ok(Some(new)),
            Err(StoreError::Conflict { .. }) => {
                let namespace = object::namespace(&pod).map(str::to_string);
                let name = object::name(&pod).to_string();
                pod = match ctx.store.get(kind, namespace.as_deref(), &name).await {
                    Ok(p) => p,
                    Err(StoreError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
            }
            Err(StoreError::NotFound { .. }) => return Ok(None),
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
