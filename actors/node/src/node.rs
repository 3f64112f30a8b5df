//! I/O-free cores of the node agent: the Node object it registers, its conditions and
//! Lease, and the status it writes for a running pod. Times come in as arguments; the
//! only I/O is [`machine_capacity`], which reads the machine and is kept apart.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};

use crate::runtime;

/// Namespace holding node heartbeat Leases (as in Kubernetes).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration written on the node's Lease (kubelet's default, 40 s).
pub const DEFAULT_LEASE_DURATION_SECONDS: i32 = 40;
/// Pods per node (kubelet's `maxPods` default).
pub const DEFAULT_MAX_PODS: u32 = 110;

/// What the node offers (capacity; allocatable is the same until reservations exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// CPU, millicores.
    pub cpu_millis: u64,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Ephemeral storage (the data dir's filesystem), bytes.
    pub ephemeral_storage_bytes: u64,
    /// Pods the node accepts.
    pub pods: u32,
}

impl Capacity {
    /// The `capacity` / `allocatable` map of a NodeStatus.
    pub fn to_quantities(&self) -> BTreeMap<String, Quantity> {
        let cpu = if self.cpu_millis.is_multiple_of(1000) {
            (self.cpu_millis / 1000).to_string()
        } else {
            format!("{}m", self.cpu_millis)
        };
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu)),
            (
                "memory".to_string(),
                Quantity(bytes_quantity(self.memory_bytes)),
            ),
            (
                "ephemeral-storage".to_string(),
                Quantity(bytes_quantity(self.ephemeral_storage_bytes)),
            ),
            ("pods".to_string(), Quantity(self.pods.to_string())),
        ])
    }
}

/// Bytes as kubelet writes them: `Ki` when whole kibibytes, else plain bytes.
fn bytes_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// Reads this machine's capacity: CPUs (available parallelism), `MemTotal` from
/// `/proc/meminfo`, and the size of the filesystem holding `data_dir` (statvfs).
pub fn machine_capacity(data_dir: &Path) -> std::io::Result<Capacity> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let memory_bytes = parse_meminfo_total(&meminfo).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no MemTotal in /proc/meminfo",
        )
    })?;
    let vfs = nix::sys::statvfs::statvfs(data_dir).map_err(std::io::Error::from)?;
    let ephemeral_storage_bytes = vfs.blocks() as u64 * vfs.fragment_size() as u64;
    Ok(Capacity {
        cpu_millis: cpus * 1000,
        memory_bytes,
        ephemeral_storage_bytes,
        pods: DEFAULT_MAX_PODS,
    })
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Who the node is: everything in the Node object that is not measured.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeIdentity {
    /// Node name (also `kubernetes.io/hostname`).
    pub name: String,
    /// `topology.kubernetes.io/zone`, when known.
    pub zone: Option<String>,
    /// `kubernetes.io/arch` in Go's spelling (`amd64`, `arm64`).
    pub arch: String,
    /// Extra labels (win over none of the well-known ones).
    pub labels: BTreeMap<String, String>,
    /// The node's InternalIP address (also the hostIP of its pods).
    pub address: String,
    /// Taints the Node is registered with (kubelet's `--register-with-taints`): set
    /// when the Node is first created only, so taints changed later by others stay.
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
}

/// Go's name for this machine's architecture (`kubernetes.io/arch`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The node's labels: extras first, then the well-known ones (which win).
pub fn node_labels(id: &NodeIdentity) -> BTreeMap<String, String> {
    let mut labels = id.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), id.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), id.arch.clone());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), id.arch.clone());
    if let Some(zone) = &id.zone {
        labels.insert("topology.kubernetes.io/zone".into(), zone.clone());
    }
    labels
}

