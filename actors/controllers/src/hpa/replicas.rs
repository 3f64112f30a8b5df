//! The replica calculation of one Resource metric (Kubernetes' `ReplicaCalculator`),
//! I/O-free: pods, their samples and the clock come in; a recommendation or an error
//! message goes out.
//!
//! `desired = ceil(ready pods * usage / target)` unless the ratio is within the
//! tolerance. Pods being deleted or Failed are ignored; Pending pods and (for CPU) pods
//! not yet Ready or still in their CPU initialization period count as unready; pods
//! without a sample are "missing". On a scale-up, missing and unready pods count as using
//! nothing; on a scale-down, missing pods count as using 100 % of their request (or the
//! target); a result that would flip direction or stay within tolerance after that keeps
//! the current size. Values are in milli-units of the resource (millicores, millibytes),
//! as Kubernetes computes them.

use std::collections::BTreeMap;

/// The resource a metric measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `cpu`.
    Cpu,
    /// `memory`.
    Memory,
}

impl Resource {
    /// The resource name in specs (`cpu`, `memory`).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }

    /// Parses a resource name; other resources are not supported.
    pub fn parse(name: &str) -> Option<Resource> {
        match name {
            "cpu" => Some(Resource::Cpu),
            "memory" => Some(Resource::Memory),
            _ => None,
        }
    }
}

/// What a Resource metric aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `averageUtilization`: percent of the pods' requests.
    Utilization(i32),
    /// `averageValue`: per pod, milli-units.
    AverageValue(i64),
}

/// A pod's phase as the calculation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not running yet.
    Pending,
    /// Running (or anything not listed).
    Running,
    /// Failed.
    Failed,
}

/// What the calculation needs to know about one pod selected by the target.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The Ready condition: status and last transition (Unix ms); `None` without one.
    pub ready: Option<(bool, i64)>,
    /// `status.startTime` (Unix ms).
    pub start_time_ms: Option<i64>,
    /// Sum of the containers' requests of the resource (milli-units); `Err(container)`
    /// names a container without a request.
    pub request: Result<i64, String>,
}

/// A pod's usage sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Usage, milli-units.
    pub value: i64,
    /// When it was taken (Unix ms).
    pub timestamp_ms: i64,
    /// Window it covers (ms).
    pub window_ms: i64,
}

/// The controller's tunables (Kubernetes' controller-manager flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tunables {
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min), ms.
    pub cpu_initialization_period_ms: i64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s), ms.
    pub initial_readiness_delay_ms: i64,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            tolerance: 0.1,
            cpu_initialization_period_ms: 5 * 60 * 1000,
            initial_readiness_delay_ms: 30 * 1000,
        }
    }
}

/// A metric's recommendation and what the status reports about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// Replicas this metric asks for.
    pub replicas: i32,
    /// Current utilization in percent (for Utilization targets).
    pub utilization: Option<i32>,
    /// Current average usage per pod, milli-units.
    pub average_value: i64,
}

/// Computes one Resource metric's recommendation. `Err` carries the message Kubernetes
/// reports in the `ScalingActive` condition and the `FailedGetResourceMetric` event.
pub fn resource_replicas(
    tunables: &Tunables,
    current_replicas: i32,
    target: Target,
    resource: Resource,
    pods: &[PodView],
    samples: &BTreeMap<String, Sample>,
    now_ms: i64,
) -> Result<Recommendation, String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let mut metrics: BTreeMap<&str, i64> = BTreeMap::new();
    let mut ready_count: i64 = 0;
    let mut unready: Vec<&str> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for pod in pods {
        if pod.deleting || pod.phase == Phase::Failed {
            continue;
        }
        if pod.phase == Phase::Pending {
            unready.push(&pod.name);
            continue;
        }
        let Some(sample) = samples.get(&pod.name) else {
            missing.push(&pod.name);
            continue;
        };
        if resource == Resource::Cpu && cpu_unready(tunables, pod, sample, now_ms) {
            unready.push(&pod.name);
            continue;
        }
        metrics.insert(&pod.name, sample.value);
        ready_count += 1;
    }
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let mut requests: BTreeMap<&str, i64> = BTreeMap::new();
    if let Target::Utilization(_) = target {
        for pod in pods {
            match &pod.request {
                Ok(r) => {
                    requests.insert(&pod.name, *r);
                }
                Err(container) => {
                    return Err(format!(
                        "missing request for {} in container {container} of Pod {}",
                        resource.name(),
                        pod.name
                    ));
                }
            }
        }
    }
    let (usage_ratio, utilization, average) = ratio(target, &metrics, &requests)?;
    let scale_up_with_unready = !unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        let replicas = if (1.0 - usage_ratio).abs() <= tunables.tolerance {
            current_replicas
        } else {
            (usage_ratio * ready_count as f64).ceil() as i32
        };
        return Ok(Recommendation {
            replicas,
            utilization,
            average_value: average,
        });
    }
    let keep = Recommendation {
        replicas: current_replicas,
        utilization,
        average_value: average,
    };
    if !missing.is_empty() {
        for name in &missing {
            let assumed = if usage_ratio < 1.0 {
                match target {
                    Target::Utilization(t) => {
                        requests.get(name).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                    }
                    Target::AverageValue(v) => v,
                }
            } else if usage_ratio > 1.0 {
                0
            } else {
                continue;
            };
            metrics.insert(name, assumed);
        }
    }
    if scale_up_with_unready {
        for name in &unready {
            metrics.insert(name, 0);
        }
    }
    let (new_ratio, _, _) = ratio(target, &metrics, &requests)?;
    if (1.0 - new_ratio).abs() <= tunables.tolerance
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(keep);
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current_replicas)
        || (new_ratio > 1.0 && replicas < current_replicas)
    {
        return Ok(keep);
    }
    Ok(Recommendation { replicas, ..keep })
}

/// Whether a CPU sample of a pod is not to be trusted yet (Kubernetes' `groupPods`).
fn cpu_unready(tunables: &Tunables, pod: &PodView, sample: &Sample, now_ms: i64) -> bool {
    let (Some((ready, transition_ms)), Some(start_ms)) = (pod.ready, pod.start_time_ms) else {
        return true;
    };
    if start_ms + tunables.cpu_initialization_period_ms > now_ms {
        // Still initializing: unready, or the sample does not cover a full window
        // since it became ready.
        !ready || sample.timestamp_ms < transition_ms + sample.window_ms
    } else {
        // Never became ready within the initial delay.
        !ready && start_ms + tunables.initial_readiness_delay_ms > transition_ms
    }
}

/// `(usage ratio, utilization %, average per pod)` of the samples against the target.
fn ratio(
    target: Target,
    metrics: &BTreeMap<&str, i64>,
    requests: &BTreeMap<&str, i64>,
) -> Result<(f64, Option<i32>, i64), String> {
    match target {
        Target::Utilization(goal) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (name, value) in metrics {
                let Some(request) = requests.get(name) else {
                    continue;
                };
                used += value;
                requested += request;
                n += 1;
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let utilization = (used * 100 / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(goal.max(1)),
                Some(utilization),
                used / n,
            ))
        }
        Target::AverageValue(goal) => {
            let used: i64 = metrics.values().sum();
            let average = used / metrics.len().max(1) as i64;
            Ok((average as f64 / goal.max(1) as f64, None, average))
        }
    }
}

#[cfg(test)]
mod tests;
