//! Service ClusterIP and NodePort allocation as the API server does it on Service create,
//! update and delete; the decisions are in [`crate::allocator`].
//!
//! Each range's allocations live in one registry ConfigMap in `kube-system` (value ->
//! owning `namespace/name@claimed-at-unix-seconds`), the analogue of Kubernetes' `RangeAllocation` objects: a
//! claim is one compare-and-swap of that object, so concurrent creates never get the same
//! value, and a Service's IP and node ports are each claimed in one write. Claims happen
//! in admission, before the Service is written; the caller gives back what a failed write
//! claimed and, after a successful update or delete, what the Service no longer holds
//! ([`release`]).
//!
//! Leaks (a Service deleted without passing the gateway, e.g. by the namespace
//! controller, or whose write failed after its claim) are freed by the repair pass
//! ([`repair`], run periodically by the controllers; decisions in [`crate::repair`]),
//! which also re-marks values Services hold that the registry lost. Meanwhile a request
//! that names a value the registry gives to a Service that does not hold it, claimed
//! over a minute ago, takes it over.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;

use bus_schema::validation::{FieldError, FieldErrors};
use bus_schema::{KindInfo, kinds};
use drover_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::AdmissionError;
use crate::allocator::{self, DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, Plan, Range, Want};

/// Namespace of the registry ConfigMaps.
pub const REGISTRY_NAMESPACE: &str = "kube-system";
/// Registry of cluster IPs.
pub const CLUSTER_IP_REGISTRY: &str = "drover-service-cluster-ips";
/// Registry of node ports.
pub const NODE_PORT_REGISTRY: &str = "drover-service-node-ports";
/// Compare-and-swap rounds for one claim or release.
const CAS_ATTEMPTS: usize = 64;
/// How old a registry entry must be before a request may take it over from an owner
/// that does not hold it: a claim precedes its Service's write, so a young entry whose
/// Service is not there yet is a create in flight, not a leak (Kubernetes' repair
/// controller likewise waits before it frees a leak).
const LEAK_GRACE_SECS: u64 = 60;

/// The ranges Services are allocated from (the API server's
/// `--service-cluster-ip-range` and `--service-node-port-range`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRanges {
    /// Cluster IPs.
    pub cluster_ips: Range,
    /// Node ports.
    pub node_ports: Range,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges {
            cluster_ips: Range::service_cidr(DEFAULT_SERVICE_CIDR).expect("default cidr parses"),
            node_ports: Range::node_ports(DEFAULT_NODE_PORT_RANGE.0, DEFAULT_NODE_PORT_RANGE.1)
                .expect("default node port range parses"),
        }
    }
}

/// The ranges of this process (one API server per process; set at startup).
static RANGES: RwLock<Option<ServiceRanges>> = RwLock::new(None);

/// Sets the ranges this process allocates from (call before serving).
pub fn configure(ranges: ServiceRanges) {
    *RANGES.write().unwrap_or_else(|e| e.into_inner()) = Some(ranges);
}

/// The configured ranges, or the defaults.
pub fn ranges() -> ServiceRanges {
    RANGES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

fn configmaps() -> &'static KindInfo {
    kinds::by_group_kind("", "ConfigMap").expect("ConfigMap is in KINDS")
}

fn services() -> &'static KindInfo {
    kinds::by_group_kind("", "Service").expect("Service is in KINDS")
}

fn invalid(name: &str, errors: Vec<FieldError>) -> AdmissionError {
    let kind = services();
    AdmissionError::Store {
        kind,
        name: name.to_string(),
        source: StoreError::Invalid {
            kind: kind.group_resource(),
            name: name.to_string(),
            errors: FieldErrors(errors),
        },
    }
}

fn owner_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        drover_store::object::namespace(obj).unwrap_or(""),
        drover_store::object::name(obj)
    )
}

