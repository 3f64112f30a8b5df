//! The HorizontalPodAutoscaler controller (autoscaling/v2), Kubernetes' algorithm:
//! every sync period each HPA reads its target's replicas and selector
//! (`scaleTargetRef`: Deployment, ReplicaSet or StatefulSet), the latest usage of the
//! selected pods ([`crate::metrics::UsageView`], fed by the node agents over NATS), asks
//! each Resource metric (cpu/memory, `Utilization` of requests or `AverageValue`) for a
//! replica count ([`replicas`]), takes the largest, stabilizes and rate-limits it with
//! the HPA's `behavior` ([`behavior`]), writes the target's `spec.replicas` when it
//! changes (CAS on the target) and then the HPA's status (only when it changed).
//!
//! The decisions are the I/O-free [`replicas`] and [`behavior`]; this file is the shell
//! that reads the cache, writes the store, and records the `SuccessfulRescale` /
//! `FailedGetResourceMetric` / `FailedGetScale` / `FailedRescale` events. The per-HPA
//! history the behavior needs (recent recommendations and scale events) is in memory,
//! as in kube-controller-manager.

pub mod behavior;
pub mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus_schema::KindInfo;
use bus_schema::selector::LabelSelector;
use bus_schema::validation::parse_quantity;
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::metrics::UsageView;
use crate::runtime::{self, Action, Context, EventType, ObjectKey, ReconcileError, Reconciler};
use behavior::{Args, History, Policy, Rules, Select};
use replicas::{Phase, PodView, Resource, Sample, Target, Tunables};

/// Default period between two syncs of one HPA
/// (`--horizontal-pod-autoscaler-sync-period`).
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);
/// Default scale-down stabilization window when `behavior.scaleDown` does not set one
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DEFAULT_DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);
/// How long a reconcile waits for the cache to show its own write.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// Reconciles of HPAs running at once.
const WORKERS: usize = 2;

/// The controller's settings (kube-controller-manager's HPA flags).
#[derive(Debug, Clone)]
pub struct HpaConfig {
    /// How often each HPA is synced.
    pub sync_period: Duration,
    /// Scale-down stabilization for HPAs whose behavior does not set one.
    pub downscale_stabilization: Duration,
    /// Tolerance and readiness periods of the replica calculation.
    pub tunables: Tunables,
    /// Usage samples older than this count as missing.
    pub max_sample_age: Duration,
}

impl Default for HpaConfig {
    fn default() -> Self {
        HpaConfig {
            sync_period: DEFAULT_SYNC_PERIOD,
            downscale_stabilization: DEFAULT_DOWNSCALE_STABILIZATION,
            tunables: Tunables::default(),
            max_sample_age: crate::metrics::DEFAULT_MAX_SAMPLE_AGE,
        }
    }
}

fn hpa_kind() -> &'static KindInfo {
    bus_schema::kinds::by_group_kind("autoscaling", "HorizontalPodAutoscaler")
        .expect("HorizontalPodAutoscaler is in KINDS")
}

fn pod_kind() -> &'static KindInfo {
    bus_schema::kinds::by_group_kind("", "Pod").expect("Pod is in KINDS")
}

/// Kinds whose `spec.replicas` an HPA can drive.
const SCALABLE: &[&str] = &["Deployment", "ReplicaSet", "StatefulSet"];

/// The kinds the controller reads from the shared cache.
pub fn kinds() -> Vec<&'static KindInfo> {
    let mut kinds = vec![hpa_kind(), pod_kind()];
    kinds.extend(
        SCALABLE
            .iter()
            .filter_map(|k| bus_schema::kinds::by_group_kind("apps", k)),
    );
    kinds
}

/// Starts the controller with the default settings.
pub fn start(ctx: &Context) -> Vec<JoinHandle<()>> {
    start_with(ctx, HpaConfig::default())
}

