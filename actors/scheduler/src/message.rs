//! The FailedScheduling message, in Kubernetes' exact form (`FitError.Error()`):
//! `0/N nodes are available: <pre-filter message>.` or
//! `0/N nodes are available: <count> <reason>, ... .` with the reason histogram sorted as
//! strings, then the preemption (post-filter) message when there is one:
//! `preemption: 0/N nodes are available: <count> <reason>, ... .` or
//! `preemption: not eligible due to preemptionPolicy=Never.`

use std::collections::BTreeMap;

/// Why preemption cannot help on a node whose filters failed for a reason that
/// evicting pods does not change.
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Why preemption cannot help on a node without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// Post-filter message of a pod that may not preempt.
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// Counts reasons: one entry per distinct reason with the number of nodes it held for.
pub fn histogram<'a>(reasons: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in reasons {
        *out.entry(r.to_string()).or_default() += 1;
    }
    out
}

/// `0/N nodes are available: ...` without the post-filter part.
pub fn fit_error(
    n_nodes: usize,
    pre_filter: Option<&str>,
    reasons: &BTreeMap<String, usize>,
) -> String {
    let mut msg = format!("0/{n_nodes} nodes are available:");
    match pre_filter {
        Some(pre) => {
            msg.push(' ');
            msg.push_str(pre);
            msg.push('.');
        }
        None => {
            let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            // Kubernetes sorts the "<count> <reason>" strings themselves.
            parts.sort();
            if !parts.is_empty() {
                msg.push(' ');
                msg.push_str(&parts.join(", "));
                msg.push('.');
            }
        }
    }
    msg
}

/// The whole message: the fit error plus ` preemption: <post-filter message>` when
/// preemption ran.
pub fn failed_scheduling(fit_error: &str, post_filter: Option<&str>) -> String {
    match post_filter {
        Some(post) => format!("{fit_error} preemption: {post}"),
        None => fit_error.to_string(),
    }
}

#[cfg(test)]
mod tests;