/// Admits a Service create (`old` = `None`) or update: patches `obj`'s spec as the API
/// server does and claims the cluster IP and node ports it newly needs (checks only, on
/// a dry run). Nothing stays claimed when it fails.
pub async fn admit(
    store: &Store,
    old: Option<&Value>,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), AdmissionError> {
    let name = drover_store::object::name(obj).to_string();
    let owner = owner_of(obj);
    let Some(spec) = obj.get_mut("spec") else {
        return Ok(());
    };
    let plan: Plan = allocator::plan(old.and_then(|o| o.get("spec")), spec)
        .map_err(|errors| invalid(&name, errors))?;
    let r = ranges();
    let mut claimed_ip = None;
    if let Some(want) = &plan.ip {
        let got = claim(
            store,
            &r.cluster_ips,
            CLUSTER_IP_REGISTRY,
            &owner,
            std::slice::from_ref(want),
            dry_run,
        )
        .await
        .map_err(|e| e.into_admission(&name, |_| "spec.clusterIPs".to_string()))?;
        let ip = got.into_iter().next().unwrap_or_default();
        allocator::set_ip(spec, &ip);
        claimed_ip = Some(ip);
    }
    allocator::fill_families(spec);
    if !plan.ports.is_empty() {
        let wants: Vec<Want> = plan.ports.iter().map(|(_, w)| w.clone()).collect();
        let indexes: Vec<usize> = plan.ports.iter().map(|(i, _)| *i).collect();
        match claim(
            store,
            &r.node_ports,
            NODE_PORT_REGISTRY,
            &owner,
            &wants,
            dry_run,
        )
        .await
        {
            Ok(got) => {
                for (i, port) in indexes.iter().zip(got) {
                    if let Ok(n) = port.parse::<i64>() {
                        spec["ports"][*i]["nodePort"] = json!(n);
                    }
                }
            }
            Err(e) => {
                if let (Some(ip), false) = (claimed_ip, dry_run) {
                    give_back(store, &r.cluster_ips, CLUSTER_IP_REGISTRY, &owner, [ip]).await?;
                }
                return Err(e.into_admission(&name, |k| {
                    format!(
                        "spec.ports[{}].nodePort",
                        indexes.get(k).copied().unwrap_or(0)
                    )
                }));
            }
        }
    }
    Ok(())
}

/// Gives back what `dropped` (a Service as it was, or as a failed write wanted it) holds
/// and `kept` (as it is now; `Value::Null` after a delete) does not. Only values the
/// registry gives to this Service are freed.
pub async fn release(store: &Store, kept: &Value, dropped: &Value) -> Result<(), AdmissionError> {
    let spec = |o: &Value| o.get("spec").cloned().unwrap_or(Value::Null);
    let (kept_spec, dropped_spec) = (spec(kept), spec(dropped));
    let owner = owner_of(dropped);
    let r = ranges();
    if let Some(ip) = allocator::held_ip(&dropped_spec)
        && allocator::held_ip(&kept_spec).as_deref() != Some(ip.as_str())
    {
        give_back(store, &r.cluster_ips, CLUSTER_IP_REGISTRY, &owner, [ip]).await?;
    }
    let ports: Vec<String> = allocator::held_ports(&dropped_spec)
        .difference(&allocator::held_ports(&kept_spec))
        .cloned()
        .collect();
    if !ports.is_empty() {
        give_back(store, &r.node_ports, NODE_PORT_REGISTRY, &owner, ports).await?;
    }
    Ok(())
}

/// A claim that failed.
enum ClaimError {
    /// Want number `index` was refused with this message; its value as written.
    Refused {
        index: usize,
        value: String,
        message: String,
    },
    /// The range has no free value left.
    Full { range: String },
    /// The store failed.
    Store(StoreError),
}

impl ClaimError {
    fn into_admission(self, name: &str, path: impl Fn(usize) -> String) -> AdmissionError {
        match self {
            ClaimError::Refused {
                index,
                value,
                message,
            } => {
                // Node ports print bare (numbers), IPs quoted, as Kubernetes prints them.
                invalid(name, vec![FieldError::invalid(path(index), value, message)])
            }
            ClaimError::Full { range } => AdmissionError::Refused(crate::Refusal {
                code: 500,
                reason: "InternalError",
                message: format!(
                    "Internal error occurred: failed to allocate a serviceIP: range is full ({range})"
                ),
                details: None,
            }),
            ClaimError::Store(e) => AdmissionError::store(configmaps(), "", e),
        }
    }
}

