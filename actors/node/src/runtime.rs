//! The container runtime seam. PodActors and the NodeActor only ever talk to a
//! [`Runtime`], never to CRI directly: the containerd implementation speaks CRI, the
//! hollow one ([`crate::hollow`]) keeps everything in memory for simulated fleets.
//!
//! The shape follows CRI (sandbox = a pod's network namespace and IP; containers run
//! inside a sandbox) but stays drover-level: plain Rust types, no protobuf, and only what
//! the agent needs. Every call is idempotent where CRI's is (stopping a stopped container
//! succeeds), so a restarted agent can re-run a reconcile without special cases.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::Timestamp;

/// Identifier of a pod sandbox, chosen by the runtime.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SandboxId(pub String);

/// Identifier of a container, chosen by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(pub String);

impl std::fmt::Display for SandboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a sandbox is made from: the pod's identity (so sandboxes can be matched to pods
/// again after an agent restart) and its network-relevant bits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxConfig {
    /// `metadata.uid` of the pod.
    pub pod_uid: String,
    /// `metadata.namespace` of the pod.
    pub namespace: String,
    /// `metadata.name` of the pod.
    pub name: String,
    /// Hostname inside the sandbox (`spec.hostname`, else the pod name).
    pub hostname: String,
    /// `spec.hostNetwork`: share the node's network namespace (the pod IP is the node's).
    pub host_network: bool,
    /// Labels recorded on the sandbox (the pod's labels).
    pub labels: BTreeMap<String, String>,
    /// Host ports to forward into the sandbox (`containerPort.hostPort`, CNI portmap).
    pub port_mappings: Vec<PortMapping>,
    /// The pod's DNS settings (written to its `/etc/resolv.conf`); `None` keeps the
    /// runtime's default.
    pub dns: Option<DnsConfig>,
    /// Cgroup parent for the sandbox and its containers (the pod's QoS cgroup, e.g.
    /// `/kubepods/burstable/pod<uid>`); `None` lets the runtime choose.
    pub cgroup_parent: Option<String>,
}

/// One host port forwarded into a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Port inside the pod.
    pub container_port: u16,
    /// Port on the node.
    pub host_port: u16,
    /// Node address to bind; empty for all.
    pub host_ip: String,
}

/// A pod's resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line (`ndots:5`).
    pub options: Vec<String>,
}

/// A bind mount into a container (volumes are materialised on the node by the agent and
/// bind-mounted; the runtime never interprets volume types).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    /// Path on the node.
    pub host_path: std::path::PathBuf,
    /// Path inside the container.
    pub container_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// Linux resources of one container, already translated from requests/limits (CRI's
/// `LinuxContainerResources`). Zero means unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// `cpu.shares` (from the CPU request; 2 when unset, as the kubelet does).
    pub cpu_shares: u64,
    /// CFS quota in microseconds per period (from the CPU limit); 0 for none.
    pub cpu_quota: i64,
    /// CFS period in microseconds (100000 when a quota is set).
    pub cpu_period: i64,
    /// Memory limit in bytes; 0 for none.
    pub memory_limit_bytes: i64,
    /// `oom_score_adj` for the container's processes (by QoS class).
    pub oom_score_adj: i64,
}

/// What `exec_sync` returns (exec probes, `kubectl exec` without a terminal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code.
    pub exit_code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// A streaming exec request (`kubectl exec`), CRI's `ExecRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container.
    pub container: ContainerId,
    /// The command.
    pub command: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Attach standard input.
    pub stdin: bool,
    /// Attach standard output.
    pub stdout: bool,
    /// Attach standard error (always false with a terminal).
    pub stderr: bool,
}

/// A sandbox the runtime started: its id and the pod IP it got.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxInfo {
    /// Runtime-chosen id.
    pub id: SandboxId,
    /// The pod IP (from the node's pod CIDR; the node IP with host networking).
    pub ip: String,
    /// Whether the sandbox is ready (running) or stopped (network torn down).
    pub state: SandboxState,
    /// The config it was created from (carries the pod identity for re-adoption).
    pub config: SandboxConfig,
    /// When it was created.
    pub created_at: Timestamp,
}

/// CRI's `PodSandboxState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    /// Running, with its network set up.
    Ready,
    /// Stopped: every container killed, network torn down; only removal is left.
    NotReady,
}