/// Starts the controller (and its usage subscription) with `config`.
pub fn start_with(ctx: &Context, config: HpaConfig) -> Vec<JoinHandle<()>> {
    let (usage, follower) =
        UsageView::follow(ctx.store.nats_client().clone(), config.max_sample_age);
    let controller = HpaController {
        config,
        usage,
        state: Mutex::new(HashMap::new()),
    };
    vec![
        follower,
        runtime::run(
            controller,
            ctx.for_component("horizontal-pod-autoscaler"),
            WORKERS,
        ),
    ]
}

/// What the controller remembers per HPA.
#[derive(Default)]
struct PerHpa {
    history: History,
    /// When the last full sync ran and for which generation: changes the controller
    /// causes itself (its status write) do not bring the next sync forward.
    last_sync: Option<(Instant, i64)>,
}

struct HpaController {
    config: HpaConfig,
    usage: UsageView,
    state: Mutex<HashMap<ObjectKey, PerHpa>>,
}

/// A Resource metric of the spec.
#[derive(Debug, Clone, Copy)]
struct MetricSpec {
    resource: Resource,
    target: Target,
}

impl Reconciler for HpaController {
    fn name(&self) -> &'static str {
        "horizontalpodautoscaler"
    }

    fn kind(&self) -> &'static KindInfo {
        hpa_kind()
    }

    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(hpa) = ctx.cache.get(hpa_kind(), key) else {
            self.lock().remove(key);
            return Ok(Action::await_change());
        };
        let generation = hpa
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some((at, seen)) = self.lock().get(key).and_then(|s| s.last_sync)
            && seen == generation
            && at.elapsed() < self.config.sync_period
        {
            return Ok(Action::requeue(self.config.sync_period - at.elapsed()));
        }
        self.sync(key, &hpa, ctx).await?;
        self.lock().entry(key.clone()).or_default().last_sync = Some((Instant::now(), generation));
        Ok(Action::requeue(self.config.sync_period))
    }
}