/// The registry ConfigMap and its allocations (`None` when it does not exist yet).
async fn read_registry(
    store: &Store,
    registry: &str,
) -> Result<(Option<Value>, BTreeMap<String, String>), StoreError> {
    match store
        .get(configmaps(), Some(REGISTRY_NAMESPACE), registry)
        .await
    {
        Ok(cm) => {
            let data = cm
                .get("data")
                .and_then(Value::as_object)
                .map(|d| {
                    d.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            Ok((Some(cm), data))
        }
        Err(StoreError::NotFound { .. }) => Ok((None, BTreeMap::new())),
        Err(e) => Err(e),
    }
}

/// Writes the registry by CAS (create when `current` is `None`); `Ok(false)` when
/// another writer won.
async fn write_registry(
    store: &Store,
    registry: &str,
    current: Option<Value>,
    data: &BTreeMap<String, String>,
) -> Result<bool, StoreError> {
    let result = match current {
        None => {
            let cm = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": registry, "namespace": REGISTRY_NAMESPACE},
                "data": data,
            });
            store.create(configmaps(), cm).await
        }
        Some(mut cm) => {
            // The resourceVersion read with it makes this a compare-and-swap.
            cm["data"] = json!(data);
            store.update(configmaps(), cm).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn conflict(registry: &str) -> StoreError {
    StoreError::Conflict {
        kind: "configmaps".into(),
        name: registry.into(),
        reason: format!("allocation lost {CAS_ATTEMPTS} races; retry"),
    }
}

/// Whether the Service `owner` (`namespace/name`) really holds `value` of `range`: false
/// when it is gone or holds another value (a leaked registry entry).
async fn really_holds(
    store: &Store,
    range: &Range,
    owner: &str,
    value: &str,
) -> Result<bool, StoreError> {
    let Some((ns, name)) = owner.split_once('/') else {
        return Ok(false);
    };
    let svc = match store.get(services(), Some(ns), name).await {
        Ok(svc) => svc,
        Err(StoreError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let spec = svc.get("spec").cloned().unwrap_or(Value::Null);
    Ok(match range.kind() {
        allocator::RangeKind::Ip => allocator::held_ip(&spec).as_deref() == Some(value),
        allocator::RangeKind::Port => allocator::held_ports(&spec).contains(value),
    })
}

/// Claims `wants` for `owner` in one CAS of the registry; returns the values as
/// written, in order. A dry run only checks.
async fn claim(
    store: &Store,
    range: &Range,
    registry: &str,
    owner: &str,
    wants: &[Want],
    dry_run: bool,
) -> Result<Vec<String>, ClaimError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for _ in 0..CAS_ATTEMPTS {
        let (current, mut data) = read_registry(store, registry)
            .await
            .map_err(ClaimError::Store)?;
        let mut taken: BTreeSet<u32> = data.keys().filter_map(|k| range.parse(k)).collect();
        let mut got = vec![String::new(); wants.len()];
        // Requested values first, so a dynamic pick cannot take one the same request names.
        for (index, want) in wants.iter().enumerate() {
            let Want::Specific(value) = want else {
                continue;
            };
            let refuse = |why| ClaimError::Refused {
                index,
                value: value.clone(),
                message: range.message(why),
            };
            let v = range
                .parse(value)
                .ok_or_else(|| refuse(allocator::Refused::NotInRange))?;
            if let Err(why) = range.check(v, &taken) {
                let entry = data.get(&range.render(v)).cloned().unwrap_or_default();
                let (holder, claimed_at) = allocator::parse_entry(&entry);
                let mine = holder == owner;
                let leaked = why == allocator::Refused::Allocated
                    && !mine
                    && allocator::may_be_leaked(claimed_at, now, LEAK_GRACE_SECS)
                    && !really_holds(store, range, holder, &range.render(v))
                        .await
                        .map_err(ClaimError::Store)?;
                if !leaked && !mine {
                    return Err(refuse(why));
                }
            }
            taken.insert(v);
            data.insert(range.render(v), allocator::entry(owner, now));
            got[index] = range.render(v);
        }
        let random = RandomState::new().hash_one(owner);
        for (index, want) in wants.iter().enumerate() {
            if *want != Want::Any {
                continue;
            }
            let v = range.pick(&taken, random).ok_or_else(|| ClaimError::Full {
                range: range.text().to_string(),
            })?;
            taken.insert(v);
            data.insert(range.render(v), allocator::entry(owner, now));
            got[index] = range.render(v);
        }
        if dry_run {
            return Ok(got);
        }
        if write_registry(store, registry, current, &data)
            .await
            .map_err(ClaimError::Store)?
        {
            return Ok(got);
        }
    }
    Err(ClaimError::Store(conflict(registry)))
}

/// Frees `values` in the registry where `owner` holds them (one CAS; no write when none
/// is held).
async fn give_back(
    store: &Store,
    range: &Range,
    registry: &str,
    owner: &str,
    values: impl IntoIterator<Item = String>,
) -> Result<(), AdmissionError> {
    let values: Vec<String> = values.into_iter().collect();
    for _ in 0..CAS_ATTEMPTS {
        let (current, mut data) = read_registry(store, registry)
            .await
            .map_err(|e| AdmissionError::store(configmaps(), registry, e))?;
        let mut changed = false;
        for v in &values {
            let key = range
                .parse(v)
                .map(|v| range.render(v))
                .unwrap_or_else(|| v.clone());
            if data
                .get(&key)
                .is_some_and(|e| allocator::parse_entry(e).0 == owner)
            {
                data.remove(&key);
                changed = true;
            }
        }
        if !changed || current.is_none() {
            return Ok(());
        }
        if write_registry(store, registry, current, &data)
            .await
            .map_err(|e| AdmissionError::store(configmaps(), registry, e))?
        {
            return Ok(());
        }
    }
    Err(AdmissionError::store(
        configmaps(),
        registry,
        conflict(registry),
    ))
}

/// What the repair remembers between passes: the leak candidates each registry had.
#[derive(Debug, Clone, Default)]
pub struct RepairState {
    flagged_ips: BTreeSet<String>,
    flagged_ports: BTreeSet<String>,
}

/// A problem found on a Service: the Service as stored and Kubernetes' event for it.
#[derive(Debug, Clone)]
pub struct RepairProblem {
    /// The Service.
    pub service: Value,
    /// Event reason (`ClusterIPNotAllocated`, `PortAlreadyAllocated`, ...).
    pub reason: &'static str,
    /// Event message.
    pub message: String,
}

/// What one repair pass did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Values that look leaked: freed by the next pass if still so.
    pub flagged: Vec<String>,
    /// Leaked values freed (cluster IPs and node ports).
    pub released: Vec<String>,
    /// Values re-marked for the Services that hold them.
    pub marked: Vec<String>,
    /// Problems to report as Warning events.
    pub problems: Vec<RepairProblem>,
}

/// One repair pass over both registries at `now` (unix seconds): reads each registry,
/// then lists the Services (in that order, so a Service written after the read holds a
/// value the registry already had or the CAS below fails), and writes the repaired
/// registry by compare-and-swap only when it changed. A lost race is retried with a
/// fresh read.
pub async fn repair(
    store: &Store,
    state: &mut RepairState,
    now: u64,
) -> Result<RepairReport, StoreError> {
    let r = ranges();
    let mut report = RepairReport::default();
    let passes: [(&Range, &str, &mut BTreeSet<String>); 2] = [
        (&r.cluster_ips, CLUSTER_IP_REGISTRY, &mut state.flagged_ips),
        (&r.node_ports, NODE_PORT_REGISTRY, &mut state.flagged_ports),
    ];
    for (range, registry, flagged) in passes {
        let mut done = false;
        for _ in 0..CAS_ATTEMPTS {
            let (current, data) = read_registry(store, registry).await?;
            let listed = store
                .list(services(), None, &drover_store::ListOptions::default())
                .await?;
            let mut by_owner: BTreeMap<String, &Value> = BTreeMap::new();
            let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for svc in &listed.items {
                let owner = owner_of(svc);
                let spec = svc.get("spec").cloned().unwrap_or(Value::Null);
                let values: BTreeSet<String> = match range.kind() {
                    allocator::RangeKind::Ip => allocator::held_ip(&spec).into_iter().collect(),
                    allocator::RangeKind::Port => allocator::held_ports(&spec),
                };
                if !values.is_empty() {
                    holders.insert(owner.clone(), values);
                }
                by_owner.insert(owner, svc);
            }
            let outcome =
                crate::repair::reconcile(range, &data, &holders, flagged, now, LEAK_GRACE_SECS);
            if outcome.changed && !write_registry(store, registry, current, &outcome.data).await? {
                continue;
            }
            report.flagged.extend(outcome.flagged.iter().cloned());
            *flagged = outcome.flagged;
            report.released.extend(outcome.released);
            report.marked.extend(outcome.marked);
            for problem in outcome.problems {
                let Some(svc) = by_owner.get(&problem.owner) else {
                    continue;
                };
                let (reason, message) = problem.event(range);
                report.problems.push(RepairProblem {
                    service: (*svc).clone(),
                    reason,
                    message,
                });
            }
            done = true;
            break;
        }
        if !done {
            return Err(conflict(registry));
        }
    }
    Ok(report)
}
