//! The allocation repair loop (Kubernetes' ClusterIP and NodePort repair controllers):
//! at start and every [`REPAIR_EVERY`] it reconciles the cluster IP and node port
//! registries against the Services that exist ([`drover_admission::services::repair`]):
//! leaks are freed one pass after they were first seen, values Services hold that the
//! registry lost are re-marked, and duplicates or values outside the range become
//! Warning events on the Services.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover_admission::services::{self, RepairState};
use drover_store::Store;
use tokio::task::JoinHandle;

use crate::runtime::{EventRecorder, EventType};

/// How often the registries are repaired (the kube-apiserver's repair interval).
pub const REPAIR_EVERY: Duration = Duration::from_secs(180);
/// Delay before a failed pass is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Starts the loop; it runs a pass at once, then every `every`.
pub fn start(store: Store, every: Duration) -> JoinHandle<()> {
    let events = EventRecorder::start(store.clone(), "service-allocation-repair");
    tokio::spawn(run(store, events, every))
}

async fn run(store: Store, events: EventRecorder, every: Duration) {
    let services_kind =
        bus_schema::kinds::by_group_resource("", "services").expect("services is a built-in kind");
    let mut state = RepairState::default();
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let wait = match services::repair(&store, &mut state, now).await {
            Ok(report) => {
                for p in &report.problems {
                    events.record(
                        services_kind,
                        &p.service,
                        EventType::Warning,
                        p.reason,
                        p.message.clone(),
                    );
                }
                if !report.flagged.is_empty() {
                    // Kubernetes' "may have leaked: flagging for later clean up".
                    tracing::info!(message = "service allocations may have leaked", flagged = ?report.flagged);
                }
                if !report.released.is_empty() || !report.marked.is_empty() {
                    tracing::info!(
                        message = "service allocations repaired",
                        released = ?report.released,
                        marked = ?report.marked
                    );
                }
                every
            }
            Err(error) => {
                tracing::warn!(message = "service allocation repair failed; retrying", %error);
                RETRY_AFTER.min(every)
            }
        };
        tokio::time::sleep(wait).await;
    }
}