/// What a container is made from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    /// The container's name in the pod spec.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint override (`command`).
    pub command: Vec<String>,
    /// Arguments (`args`).
    pub args: Vec<String>,
    /// Resolved environment.
    pub env: Vec<(String, String)>,
    /// Working directory, when set.
    pub working_dir: Option<String>,
    /// How many times this container was restarted before (recorded on the container so
    /// a restarted agent can rebuild `restartCount`).
    pub attempt: u32,
    /// Bind mounts (materialised volumes).
    pub mounts: Vec<Mount>,
    /// Cgroup limits.
    pub resources: Resources,
    /// Keep standard input open (`stdin: true`).
    pub stdin: bool,
    /// Allocate a terminal (`tty: true`).
    pub tty: bool,
    /// Labels recorded on the container (drover puts the pod and container identity
    /// here so a restarted agent can match containers without the store).
    pub labels: BTreeMap<String, String>,
}

/// CRI's `ContainerState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started yet.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (see the exit code and reason).
    Exited,
    /// The runtime lost track of it.
    Unknown,
}

/// Everything the agent needs to write a `containerStatuses` entry and decide on
/// restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    /// Runtime-chosen id.
    pub id: ContainerId,
    /// The sandbox it runs in.
    pub sandbox_id: SandboxId,
    /// Name in the pod spec.
    pub name: String,
    /// Image reference it was created from.
    pub image: String,
    /// Current state.
    pub state: ContainerState,
    /// Exit code, once [`ContainerState::Exited`].
    pub exit_code: Option<i32>,
    /// Short CamelCase reason (`Completed`, `Error`, `OOMKilled`, `StartError`).
    pub reason: Option<String>,
    /// Human-readable detail.
    pub message: Option<String>,
    /// Restart attempt it was created for (see [`ContainerConfig::attempt`]).
    pub attempt: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its process started.
    pub started_at: Option<Timestamp>,
    /// When its process ended.
    pub finished_at: Option<Timestamp>,
    /// The container's log file on the node (CRI log format), when the runtime keeps
    /// one; `kubectl logs` reads it.
    pub log_path: Option<std::path::PathBuf>,
}

/// Resource usage of one container (what `kubectl top` and evictions read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContainerStats {
    /// CPU in use, millicores.
    pub cpu_millis: u64,
    /// Working-set memory, bytes.
    pub memory_bytes: u64,
}

/// Runtime name and version, for `nodeInfo.containerRuntimeVersion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// `containerd`, `hollow`.
    pub name: String,
    /// `1.6.20`, `0.1.0`.
    pub version: String,
}

impl RuntimeVersion {
    /// The `<name>://<version>` form Kubernetes shows (`containerd://1.6.20`).
    pub fn node_info_string(&self) -> String {
        format!("{}://{}", self.name, self.version)
    }
}

/// Errors of a [`Runtime`]. Each says whether retrying the same call may help and what
/// the failed call left behind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    /// The sandbox or container does not exist. Not retryable; the caller's view is
    /// stale (re-list). Nothing changed.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// `sandbox` or `container`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request cannot work as given (bad image reference, container in a stopped
    /// sandbox, no pod CIDR configured yet). Not retryable until the input changes.
    /// Nothing changed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The runtime could not be reached or timed out. Retryable with backoff; the call
    /// may or may not have been applied, so the caller re-lists before acting again.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// Pulling the image failed. Retryable with backoff (`ImagePullBackOff`). Nothing
    /// was created.
    #[error("pulling image {image:?}: {reason}")]
    ImagePull {
        /// The image reference.
        image: String,
        /// Why.
        reason: String,
    },
    /// The operation ran and failed (sandbox network setup, container start). Retryable:
    /// the failed sandbox or container may exist in a stopped state and is cleaned up by
    /// the next stop/remove.
    #[error("{0}")]
    Failed(String),
    /// The pod CIDR has no free address. Retryable once pods go away. Nothing changed.
    #[error("no free pod ip in {cidr}")]
    IpExhausted {
        /// The node's pod CIDR.
        cidr: String,
    },
}

impl RuntimeError {
    /// Whether retrying the same call (after a backoff) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RuntimeError::Unavailable(_)
                | RuntimeError::ImagePull { .. }
                | RuntimeError::Failed(_)
                | RuntimeError::IpExhausted { .. }
        )
    }
}

