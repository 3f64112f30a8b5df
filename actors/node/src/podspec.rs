//! Pure translation of a pod spec into what the runtime needs, as the kubelet does it
//! (`pkg/kubelet/kuberuntime`, `pkg/kubelet/qos`, `pkg/kubelet/cm`): environment with
//! `valueFrom`/`envFrom` and `$(VAR)` expansion, requests/limits into cgroup settings,
//! the QoS class with its `oom_score_adj` and cgroup parent, host ports and DNS.
//!
//! No I/O: ConfigMaps and Secrets the environment refers to are fetched by the caller
//! ([`env_references`] says which) and handed in as [`EnvSources`], so every rule here is
//! table-tested without a store.

use std::collections::{BTreeMap, BTreeSet};

use bus_schema::validation::parse_quantity;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};

use crate::runtime::{DnsConfig, PortMapping, Resources};

/// The cluster's DNS domain (kubelet `--cluster-domain` default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// CFS period the kubelet uses (100 ms).
pub const CPU_PERIOD_US: i64 = 100_000;
/// Smallest `cpu.shares` (kubelet `MinShares`).
pub const MIN_CPU_SHARES: u64 = 2;
/// Smallest CFS quota (kubelet `MinQuotaPeriod`, 1 ms).
pub const MIN_CPU_QUOTA_US: i64 = 1_000;
/// `oom_score_adj` of Guaranteed pods.
pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
/// `oom_score_adj` of BestEffort pods.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// ConfigMaps and Secrets of the pod's namespace, by name, as fetched for the pod
/// (`None`: it does not exist). Secret values are already decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvSources {
    /// ConfigMap name -> its `data` (and `binaryData` is ignored for env, as kubelet).
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    /// Secret name -> its decoded `data` merged with `stringData`.
    pub secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

/// Names of the ConfigMaps and Secrets a container's env refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvReferences {
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
}

/// Which ConfigMaps and Secrets the env of `container` needs.
pub fn env_references(container: &Container) -> EnvReferences {
    let mut refs = EnvReferences::default();
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            refs.secrets.insert(s.name.clone());
        }
    }
    for e in container.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            refs.config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            refs.secrets.insert(r.name.clone());
        }
    }
    refs
}

/// The pod's runtime facts that env and downward API values may refer to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodFacts {
    /// `status.podIP`.
    pub pod_ip: String,
    /// `status.hostIP`.
    pub host_ip: String,
    /// The node's allocatable CPU in millicores (resourceFieldRef default for limits).
    pub node_cpu_millis: u64,
    /// The node's allocatable memory in bytes.
    pub node_memory_bytes: u64,
    /// The node's allocatable ephemeral storage in bytes.
    pub node_ephemeral_bytes: u64,
}

/// Why a container's config cannot be built: the kubelet's
/// `CreateContainerConfigError` (the pod waits; nothing crashes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Value of a `fieldRef` path for env (`metadata.labels['k']` style subscripts work;
/// whole-map paths only in downward API volumes, see [`downward_field`]).
pub fn env_field(pod: &Pod, facts: &PodFacts, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        rest.strip_suffix("']").map(str::to_string)
    };
    if let Some(key) = subscript("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&key).cloned())
            .unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|l| l.get(&key).cloned())
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .service_account_name
            .unwrap_or_else(|| "default".into()),
        "status.podIP" => facts.pod_ip.clone(),
        "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" => facts.host_ip.clone(),
        "status.hostIPs" => facts.host_ip.clone(),
        other => return Err(ConfigError(format!("unsupported fieldRef path {other:?}"))),
    })
}