/// The four standard conditions of a healthy node, all heartbeating at `now`;
/// transition times are kept from `previous` when the status did not change.
pub fn healthy_conditions(previous: &[NodeCondition], now: Timestamp) -> Vec<NodeCondition> {
    let wanted = [
        (
            "Ready",
            "True",
            "KubeletReady",
            "drover node agent is posting ready status",
        ),
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "node has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "node has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "node has sufficient PID available",
        ),
    ];
    wanted
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let transition = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

/// The Node this agent registers (or refreshes): labels, podCIDR, capacity, conditions,
/// addresses and nodeInfo. `previous` (the stored Node, if any) keeps condition
/// transition times and metadata the agent does not own (annotations, taints set by
/// others, resourceVersion for the CAS).
pub fn build_node(
    id: &NodeIdentity,
    capacity: &Capacity,
    runtime_version: &runtime::RuntimeVersion,
    pod_cidr: &str,
    previous: Option<&Node>,
    now: Timestamp,
) -> Node {
    let mut node = previous.cloned().unwrap_or_default();
    node.metadata.name = Some(id.name.clone());
    let mut labels = node.metadata.labels.take().unwrap_or_default();
    labels.extend(node_labels(id));
    node.metadata.labels = Some(labels);
    let spec = node.spec.get_or_insert_with(NodeSpec::default);
    if previous.is_none() && !id.taints.is_empty() {
        spec.taints = Some(id.taints.clone());
    }
    spec.pod_cidr = Some(pod_cidr.to_string());
    spec.pod_cidrs = Some(vec![pod_cidr.to_string()]);
    let previous_conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let quantities = capacity.to_quantities();
    node.status = Some(NodeStatus {
        capacity: Some(quantities.clone()),
        allocatable: Some(quantities),
        conditions: Some(with_foreign_conditions(
            healthy_conditions(&previous_conditions, now),
            &previous_conditions,
        )),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: id.address.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: id.name.clone(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: id.arch.clone(),
            operating_system: "linux".into(),
            container_runtime_version: runtime_version.node_info_string(),
            kubelet_version: format!("drover-{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            os_image: "drover".into(),
            kernel_version: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            ..Default::default()
        }),
        ..node.status.take().unwrap_or_default()
    });
    node
}

/// `own` plus the `previous` conditions of other types: conditions that others own (the
/// node lifecycle controller's `GossipReachable`) survive the agent's refresh, as
/// kubelet's setters touch only their own types.
fn with_foreign_conditions(
    mut own: Vec<NodeCondition>,
    previous: &[NodeCondition],
) -> Vec<NodeCondition> {
    let foreign: Vec<NodeCondition> = previous
        .iter()
        .filter(|p| !own.iter().any(|c| c.type_ == p.type_))
        .cloned()
        .collect();
    own.extend(foreign);
    own
}

