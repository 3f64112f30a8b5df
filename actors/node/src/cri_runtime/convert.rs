//! Pure translation between drover's runtime types ([`crate::runtime`]) and CRI's
//! protobuf types, plus the error mapping. No I/O, so every rule is unit-tested here.
//!
//! Re-adoption after an agent restart must rebuild a [`SandboxConfig`] from what
//! containerd remembers. CRI keeps labels and annotations verbatim, so the whole drover
//! config travels as JSON in one sandbox annotation ([`SANDBOX_CONFIG_ANNOTATION`]); the
//! kubelet-style `io.kubernetes.*` labels are there for people reading `crictl` output.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

use crate::cri::CriError;
use crate::runtime::{
    ContainerConfig, ContainerId, ContainerState, ContainerStatus, DnsConfig, Mount, PortMapping,
    RuntimeError, SandboxConfig, SandboxId,
};

/// Sandbox annotation holding the JSON of the drover [`SandboxConfig`].
pub const SANDBOX_CONFIG_ANNOTATION: &str = "drover.io/sandbox-config";
/// Container annotation holding the image reference as the pod spec wrote it (containerd
/// reports a normalised one, `docker.io/library/busybox:latest` for `busybox`).
pub const IMAGE_ANNOTATION: &str = "drover.io/image";
/// Label with the pod's uid, as the kubelet sets it.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label with the pod's name.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label with the pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label with the container's name in the pod spec.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// Serialisable mirror of [`SandboxConfig`] (the runtime types stay free of serde).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StoredSandbox {
    pod_uid: String,
    namespace: String,
    name: String,
    hostname: String,
    host_network: bool,
    labels: BTreeMap<String, String>,
    ports: Vec<(String, u16, u16, String)>,
    dns: Option<(Vec<String>, Vec<String>, Vec<String>)>,
    cgroup_parent: Option<String>,
}

fn store_sandbox(c: &SandboxConfig) -> String {
    let s = StoredSandbox {
        pod_uid: c.pod_uid.clone(),
        namespace: c.namespace.clone(),
        name: c.name.clone(),
        hostname: c.hostname.clone(),
        host_network: c.host_network,
        labels: c.labels.clone(),
        ports: c
            .port_mappings
            .iter()
            .map(|p| {
                (
                    p.protocol.clone(),
                    p.container_port,
                    p.host_port,
                    p.host_ip.clone(),
                )
            })
            .collect(),
        dns: c
            .dns
            .as_ref()
            .map(|d| (d.servers.clone(), d.searches.clone(), d.options.clone())),
        cgroup_parent: c.cgroup_parent.clone(),
    };
    serde_json::to_string(&s).unwrap_or_default()
}