/// One sync's outcome, turned into the status.
struct Outcome {
    current_replicas: i32,
    desired_replicas: i32,
    current_metrics: Vec<Value>,
    conditions: Vec<(&'static str, bool, String, String)>,
    rescaled: bool,
}

impl HpaController {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, PerHpa>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sync(
        &self,
        key: &ObjectKey,
        hpa: &Value,
        ctx: &Context,
    ) -> Result<(), ReconcileError> {
        let typed: autoscaling::HorizontalPodAutoscaler = runtime::decode(hpa_kind(), hpa)?;
        let spec = typed.spec.clone();
        let namespace = key.namespace.clone().unwrap_or_default();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let min_replicas = spec.min_replicas.unwrap_or(1);

        // The target: its current replicas and selector.
        let reference = &spec.scale_target_ref;
        let target_kind = reference
            .api_version
            .as_deref()
            .and_then(|av| bus_schema::kinds::by_api_version_kind(av, &reference.kind))
            .filter(|k| k.group == "apps" && SCALABLE.contains(&k.kind));
        let target = target_kind.and_then(|k| {
            ctx.cache
                .get(k, &ObjectKey::namespaced(&namespace, &reference.name))
                .map(|t| (k, t))
        });
        let Some((target_kind, target)) = target else {
            let message = match target_kind {
                None => format!(
                    "the server could not find the requested resource ({} {}): scaling is supported for Deployments, ReplicaSets and StatefulSets",
                    reference.api_version.as_deref().unwrap_or(""),
                    reference.kind
                ),
                Some(k) => format!("{} \"{}\" not found", k.group_resource(), reference.name),
            };
            ctx.events.record(
                hpa_kind(),
                hpa,
                EventType::Warning,
                "FailedGetScale",
                &message,
            );
            let outcome = Outcome {
                current_replicas: int_at(hpa, "/status/currentReplicas").unwrap_or(0),
                desired_replicas: int_at(hpa, "/status/desiredReplicas").unwrap_or(0),
                current_metrics: Vec::new(),
                conditions: vec![(
                    "AbleToScale",
                    false,
                    "FailedGetScale".into(),
                    format!(
                        "the HPA controller was unable to get the target's current scale: {message}"
                    ),
                )],
                rescaled: false,
            };
            return self.write_status(ctx, hpa, outcome, now_ms).await;
        };
        let current_replicas = int_at(&target, "/spec/replicas").unwrap_or(1);
        let mut conditions: Vec<(&'static str, bool, String, String)> = Vec::new();
        let mut current_metrics = Vec::new();
        let mut desired = 0;
        let mut rescale_reason = String::new();
        let mut compute = true;

        if current_replicas == 0 && min_replicas != 0 {
            compute = false;
            conditions.push((
                "ScalingActive",
                false,
                "ScalingDisabled".into(),
                "scaling is disabled since the replica count of the target is zero".into(),
            ));
        } else if current_replicas > spec.max_replicas {
            desired = spec.max_replicas;
            rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
        } else if current_replicas < min_replicas {
            desired = min_replicas;
            rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
        } else {
            let pods = selected_pods(ctx, &namespace, &target);
            let metrics = match metric_specs(&spec) {
                Ok(m) => m,
                Err(message) => {
                    conditions.push((
                        "ScalingActive",
                        false,
                        "InvalidMetricSourceType".into(),
                        message,
                    ));
                    Vec::new()
                }
            };
            let mut best: Option<(i32, String)> = None;
            let mut last_error = None;
            match &pods {
                Err(message) => {
                    conditions.push((
                        "ScalingActive",
                        false,
                        "InvalidSelector".into(),
                        message.clone(),
                    ));
                    ctx.events.record(
                        hpa_kind(),
                        hpa,
                        EventType::Warning,
                        "SelectorRequired",
                        message,
                    );
                }
                Ok(pods) => {
                    for metric in &metrics {
                        let views: Vec<PodView> =
                            pods.iter().map(|p| pod_view(p, metric.resource)).collect();
                        let samples = self.samples(&namespace, pods, metric.resource);
                        match replicas::resource_replicas(
                            &self.config.tunables,
                            current_replicas,
                            metric.target,
                            metric.resource,
                            &views,
                            &samples,
                            now_ms,
                        ) {
                            Ok(rec) => {
                                current_metrics.push(metric_status(metric, &rec));
                                let name = metric_name(metric);
                                if best.as_ref().is_none_or(|(n, _)| rec.replicas > *n) {
                                    best = Some((rec.replicas, name));
                                }
                            }
                            Err(message) => {
                                let what = match metric.target {
                                    Target::Utilization(_) => "utilization",
                                    Target::AverageValue(_) => "usage",
                                };
                                let message = format!(
                                    "failed to get {} {what}: {message}",
                                    metric.resource.name()
                                );
                                last_error = Some(message);
                            }
                        }
                    }
                }
            }
            match (best, last_error) {
                (Some((n, name)), _) => {
                    conditions.push((
                        "ScalingActive",
                        true,
                        "ValidMetricFound".into(),
                        format!(
                            "the HPA was able to successfully calculate a replica count from {name}"
                        ),
                    ));
                    desired = n;
                    if desired > current_replicas {
                        rescale_reason = format!("{name} above target");
                    } else if desired < current_replicas {
                        rescale_reason = "All metrics below target".into();
                    }
                }
                (None, Some(message)) => {
                    ctx.events.record(
                        hpa_kind(),
                        hpa,
                        EventType::Warning,
                        "FailedGetResourceMetric",
                        &message,
                    );
                    conditions.push((
                        "ScalingActive",
                        false,
                        "FailedGetResourceMetric".into(),
                        format!("the HPA was unable to compute the replica count: {message}"),
                    ));
                    compute = false;
                }
                (None, None) => compute = false,
            }
            if compute {
                let args = Args {
                    min_replicas,
                    max_replicas: spec.max_replicas,
                    current_replicas,
                    desired_replicas: desired,
                    up: rules(
                        spec.behavior.as_ref().and_then(|b| b.scale_up.as_ref()),
                        Rules::default_up(),
                    ),
                    down: rules(
                        spec.behavior.as_ref().and_then(|b| b.scale_down.as_ref()),
                        Rules::default_down(self.config.downscale_stabilization.as_secs() as i32),
                    ),
                };
                let normalized = {
                    let mut state = self.lock();
                    let per = state.entry(key.clone()).or_default();
                    behavior::normalize(&mut per.history, &args, now_ms)
                };
                desired = normalized.replicas;
                let (status, reason, message) = normalized.able_to_scale;
                conditions.insert(0, ("AbleToScale", status, reason.into(), message.into()));
                let (status, reason, message) = normalized.scaling_limited;
                conditions.push(("ScalingLimited", status, reason.into(), message.into()));
            }
        }
        if !compute {
            desired = current_replicas;
        }
        let rescaled = desired != current_replicas;
        if rescaled {
            let mut scaled: Value = Value::clone(&target);
            scaled["spec"]["replicas"] = json!(desired);
            match ctx.store.update(target_kind, scaled).await {
                Ok(_) => {
                    ctx.events.record(
                        hpa_kind(),
                        hpa,
                        EventType::Normal,
                        "SuccessfulRescale",
                        format!("New size: {desired}; reason: {rescale_reason}"),
                    );
                    set_condition(
                        &mut conditions,
                        "AbleToScale",
                        true,
                        "SucceededRescale",
                        format!(
                            "the HPA controller was able to update the target scale to {desired}"
                        ),
                    );
                    let args_for_history = Args {
                        min_replicas,
                        max_replicas: spec.max_replicas,
                        current_replicas,
                        desired_replicas: desired,
                        up: rules(
                            spec.behavior.as_ref().and_then(|b| b.scale_up.as_ref()),
                            Rules::default_up(),
                        ),
                        down: rules(
                            spec.behavior.as_ref().and_then(|b| b.scale_down.as_ref()),
                            Rules::default_down(
                                self.config.downscale_stabilization.as_secs() as i32
                            ),
                        ),
                    };
                    self.lock()
                        .entry(key.clone())
                        .or_default()
                        .history
                        .record_scale(current_replicas, desired, now_ms, &args_for_history);
                }
                Err(error) => {
                    ctx.events.record(
                        hpa_kind(),
                        hpa,
                        EventType::Warning,
                        "FailedRescale",
                        format!("New size: {desired}; reason: {rescale_reason}; error: {error}"),
                    );
                    set_condition(
                        &mut conditions,
                        "AbleToScale",
                        false,
                        "FailedUpdateScale",
                        format!(
                            "the HPA controller was unable to update the target scale: {error}"
                        ),
                    );
                    let outcome = Outcome {
                        current_replicas,
                        desired_replicas: current_replicas,
                        current_metrics,
                        conditions,
                        rescaled: false,
                    };
                    self.write_status(ctx, hpa, outcome, now_ms).await?;
                    return Err(error.into());
                }
            }
        }
        let outcome = Outcome {
            current_replicas,
            desired_replicas: desired,
            current_metrics,
            conditions,
            rescaled,
        };
        self.write_status(ctx, hpa, outcome, now_ms).await
    }

    /// Each selected pod's usage of `resource`, milli-units.
    fn samples(
        &self,
        namespace: &str,
        pods: &[Arc<Value>],
        resource: Resource,
    ) -> BTreeMap<String, Sample> {
        pods.iter()
            .filter_map(|p| {
                let name = drover_store::object::name(p);
                let sample = self.usage.pod(namespace, name)?;
                // A pod recreated under the same name is not the pod that was measured.
                let uid = drover_store::object::meta_str(p, "uid").unwrap_or_default();
                if !sample.pod.uid.is_empty() && sample.pod.uid != uid {
                    return None;
                }
                let total = sample.pod.total();
                let value = match resource {
                    Resource::Cpu => total.cpu_millis as i64,
                    Resource::Memory => (total.memory_bytes as i64).saturating_mul(1000),
                };
                Some((
                    name.to_string(),
                    Sample {
                        value,
                        timestamp_ms: sample.timestamp_ms,
                        window_ms: sample.window_ms as i64,
                    },
                ))
            })
            .collect()
    }

    /// Writes the status built from `outcome` when it differs from the stored one;
    /// conditions keep their `lastTransitionTime` while their status is unchanged.
    async fn write_status(
        &self,
        ctx: &Context,
        hpa: &Value,
        outcome: Outcome,
        now_ms: i64,
    ) -> Result<(), ReconcileError> {
        let now = timestamp(now_ms);
        let old = hpa.get("status").cloned().unwrap_or(Value::Null);
        let old_conditions = old["conditions"].as_array().cloned().unwrap_or_default();
        let conditions: Vec<Value> = outcome
            .conditions
            .iter()
            .map(|(type_, status, reason, message)| {
                let status = if *status { "True" } else { "False" };
                let since = old_conditions
                    .iter()
                    .find(|c| c["type"] == *type_ && c["status"] == status)
                    .and_then(|c| c.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| json!(now));
                json!({"type": type_, "status": status, "lastTransitionTime": since,
                       "reason": reason, "message": message})
            })
            .collect();
        let mut status = json!({
            "currentReplicas": outcome.current_replicas,
            "desiredReplicas": outcome.desired_replicas,
        });
        if let Some(g) = hpa.pointer("/metadata/generation") {
            status["observedGeneration"] = g.clone();
        }
        if outcome.rescaled {
            status["lastScaleTime"] = json!(now);
        } else if let Some(t) = old.get("lastScaleTime") {
            status["lastScaleTime"] = t.clone();
        }
        if !outcome.current_metrics.is_empty() {
            status["currentMetrics"] = json!(outcome.current_metrics);
        }
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        if status == old {
            return Ok(());
        }
        let mut updated = hpa.clone();
        updated["status"] = status;
        let stored = ctx.store.update(hpa_kind(), updated).await?;
        // Read-your-writes: the next sync must see this status (its conditions' times).
        ctx.cache
            .wait_for_revision(hpa_kind(), runtime::revision_of(&stored), CACHE_WAIT)
            .await
    }
}

fn set_condition(
    conditions: &mut Vec<(&'static str, bool, String, String)>,
    type_: &'static str,
    status: bool,
    reason: &str,
    message: String,
) {
    match conditions.iter_mut().find(|c| c.0 == type_) {
        Some(c) => *c = (type_, status, reason.into(), message),
        None => conditions.insert(0, (type_, status, reason.into(), message)),
    }
}

fn int_at(obj: &Value, pointer: &str) -> Option<i32> {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
}

fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn parse_time_ms(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
}

/// The pods the target's `spec.selector` selects (the scale subresource's selector).
fn selected_pods(
    ctx: &Context,
    namespace: &str,
    target: &Value,
) -> Result<Vec<Arc<Value>>, String> {
    let raw = target
        .pointer("/spec/selector")
        .cloned()
        .ok_or_else(|| "selector is required".to_string())?;
    let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
        serde_json::from_value(raw).map_err(|e| {
            format!("couldn't convert selector into a corresponding internal selector object: {e}")
        })?;
    let selector = LabelSelector::from_k8s(&typed).map_err(|e| {
        format!("couldn't convert selector into a corresponding internal selector object: {e}")
    })?;
    Ok(ctx
        .cache
        .list(pod_kind(), Some(namespace))
        .into_iter()
        .filter(|p| {
            let labels: BTreeMap<String, String> = p
                .pointer("/metadata/labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            selector.matches(&labels)
        })
        .collect())
}

/// What the replica calculation needs of one pod.
fn pod_view(pod: &Value, resource: Resource) -> PodView {
    let phase = match pod.pointer("/status/phase").and_then(Value::as_str) {
        Some("Pending") | None => Phase::Pending,
        Some("Failed") => Phase::Failed,
        Some(_) => Phase::Running,
    };
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            (
                c["status"] == "True",
                parse_time_ms(c, "/lastTransitionTime").unwrap_or(0),
            )
        });
    let mut request = Ok(0i64);
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = c
            .pointer(&format!("/resources/requests/{}", resource.name()))
            .and_then(Value::as_str)
            .and_then(|q| parse_quantity(q).ok())
            .map(|q| q.milli_value() as i64);
        request = match (request, value) {
            (Ok(sum), Some(v)) => Ok(sum + v),
            (Ok(_), None) => Err(c["name"].as_str().unwrap_or_default().to_string()),
            (err, _) => err,
        };
    }
    PodView {
        name: drover_store::object::name(pod).to_string(),
        phase,
        deleting: pod.pointer("/metadata/deletionTimestamp").is_some(),
        ready,
        start_time_ms: parse_time_ms(pod, "/status/startTime"),
        request,
    }
}

/// The spec's metrics; no metrics means CPU at 80 % (Kubernetes' default).
fn metric_specs(
    spec: &autoscaling::HorizontalPodAutoscalerSpec,
) -> Result<Vec<MetricSpec>, String> {
    let metrics = spec.metrics.clone().unwrap_or_default();
    if metrics.is_empty() {
        return Ok(vec![MetricSpec {
            resource: Resource::Cpu,
            target: Target::Utilization(80),
        }]);
    }
    metrics
        .iter()
        .map(|m| {
            let source = match (m.type_.as_str(), &m.resource) {
                ("Resource", Some(source)) => source,
                (other, _) => return Err(format!("unsupported metric source type \"{other}\" (drover serves Resource metrics of cpu and memory)")),
            };
            let resource = Resource::parse(&source.name).ok_or_else(|| {
                format!("unsupported resource \"{}\" (cpu and memory are)", source.name)
            })?;
            let target = match (source.target.average_utilization, &source.target.average_value) {
                (Some(u), _) if source.target.type_ == "Utilization" => Target::Utilization(u),
                (_, Some(v)) if source.target.type_ == "AverageValue" => Target::AverageValue(
                    parse_quantity(&v.0).map(|q| q.milli_value() as i64).map_err(|e| format!("invalid averageValue: {e}"))?,
                ),
                _ => return Err(format!("invalid target type \"{}\" for a Resource metric", source.target.type_)),
            };
            Ok(MetricSpec { resource, target })
        })
        .collect()
}

/// Kubernetes' name of a metric in events and conditions.
fn metric_name(metric: &MetricSpec) -> String {
    match metric.target {
        Target::Utilization(_) => {
            format!(
                "{} resource utilization (percentage of request)",
                metric.resource.name()
            )
        }
        Target::AverageValue(_) => format!("{} resource", metric.resource.name()),
    }
}

/// One `status.currentMetrics` entry.
fn metric_status(metric: &MetricSpec, rec: &replicas::Recommendation) -> Value {
    let mut current = json!({"averageValue": milli_quantity(rec.average_value, metric.resource)});
    if let Some(u) = rec.utilization {
        current["averageUtilization"] = json!(u);
    }
    json!({"type": "Resource", "resource": {"name": metric.resource.name(), "current": current}})
}

/// A milli-unit amount as a quantity string (`250m`, `2`, `8388608`).
fn milli_quantity(milli: i64, resource: Resource) -> String {
    match resource {
        Resource::Cpu if milli % 1000 != 0 => format!("{milli}m"),
        Resource::Cpu => format!("{}", milli / 1000),
        Resource::Memory => format!("{}", milli / 1000),
    }
}

/// One direction's rules from the spec, missing fields taken from `default`.
fn rules(spec: Option<&autoscaling::HPAScalingRules>, default: Rules) -> Rules {
    let Some(spec) = spec else {
        return default;
    };
    Rules {
        stabilization_seconds: spec
            .stabilization_window_seconds
            .unwrap_or(default.stabilization_seconds),
        select: match spec.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            Some(_) | None => default.select,
        },
        policies: match &spec.policies {
            Some(policies) if !policies.is_empty() => policies
                .iter()
                .map(|p| Policy {
                    pods: p.type_ == "Pods",
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
                .collect(),
            _ => default.policies,
        },
    }
}