/// The node's heartbeat Lease, owned by its Node (so deleting the Node removes it).
pub fn node_lease(
    node_name: &str,
    node_uid: Option<&str>,
    duration_seconds: i32,
    now: Timestamp,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            namespace: Some(NODE_LEASE_NAMESPACE.to_string()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node_name.to_string(),
                    uid: uid.to_string(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node_name.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// First restart delay of a container that exited (kubelet's CrashLoopBackOff base).
pub const DEFAULT_RESTART_BACKOFF_BASE: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest restart delay (kubelet's cap).
pub const DEFAULT_RESTART_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a container that exited with `exit_code` is restarted under the pod's
/// `restartPolicy` (`Always`, `OnFailure`, `Never`; unknown values count as `Always`,
/// the API default).
pub fn should_restart(restart_policy: &str, exit_code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Delay before restart number `restart_count + 1`: `base * 2^restart_count`, capped.
pub fn restart_backoff(
    restart_count: u32,
    base: std::time::Duration,
    max: std::time::Duration,
) -> std::time::Duration {
    let factor = 1u32.checked_shl(restart_count.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// One container of a pod as the runtime sees it, with its spec name and image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedContainer {
    /// Name in the pod spec.
    pub name: String,
    /// Image in the pod spec.
    pub image: String,
    /// What the runtime reports, if the container exists.
    pub status: Option<runtime::ContainerStatus>,
    /// The final state of the previous instance (after a restart): `lastState`.
    pub last: Option<runtime::ContainerStatus>,
    /// The container exited and waits for its restart delay (`CrashLoopBackOff`).
    pub backoff: bool,
    /// The runtime's name, the scheme of `containerID` (`containerd://<id>`).
    pub runtime_name: String,
    /// Why the container cannot be (re)created right now (`ErrImagePull`,
    /// `ImagePullBackOff`, `CreateContainerConfigError`, `PodInitializing`): shown as
    /// the waiting state instead of what the runtime reports.
    pub waiting: Option<(String, String)>,
    /// Readiness from the readiness probe; `None`: no probe (ready while running).
    pub ready: Option<bool>,
    /// Whether the startup probe passed; `None`: no probe (started while running).
    pub started: Option<bool>,
    /// An init container with `restartPolicy: Always`.
    pub sidecar: bool,
}

fn terminated(runtime_name: &str, s: &runtime::ContainerStatus) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: s.exit_code.unwrap_or(-1),
            reason: s.reason.clone(),
            message: s.message.clone(),
            started_at: s.started_at.map(Time),
            finished_at: s.finished_at.map(Time),
            container_id: Some(format!("{runtime_name}://{}", s.id)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `containerStatuses` entry for one observed container.
pub fn container_status(c: &ObservedContainer) -> ContainerStatus {
    let time = |t: Option<Timestamp>| t.map(Time);
    let (state, running) = match &c.status {
        _ if c.waiting.is_some() => {
            let (reason, message) = c.waiting.clone().unwrap_or_default();
            (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason),
                        message: (!message.is_empty()).then_some(message),
                    }),
                    ..Default::default()
                },
                false,
            )
        }
        Some(s) if c.backoff && s.state == runtime::ContainerState::Exited => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: Some(format!(
                        "back-off restarting failed container {} in pod",
                        c.name
                    )),
                }),
                ..Default::default()
            },
            false,
        ),
        None => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            },
            false,
        ),
        Some(s) => match s.state {
            runtime::ContainerState::Running => (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time(s.started_at),
                    }),
                    ..Default::default()
                },
                true,
            ),
            runtime::ContainerState::Exited => (terminated(&c.runtime_name, s), false),
            runtime::ContainerState::Created | runtime::ContainerState::Unknown => (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    }),
                    ..Default::default()
                },
                false,
            ),
        },
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id: c
            .status
            .as_ref()
            .map(|s| format!("{}://{}", c.runtime_name, s.id)),
        ready: running && c.started.unwrap_or(true) && c.ready.unwrap_or(true),
        started: Some(running && c.started.unwrap_or(true)),
        restart_count: c.status.as_ref().map_or(0, |s| s.attempt as i32),
        state: Some(state),
        // In backoff the exited instance is the last state; after a restart, the
        // previous instance is.
        last_state: match &c.status {
            Some(s)
                if (c.backoff || c.waiting.is_some())
                    && s.state == runtime::ContainerState::Exited =>
            {
                Some(terminated(&c.runtime_name, s))
            }
            _ => c.last.as_ref().map(|s| terminated(&c.runtime_name, s)),
        },
        ..Default::default()
    }
}

/// The status of a pod whose sandbox runs, with only regular containers (no init
/// containers, QoS unknown); see [`pod_status_view`].
pub fn pod_status(
    previous: Option<&PodStatus>,
    restart_policy: &str,
    host_ip: &str,
    pod_ip: &str,
    start_time: Timestamp,
    containers: &[ObservedContainer],
    now: Timestamp,
) -> PodStatus {
    pod_status_view(
        previous,
        &PodView {
            restart_policy,
            host_ip,
            pod_ip,
            start_time,
            init: &[],
            containers,
            initialized: true,
            init_failed: false,
            sandbox_ready: true,
            qos_class: None,
        },
        now,
    )
}

