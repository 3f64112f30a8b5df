//! The StatefulSet decisions, without I/O: which ordinal to create, delete or update
//! next, and the status the pods add up to. The rules are kube-controller-manager's
//! (`stateful_set_control.go`):
//!
//! - ordinals `start..start+replicas` are wanted; pods beyond are condemned;
//! - a failed pod is deleted so it comes back;
//! - `OrderedReady` creates in ascending order and waits for each pod to be Running and
//!   Ready before the next; it deletes condemned pods from the highest ordinal down, one
//!   at a time, only while every wanted pod is healthy; `Parallel` does everything at once;
//! - `RollingUpdate` replaces, once scaling is done, the pod with the highest ordinal
//!   not at the update revision, down to `partition`, one at a time, waiting for the
//!   replaced pod to be Running and Ready; new pods below `partition` keep the current
//!   revision. `OnDelete` only creates missing pods, at the update revision.

#[cfg(test)]
mod tests;

/// What one pod of the set looks like to the decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodState {
    /// Ordinal from the name.
    pub ordinal: i64,
    /// Its `controller-revision-hash` label.
    pub revision: String,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Phase Running and condition Ready.
    pub running_ready: bool,
    /// Ready for at least minReadySeconds.
    pub available: bool,
    /// Phase Failed or Succeeded: it will not run again.
    pub failed: bool,
}

/// How updates roll out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Replace pods from the highest ordinal down to `partition`.
    RollingUpdate {
        /// Ordinals below this keep the current revision.
        partition: i64,
    },
    /// Only pods the user deletes come back at the new revision.
    OnDelete,
}

/// The set as the decisions need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    /// Wanted pods.
    pub replicas: i64,
    /// First ordinal (`spec.ordinals.start`).
    pub start: i64,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
    /// Update strategy.
    pub strategy: Strategy,
    /// Name of the current revision.
    pub current: String,
    /// Name of the update revision.
    pub update: String,
}

/// Which revision a new pod is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rev {
    /// The current revision.
    Current,
    /// The update revision.
    Update,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the pod of this ordinal (its claims first).
    Create(i64, Rev),
    /// Delete the pod of this ordinal.
    Delete(i64),
}

/// Why the plan stopped early, for an event or a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Nothing is blocked.
    No,
    /// OrderedReady waits for this ordinal to be Running and Ready.
    ForReady(i64),
    /// Waits for this ordinal to finish terminating.
    ForTermination(i64),
}

/// The steps of one reconcile, and what blocks the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// What the rest waits for.
    pub waiting: Waiting,
}

/// The revision a new pod of `ordinal` gets.
pub fn revision_for(spec: &SetSpec, ordinal: i64) -> Rev {
    match spec.strategy {
        Strategy::RollingUpdate { partition } if ordinal < partition => Rev::Current,
        _ => Rev::Update,
    }
}

/// Decides the next steps for the set's pods.
pub fn plan(spec: &SetSpec, pods: &[PodState]) -> Plan {
    let ordered = !spec.parallel;
    let end = spec.start + spec.replicas.max(0);
    let wanted = spec.start..end;
    let find = |o: i64| pods.iter().find(|p| p.ordinal == o);
    let mut steps = Vec::new();
    let done = |steps: Vec<Step>, waiting: Waiting| Plan { steps, waiting };

    // Wanted ordinals, ascending.
    for o in wanted.clone() {
        match find(o) {
            None => {
                steps.push(Step::Create(o, revision_for(spec, o)));
                if ordered {
                    return done(steps, Waiting::ForReady(o));
                }
            }
            Some(p) if p.terminating => {
                if ordered {
                    return done(steps, Waiting::ForTermination(o));
                }
            }
            Some(p) if p.failed => {
                // Deleted now, created again by the next reconcile.
                steps.push(Step::Delete(o));
                if ordered {
                    return done(steps, Waiting::ForTermination(o));
                }
            }
            Some(p) if !p.running_ready => {
                if ordered {
                    return done(steps, Waiting::ForReady(o));
                }
            }
            Some(_) => {}
        }
    }

    // Condemned pods, highest ordinal first.
    let mut condemned: Vec<&PodState> = pods
        .iter()
        .filter(|p| !wanted.contains(&p.ordinal))
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    for p in condemned {
        if p.terminating {
            if ordered {
                return done(steps, Waiting::ForTermination(p.ordinal));
            }
            continue;
        }
        steps.push(Step::Delete(p.ordinal));
        if ordered {
            return done(steps, Waiting::ForTermination(p.ordinal));
        }
    }

    let Strategy::RollingUpdate { partition } = spec.strategy else {
        return done(steps, Waiting::No);
    };
    if !steps.is_empty() {
        // Scale first; the update continues once the pods settled.
        return done(steps, Waiting::No);
    }
    // Replace one pod at a time from the highest ordinal down to the partition,
    // each only after everything above it is at the update revision and healthy.
    for o in wanted.rev().filter(|o| *o >= partition) {
        let Some(p) = find(o) else {
            return done(steps, Waiting::ForReady(o));
        };
        if p.terminating {
            return done(steps, Waiting::ForTermination(o));
        }
        if p.revision != spec.update {
            steps.push(Step::Delete(o));
            return done(steps, Waiting::ForTermination(o));
        }
        if !p.running_ready {
            return done(steps, Waiting::ForReady(o));
        }
    }
    done(steps, Waiting::No)
}

/// The counts of `status` the pods add up to, and the revisions it names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods (all the set owns).
    pub replicas: i64,
    /// Running and Ready.
    pub ready: i64,
    /// Ready for minReadySeconds.
    pub available: i64,
    /// At the current revision (not terminating).
    pub current: i64,
    /// At the update revision (not terminating).
    pub updated: i64,
    /// status.currentRevision.
    pub current_revision: String,
    /// status.updateRevision.
    pub update_revision: String,
}

/// Status counts; a finished RollingUpdate (every pod updated and ready) makes the update
/// revision current, as Kubernetes' `completeRollingUpdate` does.
pub fn counts(spec: &SetSpec, pods: &[PodState]) -> Counts {
    let mut c = Counts {
        current_revision: spec.current.clone(),
        update_revision: spec.update.clone(),
        ..Counts::default()
    };
    for p in pods {
        c.replicas += 1;
        c.ready += i64::from(p.running_ready);
        c.available += i64::from(p.available);
        if !p.terminating {
            c.current += i64::from(p.revision == spec.current);
            c.updated += i64::from(p.revision == spec.update);
        }
    }
    if matches!(spec.strategy, Strategy::RollingUpdate { .. })
        && c.updated == c.replicas
        && c.ready == c.replicas
        && c.replicas == spec.replicas
    {
        c.current = c.updated;
        c.current_revision = spec.update.clone();
    }
    c
}

/// The parent name and ordinal of a pod name `<parent>-<ordinal>`.
pub fn parse_ordinal(pod_name: &str) -> Option<(&str, i64)> {
    let (parent, ordinal) = pod_name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}
