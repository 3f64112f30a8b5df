//! The controllers' view of resource usage: one core-NATS subscription to every node
//! agent's [`UsageReport`] ([`bus_schema::subjects::METRICS_USAGE_ALL`]), keeping the
//! latest sample per node and pod in a [`UsageTable`]. Samples older than the staleness
//! limit (by the time they arrived here) are dropped, so a dead node's pods count as
//! "missing metrics" rather than as frozen load. Usage never touches the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus_schema::metrics::{NodeSample, PodSample, UsageReport, UsageTable};
use futures::StreamExt;
use tokio::task::JoinHandle;

/// Samples older than this are forgotten (four default publishing periods).
pub const DEFAULT_MAX_SAMPLE_AGE: Duration = Duration::from_secs(60);

/// Delay before subscribing again after the subscription failed or ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// A shared, always-current view of the latest usage reports.
#[derive(Clone)]
pub struct UsageView {
    table: Arc<Mutex<UsageTable>>,
    max_age: Duration,
}

impl UsageView {
    /// Starts following every node's reports; the view fills as they arrive. The task
    /// runs until aborted.
    pub fn follow(client: async_nats::Client, max_age: Duration) -> (UsageView, JoinHandle<()>) {
        let view = UsageView {
            table: Arc::new(Mutex::new(UsageTable::default())),
            max_age,
        };
        let task = tokio::spawn(follow_loop(client, view.clone()));
        (view, task)
    }

    fn with_table<T>(&self, f: impl FnOnce(&UsageTable) -> T) -> T {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.expire(now_ms(), self.max_age.as_millis() as i64);
        f(&table)
    }

    /// The latest fresh sample of one pod.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodSample> {
        self.with_table(|t| t.pod(namespace, name))
    }

    /// The latest fresh sample of one node.
    pub fn node(&self, name: &str) -> Option<NodeSample> {
        self.with_table(|t| t.node(name))
    }

    fn insert(&self, report: UsageReport) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.insert(report, now_ms());
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

async fn follow_loop(client: async_nats::Client, view: UsageView) {
    loop {
        match client
            .subscribe(bus_schema::subjects::METRICS_USAGE_ALL)
            .await
        {
            Ok(mut sub) => {
                while let Some(msg) = sub.next().await {
                    match bus_schema::envelope::decode::<UsageReport>(
                        msg.headers.as_ref(),
                        &msg.payload,
                    ) {
                        Ok((_, report)) => view.insert(report),
                        Err(error) => {
                            tracing::debug!(message = "dropping a malformed usage report", %error)
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(message = "cannot follow usage reports", %error),
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}
