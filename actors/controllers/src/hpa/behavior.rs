//! From a metrics recommendation to the size to set (Kubernetes'
//! `normalizeDesiredReplicasWithBehaviors`), I/O-free with the clock passed in:
//! stabilization windows (the highest recommendation of the scale-down window, the
//! lowest of the scale-up window), then the rate policies of `behavior.scaleUp` /
//! `behavior.scaleDown` (Pods / Percent per period, `selectPolicy` Max / Min /
//! Disabled) against the scale events of each policy's period, then min/max replicas.
//! The history (recommendations and scale events) lives in memory per HPA, as in
//! kube-controller-manager: a restarted controller starts a fresh scale-down window.

/// A rate policy (`HPAScalingPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `Pods` (true) or `Percent` (false).
    pub pods: bool,
    /// Pods or percent per period.
    pub value: i32,
    /// The period, seconds.
    pub period_seconds: i32,
}

/// `selectPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the biggest change (default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// One direction's rules (`HPAScalingRules`), defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub stabilization_seconds: i32,
    /// `selectPolicy`.
    pub select: Select,
    /// `policies`.
    pub policies: Vec<Policy>,
}

impl Rules {
    /// Kubernetes' default scale-up: no window; 4 pods or 100 % per 15 s, whichever is more.
    pub fn default_up() -> Rules {
        Rules {
            stabilization_seconds: 0,
            select: Select::Max,
            policies: vec![
                Policy {
                    pods: true,
                    value: 4,
                    period_seconds: 15,
                },
                Policy {
                    pods: false,
                    value: 100,
                    period_seconds: 15,
                },
            ],
        }
    }

    /// Kubernetes' default scale-down: the given window (300 s by default), 100 % per 15 s.
    pub fn default_down(stabilization_seconds: i32) -> Rules {
        Rules {
            stabilization_seconds,
            select: Select::Max,
            policies: vec![Policy {
                pods: false,
                value: 100,
                period_seconds: 15,
            }],
        }
    }
}

/// What one HPA remembers between syncs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// `(at ms, recommended replicas)`, unstabilized.
    pub recommendations: Vec<(i64, i32)>,
    /// `(at ms, pods added)`.
    pub scale_ups: Vec<(i64, i32)>,
    /// `(at ms, pods removed)`.
    pub scale_downs: Vec<(i64, i32)>,
}

/// The inputs of one normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `spec.minReplicas` (default 1).
    pub min_replicas: i32,
    /// `spec.maxReplicas`.
    pub max_replicas: i32,
    /// The target's current replicas.
    pub current_replicas: i32,
    /// What the metrics ask for.
    pub desired_replicas: i32,
    /// `behavior.scaleUp`.
    pub up: Rules,
    /// `behavior.scaleDown`.
    pub down: Rules,
}

/// A condition's `(status, reason, message)`.
pub type Condition = (bool, &'static str, &'static str);

/// The result of one normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The size to set.
    pub replicas: i32,
    /// The `AbleToScale` condition.
    pub able_to_scale: Condition,
    /// The `ScalingLimited` condition.
    pub scaling_limited: Condition,
}

/// Normalizes `args.desired_replicas` at `now_ms`, recording the recommendation in
/// `history`. Call [`History::record_scale`] after the new size was written.
pub fn normalize(history: &mut History, args: &Args, now_ms: i64) -> Normalized {
    // A fresh history (new HPA, restarted controller) starts with the current size as a
    // recommendation, so a restart cannot scale down before a full window has passed.
    if history.recommendations.is_empty() && args.down.stabilization_seconds > 0 {
        history
            .recommendations
            .push((now_ms, args.current_replicas));
    }
    let stabilized = stabilize(history, args, now_ms);
    let able_to_scale = if stabilized != args.desired_replicas {
        if args.desired_replicas >= args.current_replicas {
            (
                true,
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                true,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        }
    } else {
        (
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
        )
    };
    let (replicas, reason, message) = limit_rate(history, args, stabilized, now_ms);
    Normalized {
        replicas,
        able_to_scale,
        scaling_limited: (replicas != stabilized, reason, message),
    }
}

impl History {
    /// Records a rescale from `from` to `to` at `now_ms` (for the rate policies), and
    /// forgets events older than any policy's period.
    pub fn record_scale(&mut self, from: i32, to: i32, now_ms: i64, args: &Args) {
        let longest = |r: &Rules| {
            r.policies
                .iter()
                .map(|p| i64::from(p.period_seconds) * 1000)
                .max()
                .unwrap_or(0)
        };
        let (up_keep, down_keep) = (longest(&args.up), longest(&args.down));
        self.scale_ups.retain(|(at, _)| now_ms - at < up_keep);
        self.scale_downs.retain(|(at, _)| now_ms - at < down_keep);
        if to > from {
            self.scale_ups.push((now_ms, to - from));
        } else if to < from {
            self.scale_downs.push((now_ms, from - to));
        }
    }
}

fn stabilize(history: &mut History, args: &Args, now_ms: i64) -> i32 {
    let up_cutoff = now_ms - i64::from(args.up.stabilization_seconds) * 1000;
    let down_cutoff = now_ms - i64::from(args.down.stabilization_seconds) * 1000;
    let mut up = args.desired_replicas;
    let mut down = args.desired_replicas;
    for &(at, rec) in &history.recommendations {
        if at > up_cutoff {
            up = up.min(rec);
        }
        if at > down_cutoff {
            down = down.max(rec);
        }
    }
    // Forget what no window can see any more, then record this recommendation.
    let oldest = up_cutoff.min(down_cutoff);
    history.recommendations.retain(|(at, _)| *at >= oldest);
    history
        .recommendations
        .push((now_ms, args.desired_replicas));
    args.current_replicas.max(up).min(down)
}

fn changed_within(events: &[(i64, i32)], period_seconds: i32, now_ms: i64) -> i32 {
    let cutoff = now_ms - i64::from(period_seconds) * 1000;
    events
        .iter()
        .filter(|(at, _)| *at > cutoff)
        .map(|(_, n)| n)
        .sum()
}

fn limit_rate(
    history: &History,
    args: &Args,
    desired: i32,
    now_ms: i64,
) -> (i32, &'static str, &'static str) {
    let current = args.current_replicas;
    let period_start = |p: &Policy| {
        current - changed_within(&history.scale_ups, p.period_seconds, now_ms)
            + changed_within(&history.scale_downs, p.period_seconds, now_ms)
    };
    if desired > current {
        let limit = match args.up.select {
            Select::Disabled => current,
            select => {
                let proposals = args.up.policies.iter().map(|p| {
                    let start = period_start(p);
                    if p.pods {
                        start + p.value
                    } else {
                        (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
                    }
                });
                match select {
                    Select::Min => proposals.min(),
                    _ => proposals.max(),
                }
                .unwrap_or(current)
            }
        }
        .max(current);
        let (allowed, reason, message) = if args.max_replicas > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                args.max_replicas,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return (allowed, reason, message);
        }
    } else if desired < current {
        let limit = match args.down.select {
            Select::Disabled => current,
            select => {
                let proposals = args.down.policies.iter().map(|p| {
                    let start = period_start(p);
                    if p.pods {
                        start - p.value
                    } else {
                        (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
                    }
                });
                match select {
                    Select::Min => proposals.max(),
                    _ => proposals.min(),
                }
                .unwrap_or(current)
            }
        }
        .min(current);
        let (allowed, reason, message) = if args.min_replicas < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                args.min_replicas,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return (allowed, reason, message);
        }
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

#[cfg(test)]
mod tests;