/// Rebuilds the drover config of a sandbox from its CRI metadata, labels and annotations:
/// the annotation when drover created it, else what the metadata says (a sandbox made
/// by another CRI client still gets its pod identity).
pub fn sandbox_config_from_cri(
    metadata: Option<&cri::PodSandboxMetadata>,
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> SandboxConfig {
    if let Some(s) = annotations
        .get(SANDBOX_CONFIG_ANNOTATION)
        .and_then(|j| serde_json::from_str::<StoredSandbox>(j).ok())
    {
        return SandboxConfig {
            pod_uid: s.pod_uid,
            namespace: s.namespace,
            name: s.name,
            hostname: s.hostname,
            host_network: s.host_network,
            labels: s.labels,
            port_mappings: s
                .ports
                .into_iter()
                .map(
                    |(protocol, container_port, host_port, host_ip)| PortMapping {
                        protocol,
                        container_port,
                        host_port,
                        host_ip,
                    },
                )
                .collect(),
            dns: s.dns.map(|(servers, searches, options)| DnsConfig {
                servers,
                searches,
                options,
            }),
            cgroup_parent: s.cgroup_parent,
        };
    }
    let meta = metadata.cloned().unwrap_or_default();
    SandboxConfig {
        pod_uid: meta.uid,
        namespace: meta.namespace,
        hostname: meta.name.clone(),
        name: meta.name,
        labels: labels
            .iter()
            .filter(|(k, _)| !k.starts_with("io.kubernetes."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

/// The per-pod log directory: `<pods_dir>/<namespace>_<name>_<uid>` (the kubelet's
/// layout, so log tooling that knows it finds drover's logs too).
pub fn pod_log_dir(pods_dir: &Path, c: &SandboxConfig) -> PathBuf {
    pods_dir.join(format!("{}_{}_{}", c.namespace, c.name, c.pod_uid))
}

fn protocol(p: &str) -> i32 {
    match p.to_ascii_uppercase().as_str() {
        "UDP" => cri::Protocol::Udp as i32,
        "SCTP" => cri::Protocol::Sctp as i32,
        _ => cri::Protocol::Tcp as i32,
    }
}

/// The CRI sandbox config for a drover one. Pod-scoped network (unless host
/// networking) and IPC namespaces; each container gets its own PID namespace, as the
/// kubelet does without `shareProcessNamespace`.
pub fn sandbox_to_cri(c: &SandboxConfig, log_dir: &Path) -> cri::PodSandboxConfig {
    let network = if c.host_network {
        cri::NamespaceMode::Node
    } else {
        cri::NamespaceMode::Pod
    };
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.insert(POD_UID_LABEL.into(), c.pod_uid.clone());
    labels.insert(POD_NAME_LABEL.into(), c.name.clone());
    labels.insert(POD_NAMESPACE_LABEL.into(), c.namespace.clone());
    let annotations = HashMap::from([(SANDBOX_CONFIG_ANNOTATION.to_string(), store_sandbox(c))]);
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: c.name.clone(),
            uid: c.pod_uid.clone(),
            namespace: c.namespace.clone(),
            attempt: 0,
        }),
        hostname: c.hostname.clone(),
        log_directory: log_dir.display().to_string(),
        dns_config: c.dns.as_ref().map(|d| cri::DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        port_mappings: c
            .port_mappings
            .iter()
            .map(|p| cri::PortMapping {
                protocol: protocol(&p.protocol),
                container_port: i32::from(p.container_port),
                host_port: i32::from(p.host_port),
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: c.cgroup_parent.clone().unwrap_or_default(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: network as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container's log file relative to the pod's log directory.
pub fn container_log_path(name: &str, attempt: u32) -> String {
    format!("{name}/{attempt}.log")
}

fn mount_to_cri(m: &Mount) -> cri::Mount {
    cri::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.display().to_string(),
        readonly: m.read_only,
        ..Default::default()
    }
}

/// The CRI container config for a drover one, inside a sandbox made from `sandbox`.
pub fn container_to_cri(c: &ContainerConfig, sandbox: &SandboxConfig) -> cri::ContainerConfig {
    let network = if sandbox.host_network {
        cri::NamespaceMode::Node
    } else {
        cri::NamespaceMode::Pod
    };
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.insert(CONTAINER_NAME_LABEL.into(), c.name.clone());
    labels.insert(POD_UID_LABEL.into(), sandbox.pod_uid.clone());
    labels.insert(POD_NAME_LABEL.into(), sandbox.name.clone());
    labels.insert(POD_NAMESPACE_LABEL.into(), sandbox.namespace.clone());
    let r = &c.resources;
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: c.attempt,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone(),
            ..Default::default()
        }),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: c
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: c.mounts.iter().map(mount_to_cri).collect(),
        labels,
        annotations: HashMap::from([(IMAGE_ANNOTATION.to_string(), c.image.clone())]),
        log_path: container_log_path(&c.name, c.attempt),
        stdin: c.stdin,
        stdin_once: false,
        tty: c.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: r.cpu_period,
                cpu_quota: r.cpu_quota,
                cpu_shares: i64::try_from(r.cpu_shares).unwrap_or(i64::MAX),
                memory_limit_in_bytes: r.memory_limit_bytes,
                oom_score_adj: r.oom_score_adj,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: network as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// CRI nanoseconds since the epoch; 0 (unset) is `None`.
pub fn timestamp(nanos: i64) -> Option<Timestamp> {
    if nanos <= 0 {
        return None;
    }
    Timestamp::from_nanosecond(i128::from(nanos)).ok()
}

/// A CRI container status as drover's. The reason is containerd's (`Completed`,
/// `Error`, `OOMKilled`); an exited container without one gets `Completed` or `Error` by
/// its exit code, the kubelet's convention.
pub fn container_status_from_cri(s: &cri::ContainerStatus, sandbox: &SandboxId) -> ContainerStatus {
    let state = match cri::ContainerState::try_from(s.state) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
        Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
        _ => ContainerState::Unknown,
    };
    let exited = state == ContainerState::Exited;
    let reason = if !s.reason.is_empty() {
        Some(s.reason.clone())
    } else if exited {
        Some(
            if s.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_string(),
        )
    } else {
        None
    };
    let metadata = s.metadata.clone().unwrap_or_default();
    let image = s
        .annotations
        .get(IMAGE_ANNOTATION)
        .cloned()
        .or_else(|| s.image.as_ref().map(|i| i.image.clone()))
        .unwrap_or_default();
    ContainerStatus {
        id: ContainerId(s.id.clone()),
        sandbox_id: sandbox.clone(),
        name: metadata.name,
        image,
        state,
        exit_code: exited.then_some(s.exit_code),
        reason,
        message: (!s.message.is_empty()).then(|| s.message.clone()),
        attempt: metadata.attempt,
        created_at: timestamp(s.created_at).unwrap_or(Timestamp::UNIX_EPOCH),
        started_at: timestamp(s.started_at),
        finished_at: timestamp(s.finished_at),
        log_path: (!s.log_path.is_empty()).then(|| PathBuf::from(&s.log_path)),
    }
}

/// How a failed CRI call on `what` `id` reads as a [`RuntimeError`]: an unreachable or
/// slow runtime is `Unavailable`, a missing object `NotFound`, a refused request
/// `Invalid`, anything else `Failed`.
pub fn runtime_error(e: CriError, what: &'static str, id: &str) -> RuntimeError {
    use tonic::Code;
    match &e {
        CriError::Connect { .. } => RuntimeError::Unavailable(e.to_string()),
        CriError::Call { code, .. } => match code {
            Code::NotFound => RuntimeError::NotFound {
                what,
                id: id.to_string(),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                RuntimeError::Unavailable(e.to_string())
            }
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                RuntimeError::Invalid(e.to_string())
            }
            _ => RuntimeError::Failed(e.to_string()),
        },
        CriError::Malformed { .. } => RuntimeError::Failed(e.to_string()),
    }
}

/// A failed image pull: unreachable runtime stays `Unavailable`, everything else is
/// `ImagePull` (retryable as `ImagePullBackOff`), never a panic.
pub fn pull_error(e: CriError, image: &str) -> RuntimeError {
    match &e {
        CriError::Connect { .. }
        | CriError::Call {
            code: tonic::Code::Unavailable,
            ..
        } => RuntimeError::Unavailable(e.to_string()),
        CriError::Call { message, .. } => RuntimeError::ImagePull {
            image: image.to_string(),
            reason: message.clone(),
        },
        CriError::Malformed { .. } => RuntimeError::ImagePull {
            image: image.to_string(),
            reason: e.to_string(),
        },
    }
}

/// A failed RunPodSandbox: host-local's "no IP addresses available" is `IpExhausted`,
/// the rest as [`runtime_error`] (a NotFound there is not about a sandbox id, so
/// `Failed`).
pub fn sandbox_error(e: CriError, pod_cidr: Option<&str>) -> RuntimeError {
    if let CriError::Call { message, code, .. } = &e {
        if message.contains("no IP addresses available") {
            return RuntimeError::IpExhausted {
                cidr: pod_cidr.unwrap_or("").to_string(),
            };
        }
        if *code == tonic::Code::NotFound {
            return RuntimeError::Failed(e.to_string());
        }
    }
    runtime_error(e, "sandbox", "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Resources;

    fn sandbox() -> SandboxConfig {
        SandboxConfig {
            pod_uid: "u1".into(),
            namespace: "default".into(),
            name: "web".into(),
            hostname: "web-host".into(),
            host_network: false,
            labels: BTreeMap::from([("app".into(), "web".into())]),
            port_mappings: vec![PortMapping {
                protocol: "UDP".into(),
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            }],
            dns: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            cgroup_parent: Some("/kubepods/burstable/podu1".into()),
        }
    }

    #[test]
    fn sandbox_config_maps_every_field_and_round_trips() {
        let c = sandbox();
        let dir = pod_log_dir(Path::new("/d/pods"), &c);
        assert_eq!(dir, Path::new("/d/pods/default_web_u1"));
        let cri = sandbox_to_cri(&c, &dir);
        let meta = cri.metadata.clone().unwrap();
        assert_eq!((meta.name.as_str(), meta.uid.as_str()), ("web", "u1"));
        assert_eq!(meta.namespace, "default");
        assert_eq!(cri.hostname, "web-host");
        assert_eq!(cri.log_directory, "/d/pods/default_web_u1");
        assert_eq!(cri.labels["app"], "web");
        assert_eq!(cri.labels[POD_UID_LABEL], "u1");
        let dns = cri.dns_config.clone().unwrap();
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(dns.options, ["ndots:5"]);
        let port = &cri.port_mappings[0];
        assert_eq!(port.protocol, cri::Protocol::Udp as i32);
        assert_eq!((port.container_port, port.host_port), (53, 5353));
        assert_eq!(port.host_ip, "127.0.0.1");
        let linux = cri.linux.clone().unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/burstable/podu1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);

        let back = sandbox_config_from_cri(cri.metadata.as_ref(), &cri.labels, &cri.annotations);
        assert_eq!(back, c);
    }

    #[test]
    fn host_network_uses_the_node_namespace() {
        let c = SandboxConfig {
            host_network: true,
            ..sandbox()
        };
        let cri = sandbox_to_cri(&c, Path::new("/l"));
        let ns = cri
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn a_foreign_sandbox_still_has_its_pod_identity() {
        let meta = cri::PodSandboxMetadata {
            name: "p".into(),
            uid: "u9".into(),
            namespace: "ns".into(),
            attempt: 0,
        };
        let labels = HashMap::from([
            ("team".to_string(), "a".to_string()),
            (POD_UID_LABEL.to_string(), "u9".to_string()),
        ]);
        let c = sandbox_config_from_cri(Some(&meta), &labels, &HashMap::new());
        assert_eq!((c.pod_uid.as_str(), c.name.as_str()), ("u9", "p"));
        assert_eq!(c.labels, BTreeMap::from([("team".into(), "a".into())]));
        // A garbage annotation falls back to the metadata, no panic.
        let bad = HashMap::from([(SANDBOX_CONFIG_ANNOTATION.to_string(), "{".to_string())]);
        assert_eq!(
            sandbox_config_from_cri(Some(&meta), &labels, &bad).pod_uid,
            "u9"
        );
        assert_eq!(sandbox_config_from_cri(None, &labels, &bad).pod_uid, "");
    }

    #[test]
    fn container_config_maps_every_field() {
        let c = ContainerConfig {
            name: "app".into(),
            image: "busybox".into(),
            command: vec!["sh".into()],
            args: vec!["-c".into(), "true".into()],
            env: vec![("A".into(), "1".into())],
            working_dir: Some("/w".into()),
            attempt: 3,
            mounts: vec![Mount {
                host_path: "/data/vol".into(),
                container_path: "/vol".into(),
                read_only: true,
            }],
            resources: Resources {
                cpu_shares: 512,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                memory_limit_bytes: 64 << 20,
                oom_score_adj: 999,
            },
            stdin: true,
            tty: true,
            labels: BTreeMap::from([("k".into(), "v".into())]),
        };
        let cri = container_to_cri(&c, &sandbox());
        let meta = cri.metadata.clone().unwrap();
        assert_eq!((meta.name.as_str(), meta.attempt), ("app", 3));
        assert_eq!(cri.image.unwrap().image, "busybox");
        assert_eq!(cri.command, ["sh"]);
        assert_eq!(cri.args, ["-c", "true"]);
        assert_eq!(cri.working_dir, "/w");
        assert_eq!(
            (cri.envs[0].key.as_str(), cri.envs[0].value.as_str()),
            ("A", "1")
        );
        assert_eq!(cri.mounts[0].host_path, "/data/vol");
        assert_eq!(cri.mounts[0].container_path, "/vol");
        assert!(cri.mounts[0].readonly);
        assert_eq!(cri.log_path, "app/3.log");
        assert!(cri.stdin && cri.tty);
        assert_eq!(cri.labels["k"], "v");
        assert_eq!(cri.labels[CONTAINER_NAME_LABEL], "app");
        assert_eq!(cri.annotations[IMAGE_ANNOTATION], "busybox");
        let r = cri.linux.unwrap().resources.unwrap();
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (512, 50_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.oom_score_adj, 999);
    }

    #[test]
    fn container_status_mapping() {
        let mut s = cri::ContainerStatus {
            id: "c1".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            }),
            state: cri::ContainerState::ContainerExited as i32,
            created_at: 1_700_000_000_000_000_000,
            started_at: 1_700_000_001_000_000_000,
            finished_at: 1_700_000_002_000_000_000,
            exit_code: 137,
            image: Some(cri::ImageSpec {
                image: "docker.io/library/busybox:latest".into(),
                ..Default::default()
            }),
            reason: "OOMKilled".into(),
            log_path: "/d/pods/x/app/2.log".into(),
            annotations: HashMap::from([(IMAGE_ANNOTATION.to_string(), "busybox".to_string())]),
            ..Default::default()
        };
        let sb = SandboxId("s1".into());
        let d = container_status_from_cri(&s, &sb);
        assert_eq!(d.id, ContainerId("c1".into()));
        assert_eq!(d.sandbox_id, sb);
        assert_eq!((d.name.as_str(), d.attempt), ("app", 2));
        assert_eq!(d.image, "busybox");
        assert_eq!(d.state, ContainerState::Exited);
        assert_eq!(d.exit_code, Some(137));
        assert_eq!(d.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(d.created_at.as_second(), 1_700_000_000);
        assert_eq!(d.started_at.unwrap().as_second(), 1_700_000_001);
        assert_eq!(d.finished_at.unwrap().as_second(), 1_700_000_002);
        assert_eq!(
            d.log_path.as_deref(),
            Some(Path::new("/d/pods/x/app/2.log"))
        );

        s.reason.clear();
        assert_eq!(
            container_status_from_cri(&s, &sb).reason.as_deref(),
            Some("Error")
        );
        s.exit_code = 0;
        assert_eq!(
            container_status_from_cri(&s, &sb).reason.as_deref(),
            Some("Completed")
        );
        s.state = cri::ContainerState::ContainerRunning as i32;
        s.finished_at = 0;
        let running = container_status_from_cri(&s, &sb);
        assert_eq!(running.state, ContainerState::Running);
        assert_eq!((running.exit_code, running.reason), (None, None));
        assert_eq!(running.finished_at, None);
        s.state = 42;
        assert_eq!(
            container_status_from_cri(&s, &sb).state,
            ContainerState::Unknown
        );
    }

    fn call(code: tonic::Code, message: &str) -> CriError {
        CriError::Call {
            op: "X",
            code,
            message: message.into(),
        }
    }

    #[test]
    fn error_mapping() {
        use tonic::Code;
        assert_eq!(
            runtime_error(call(Code::NotFound, "gone"), "container", "c1"),
            RuntimeError::NotFound {
                what: "container",
                id: "c1".into()
            }
        );
        for code in [Code::Unavailable, Code::DeadlineExceeded] {
            assert!(matches!(
                runtime_error(call(code, ""), "container", "c"),
                RuntimeError::Unavailable(_)
            ));
        }
        let connect = CriError::Connect {
            socket: "/s".into(),
            message: "refused".into(),
        };
        assert!(matches!(
            runtime_error(connect, "container", "c"),
            RuntimeError::Unavailable(_)
        ));
        assert!(matches!(
            runtime_error(call(Code::InvalidArgument, ""), "container", "c"),
            RuntimeError::Invalid(_)
        ));
        assert!(matches!(
            runtime_error(call(Code::Unknown, "boom"), "container", "c"),
            RuntimeError::Failed(_)
        ));
        assert_eq!(
            pull_error(call(Code::NotFound, "not found"), "x:1"),
            RuntimeError::ImagePull {
                image: "x:1".into(),
                reason: "not found".into()
            }
        );
        assert!(matches!(
            pull_error(call(Code::Unknown, "dial tcp"), "x"),
            RuntimeError::ImagePull { .. }
        ));
        assert!(matches!(
            pull_error(call(Code::Unavailable, ""), "x"),
            RuntimeError::Unavailable(_)
        ));
        assert_eq!(
            sandbox_error(
                call(
                    Code::Unknown,
                    "failed to allocate for range 0: no IP addresses available in range set"
                ),
                Some("10.244.0.0/24")
            ),
            RuntimeError::IpExhausted {
                cidr: "10.244.0.0/24".into()
            }
        );
        assert!(matches!(
            sandbox_error(call(Code::NotFound, "pause image"), None),
            RuntimeError::Failed(_)
        ));
    }
}