/// Result alias for runtime calls.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A container runtime as the node agent uses it. Implementations are shared by every
/// PodActor of a node (`Arc<dyn Runtime>`), so all methods take `&self`.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Name and version (`containerd` `1.6.20`, `hollow` `0.1.0`); for
    /// `nodeInfo.containerRuntimeVersion`. Errors: [`RuntimeError::Unavailable`].
    async fn version(&self) -> Result<RuntimeVersion>;

    /// Tells the runtime the node's pod CIDR (CRI's `UpdateRuntimeConfig`); sandboxes
    /// started afterwards get IPs from it. Idempotent. Errors: `Invalid` for a malformed
    /// CIDR.
    async fn update_pod_cidr(&self, cidr: &str) -> Result<()>;

    /// Creates and starts a pod sandbox (network namespace + IP). Not idempotent: a
    /// second call makes a second sandbox, so callers look for an existing one with
    /// [`Runtime::list_sandboxes`] first. Errors: `Invalid` (no pod CIDR yet),
    /// `IpExhausted`, `Failed`, `Unavailable`.
    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo>;

    /// Stops a sandbox: kills its containers and tears its network down. Idempotent
    /// (stopping a stopped sandbox succeeds). Errors: `NotFound`, `Unavailable`.
    async fn stop_sandbox(&self, id: &SandboxId) -> Result<()>;

    /// Removes a stopped sandbox and its containers, releasing the IP. Removing a
    /// missing sandbox succeeds (as in CRI). Errors: `Unavailable`.
    async fn remove_sandbox(&self, id: &SandboxId) -> Result<()>;

    /// Pulls the image if needed and creates a container in a ready sandbox; it is not
    /// started. Errors: `NotFound` (sandbox), `Invalid` (sandbox not ready), `ImagePull`,
    /// `Failed`, `Unavailable`.
    async fn create_container(
        &self,
        sandbox: &SandboxId,
        config: &ContainerConfig,
    ) -> Result<ContainerId>;

    /// Starts a created container. Errors: `NotFound`, `Invalid` (not in `Created`),
    /// `Failed` (the process did not start; the container is `Exited` with reason
    /// `StartError`), `Unavailable`.
    async fn start_container(&self, id: &ContainerId) -> Result<()>;

    /// Stops a container: SIGTERM, then SIGKILL after `grace`. Idempotent. Errors:
    /// `NotFound`, `Unavailable`.
    async fn stop_container(&self, id: &ContainerId, grace: std::time::Duration) -> Result<()>;

    /// Removes a container (stopping it first if it runs). Removing a missing container
    /// succeeds. Errors: `Unavailable`.
    async fn remove_container(&self, id: &ContainerId) -> Result<()>;

    /// Current state of one container. Errors: `NotFound`, `Unavailable`.
    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus>;

    /// Resource usage of one running container. Errors: `NotFound`, `Unavailable`.
    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats>;

    /// Every sandbox the runtime holds, ready or not (re-adoption after a restart).
    /// Errors: `Unavailable`.
    async fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>>;

    /// Every container, optionally only those of one sandbox. Errors: `Unavailable`.
    async fn list_containers(&self, sandbox: Option<&SandboxId>) -> Result<Vec<ContainerStatus>>;

    /// Whether the image is present on the node (for `imagePullPolicy: IfNotPresent` and
    /// `Never`). Errors: `Unavailable`.
    async fn image_present(&self, image: &str) -> Result<bool> {
        let _ = image;
        Ok(true)
    }

    /// Pulls the image (again, for `imagePullPolicy: Always`). Errors: `ImagePull`
    /// (retryable: `ImagePullBackOff`), `Invalid` (malformed reference), `Unavailable`.
    async fn pull_image(&self, image: &str) -> Result<()> {
        let _ = image;
        Ok(())
    }

    /// Runs a command in a running container and waits for it, at most `timeout` (exec
    /// probes, preStop exec hooks). Errors: `NotFound`, `Invalid` (not running),
    /// `Failed` (timed out), `Unavailable`.
    async fn exec_sync(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutput> {
        let _ = (id, command, timeout);
        Err(RuntimeError::Invalid(
            "this runtime does not run commands in containers".into(),
        ))
    }

    /// Prepares a streaming exec and returns the URL of the runtime's streaming server
    /// that serves it (CRI `Exec`: the caller connects to the URL with the
    /// `channel.k8s.io` WebSocket protocols). Errors: `NotFound`, `Invalid`,
    /// `Unavailable`.
    async fn exec(&self, request: &ExecRequest) -> Result<String> {
        let _ = request;
        Err(RuntimeError::Invalid(
            "this runtime does not run commands in containers".into(),
        ))
    }
}