/// Value of a `fieldRef` path in a downward API volume: as [`env_field`], plus
/// `metadata.labels` / `metadata.annotations` as `key="value"` lines (sorted).
pub fn downward_field(pod: &Pod, facts: &PodFacts, path: &str) -> Result<String, ConfigError> {
    let lines = |m: &Option<BTreeMap<String, String>>| {
        m.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    match path {
        "metadata.labels" => Ok(lines(&pod.metadata.labels)),
        "metadata.annotations" => Ok(lines(&pod.metadata.annotations)),
        _ => env_field(pod, facts, path),
    }
}

/// Quantity value (in nanos) of `name` in a resource map.
fn quantity_nanos(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> Option<i128> {
    map.and_then(|m| m.get(name))
        .and_then(|q| parse_quantity(&q.0).ok())
        .map(|q| q.nano_value())
}

/// A container's request for `name`, defaulting to its limit (API defaulting).
fn request_nanos(r: Option<&ResourceRequirements>, name: &str) -> Option<i128> {
    quantity_nanos(r.and_then(|r| r.requests.as_ref()), name)
        .or_else(|| quantity_nanos(r.and_then(|r| r.limits.as_ref()), name))
}

fn limit_nanos(r: Option<&ResourceRequirements>, name: &str) -> Option<i128> {
    quantity_nanos(r.and_then(|r| r.limits.as_ref()), name)
}

/// Value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...) of `container`,
/// divided by `divisor` and rounded up (kubelet `ExtractContainerResourceValue`). An
/// unset limit reads as the node's allocatable.
pub fn resource_field(
    container: &Container,
    facts: &PodFacts,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, ConfigError> {
    let r = container.resources.as_ref();
    const NANO: i128 = 1_000_000_000;
    let node = |name: &str| -> i128 {
        match name {
            "cpu" => facts.node_cpu_millis as i128 * 1_000_000,
            "memory" => facts.node_memory_bytes as i128 * NANO,
            _ => facts.node_ephemeral_bytes as i128 * NANO,
        }
    };
    let nanos = match resource.split_once('.') {
        Some(("limits", name)) => limit_nanos(r, name).unwrap_or_else(|| node(name)),
        Some(("requests", name)) => request_nanos(r, name).unwrap_or(0),
        _ => {
            return Err(ConfigError(format!(
                "unsupported resourceFieldRef {resource:?}"
            )));
        }
    };
    let divisor = match divisor.filter(|d| !d.is_empty()) {
        Some(d) => parse_quantity(d)
            .map_err(|e| ConfigError(format!("bad divisor {d:?}: {e}")))?
            .nano_value(),
        None => NANO,
    };
    if divisor <= 0 {
        return Err(ConfigError("divisor must be positive".into()));
    }
    let value = (nanos + divisor - 1).div_euclid(divisor);
    Ok(value.to_string())
}

/// Expands `$(VAR)` references in `input` from `vars` (Kubernetes' expansion rules:
/// `$$` is an escaped `$`, unknown references stay as written).
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        // Push the whole (possibly multi-byte) char.
        let ch = input[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The container's environment: `envFrom` first, then `env` in order, each `value`
/// expanded against what is defined before it (kubelet `makeEnvironmentVariables`).
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    sources: &EnvSources,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(ConfigError(format!("configmap \"{}\" not found", r.name)));
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(ConfigError(format!("secret \"{}\" not found", r.name)));
                }
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let data = sources.config_maps.get(&r.name).cloned().flatten();
                match (data, r.optional == Some(true)) {
                    (Some(d), optional) => match d.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    (None, true) => None,
                    (None, false) => {
                        return Err(ConfigError(format!("configmap \"{}\" not found", r.name)));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let data = sources.secrets.get(&r.name).cloned().flatten();
                match (data, r.optional == Some(true)) {
                    (Some(d), optional) => match d.get(&r.key) {
                        Some(v) => Some(String::from_utf8_lossy(v).into_owned()),
                        None if optional => None,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                    (None, true) => None,
                    (None, false) => {
                        return Err(ConfigError(format!("secret \"{}\" not found", r.name)));
                    }
                }
            } else if let Some(f) = &from.field_ref {
                Some(env_field(pod, facts, &f.field_path)?)
            } else if let Some(r) = &from.resource_field_ref {
                let target = match &r.container_name {
                    Some(name) if !name.is_empty() && *name != container.name => {
                        all_containers(pod.spec.as_ref())
                            .find(|c| c.name == *name)
                            .ok_or_else(|| {
                                ConfigError(format!("resourceFieldRef: no container {name:?}"))
                            })?
                    }
                    _ => container,
                };
                Some(resource_field(
                    target,
                    facts,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?)
            } else {
                None
            }
        } else {
            let raw = e.value.clone().unwrap_or_default();
            let defined = env.clone();
            Some(expand(&raw, &|name| {
                defined
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }))
        };
        if let Some(v) = value {
            set(&mut env, e.name.clone(), v);
        }
    }
    Ok(env)
}

/// `command` and `args` with `$(VAR)` expanded from the resolved env.
pub fn expand_command(
    container: &Container,
    env: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let ex = |v: &Option<Vec<String>>| {
        v.iter()
            .flatten()
            .map(|s| expand(s, &lookup))
            .collect::<Vec<_>>()
    };
    (ex(&container.command), ex(&container.args))
}

/// Every container of the spec: init containers, then regular ones.
pub fn all_containers(spec: Option<&PodSpec>) -> impl Iterator<Item = &Container> {
    spec.into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    })
}

/// A pod's QoS class (`pkg/apis/core/helper/qos`), from CPU and memory only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has CPU and memory limits equal to its requests.
    Guaranteed,
    /// Something has a request or limit, but not Guaranteed.
    Burstable,
    /// No CPU or memory requests or limits anywhere.
    BestEffort,
}