/// Everything the pod status is built from.
#[derive(Debug, Clone)]
pub struct PodView<'a> {
    /// `spec.restartPolicy` (`Always`, `OnFailure`, `Never`).
    pub restart_policy: &'a str,
    /// `status.hostIP`.
    pub host_ip: &'a str,
    /// `status.podIP` (empty before the sandbox runs).
    pub pod_ip: &'a str,
    /// `status.startTime`.
    pub start_time: Timestamp,
    /// Init containers (sidecars included), in spec order.
    pub init: &'a [ObservedContainer],
    /// Regular containers.
    pub containers: &'a [ObservedContainer],
    /// Every regular init container completed and every sidecar started.
    pub initialized: bool,
    /// A regular init container failed and will not be retried (`restartPolicy: Never`).
    pub init_failed: bool,
    /// The sandbox runs (`PodReadyToStartContainers`).
    pub sandbox_ready: bool,
    /// `status.qosClass`.
    pub qos_class: Option<&'a str>,
}

/// The status of a pod: phase (by restart policy), IPs, start time, init and regular
/// container statuses, and the conditions `PodReadyToStartContainers`, `Initialized`,
/// `ContainersReady`, `Ready`, `PodScheduled`. Transition times are kept from
/// `previous` when a condition did not change, so an unchanged pod yields an unchanged
/// status (and no write).
pub fn pod_status_view(
    previous: Option<&PodStatus>,
    view: &PodView<'_>,
    now: Timestamp,
) -> PodStatus {
    let restart_policy = view.restart_policy;
    let containers = view.containers;
    let statuses: Vec<ContainerStatus> = containers.iter().map(container_status).collect();
    let init_statuses: Vec<ContainerStatus> = view.init.iter().map(container_status).collect();
    let sidecars_ready = view
        .init
        .iter()
        .zip(&init_statuses)
        .filter(|(c, _)| c.sidecar)
        .all(|(_, s)| s.ready);
    let all_ready = view.initialized
        && !statuses.is_empty()
        && statuses.iter().all(|s| s.ready)
        && sidecars_ready;
    let any_running = statuses
        .iter()
        .any(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()));
    let all_terminated = !statuses.is_empty()
        && statuses
            .iter()
            .all(|s| s.state.as_ref().is_some_and(|st| st.terminated.is_some()));
    let all_ok = all_terminated
        && statuses.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        });
    // A pod is over only when its restart policy lets nothing run again (Kubernetes'
    // phase rules); a pod that would be restarted stays Running (once something ran)
    // or Pending.
    let ever_started = containers
        .iter()
        .any(|c| c.status.as_ref().is_some_and(|s| s.started_at.is_some()));
    let phase = match restart_policy {
        _ if view.init_failed => "Failed",
        _ if !view.initialized => "Pending",
        _ if any_running => "Running",
        "Never" if all_terminated => {
            if all_ok {
                "Succeeded"
            } else {
                "Failed"
            }
        }
        "OnFailure" if all_ok => "Succeeded",
        _ if ever_started => "Running",
        _ => "Pending",
    };
    let flag = |b: bool| if b { "True" } else { "False" };
    let previous_conditions = previous
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let condition = |type_: &str, status: &str| {
        let transition = previous_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(transition),
            ..Default::default()
        }
    };
    let pod_ip = (!view.pod_ip.is_empty()).then(|| view.pod_ip.to_string());
    PodStatus {
        phase: Some(phase.into()),
        host_ip: Some(view.host_ip.into()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: view.host_ip.into(),
        }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: Some(Time(view.start_time)),
        qos_class: view
            .qos_class
            .map(str::to_string)
            .or_else(|| previous.and_then(|s| s.qos_class.clone())),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", flag(view.sandbox_ready)),
            condition("Initialized", flag(view.initialized)),
            condition("ContainersReady", flag(all_ready)),
            condition("Ready", flag(all_ready)),
            condition("PodScheduled", "True"),
        ]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