impl QosClass {
    /// As written in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// The pod's QoS class.
pub fn qos_class(spec: &PodSpec) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in all_containers(Some(spec)) {
        let r = c.resources.as_ref();
        for name in ["cpu", "memory"] {
            let req = request_nanos(r, name);
            let lim = limit_nanos(r, name);
            if req.is_some_and(|v| v != 0) || lim.is_some_and(|v| v != 0) {
                any = true;
            }
            if lim.is_none() || req != lim {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// `oom_score_adj` of a container (kubelet `GetContainerOOMScoreAdjust`).
pub fn oom_score_adj(qos: QosClass, memory_request_bytes: i64, memory_capacity_bytes: u64) -> i64 {
    match qos {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            if memory_capacity_bytes == 0 {
                return BEST_EFFORT_OOM_SCORE_ADJ - 1;
            }
            let adj = 1000
                - (1000i128 * memory_request_bytes as i128 / memory_capacity_bytes as i128) as i64;
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BEST_EFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

/// The default root of every pod's cgroup ([`cgroup_parent`]), as the kubelet names it.
pub const DEFAULT_CGROUP_ROOT: &str = "/kubepods";

/// The pod's cgroup parent (cgroupfs driver naming) under `root` (`/kubepods` on a
/// real node): Guaranteed pods sit directly under the root, the others under their
/// class.
pub fn cgroup_parent(root: &str, qos: QosClass, pod_uid: &str) -> String {
    let root = root.trim_end_matches('/');
    match qos {
        QosClass::Guaranteed => format!("{root}/pod{pod_uid}"),
        QosClass::Burstable => format!("{root}/burstable/pod{pod_uid}"),
        QosClass::BestEffort => format!("{root}/besteffort/pod{pod_uid}"),
    }
}

/// A container's cgroup settings from its requests and limits.
pub fn resources(container: &Container, qos: QosClass, memory_capacity_bytes: u64) -> Resources {
    let r = container.resources.as_ref();
    let millis = |n: Option<i128>| n.map(|n| (n + 999_999) / 1_000_000).unwrap_or(0);
    let cpu_request = millis(request_nanos(r, "cpu"));
    let cpu_limit = millis(limit_nanos(r, "cpu"));
    let bytes = |n: Option<i128>| n.map(|n| (n / 1_000_000_000) as i64).unwrap_or(0);
    let memory_request = bytes(request_nanos(r, "memory"));
    let memory_limit = bytes(limit_nanos(r, "memory"));
    let cpu_shares = ((cpu_request as u64) * 1024 / 1000).max(MIN_CPU_SHARES);
    let (cpu_quota, cpu_period) = if cpu_limit > 0 {
        (
            ((cpu_limit as i64) * CPU_PERIOD_US / 1000).max(MIN_CPU_QUOTA_US),
            CPU_PERIOD_US,
        )
    } else {
        (0, 0)
    };
    Resources {
        cpu_shares,
        cpu_quota,
        cpu_period,
        memory_limit_bytes: memory_limit,
        oom_score_adj: oom_score_adj(qos, memory_request, memory_capacity_bytes),
    }
}

/// `hostPort`s of every container as port mappings.
pub fn port_mappings(spec: &PodSpec) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for c in all_containers(Some(spec)) {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|p| *p > 0) else {
                continue;
            };
            out.push(PortMapping {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                container_port: p.container_port.clamp(0, u16::MAX as i32) as u16,
                host_port: host_port.clamp(0, u16::MAX as i32) as u16,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    out
}

/// The pod's resolv.conf (`dnsPolicy`, `dnsConfig`). `ClusterFirst` (the default) uses
/// the cluster DNS servers with the cluster search path, unless none are configured
/// (then the runtime default stays, as the kubelet falls back to `Default`).
pub fn dns_config(pod: &Pod, cluster_dns: &[String]) -> Option<DnsConfig> {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let policy = spec
        .dns_policy
        .clone()
        .unwrap_or_else(|| "ClusterFirst".into());
    let host_network = spec.host_network.unwrap_or(false);
    let mut dns = match policy.as_str() {
        "ClusterFirst" if !host_network && !cluster_dns.is_empty() => DnsConfig {
            servers: cluster_dns.to_vec(),
            searches: vec![
                format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            options: vec!["ndots:5".into()],
        },
        "ClusterFirstWithHostNet" if !cluster_dns.is_empty() => DnsConfig {
            servers: cluster_dns.to_vec(),
            searches: vec![
                format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            options: vec!["ndots:5".into()],
        },
        "None" => DnsConfig::default(),
        _ => {
            // `Default` (or ClusterFirst without cluster DNS): the runtime's resolv.conf
            // unless dnsConfig adds to it.
            spec.dns_config.as_ref()?;
            DnsConfig::default()
        }
    };
    if let Some(extra) = &spec.dns_config {
        for s in extra.nameservers.iter().flatten() {
            if !dns.servers.contains(s) {
                dns.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !dns.searches.contains(s) {
                dns.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let key = opt.split(':').next().unwrap_or_default().to_string();
            dns.options
                .retain(|existing| existing.split(':').next() != Some(key.as_str()));
            dns.options.push(opt);
        }
    }
    Some(dns)
}

/// The effective `imagePullPolicy`: as given, else `Always` for `:latest` or untagged
/// references and `IfNotPresent` otherwise (API defaulting).
pub fn pull_policy(container: &Container) -> String {
    if let Some(p) = container
        .image_pull_policy
        .clone()
        .filter(|p| !p.is_empty())
    {
        return p;
    }
    let image = container.image.clone().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or_default();
    match last.split_once(':') {
        None => "Always".into(),
        Some((_, "latest")) => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

#[cfg(test)]
mod tests;
