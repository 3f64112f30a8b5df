//! Following a watch for `get -w` and `events -w` until the user stops the process.

use anyhow::Result;
use futures::TryStreamExt;
use kube::Api;
use kube::api::WatchParams;
use kube::core::{DynamicObject, WatchEvent};

/// Seconds the server keeps one watch open. Below kube's client read timeout (295 s), so a
/// quiet watch ends cleanly at the server and is resumed instead of failing at the client.
const WATCH_TIMEOUT_SECONDS: u32 = 290;

/// A change seen on a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created (or present when a watch began without a version).
    Added,
    /// Updated.
    Modified,
    /// Deleted; the object is its last state.
    Deleted,
}

/// Watch parameters with the server-side timeout [`follow`] expects.
pub fn params(label_selector: Option<&str>, field_selector: Option<&str>) -> WatchParams {
    WatchParams {
        label_selector: label_selector.map(str::to_string),
        field_selector: field_selector.map(str::to_string),
        timeout: Some(WATCH_TIMEOUT_SECONDS),
        ..WatchParams::default()
    }
}

/// Calls `on_change` for every change after `resource_version`, resuming from the last
/// version seen whenever the server ends a watch. Returns only on an error (a watch ERROR
/// event, such as 410 Gone, included) or when `on_change` fails.
pub async fn follow(
    api: &Api<DynamicObject>,
    params: &WatchParams,
    mut resource_version: String,
    mut on_change: impl AsyncFnMut(Change, DynamicObject) -> Result<()>,
) -> Result<()> {
    loop {
        let stream = api.watch(params, &resource_version).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.try_next().await? {
            let (change, obj) = match event {
                WatchEvent::Added(o) => (Change::Added, o),
                WatchEvent::Modified(o) => (Change::Modified, o),
                WatchEvent::Deleted(o) => (Change::Deleted, o),
                WatchEvent::Bookmark(b) => {
                    resource_version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) => return Err(kube::Error::Api(status).into()),
            };
            if let Some(rv) = obj.metadata.resource_version.clone() {
                resource_version = rv;
            }
            on_change(change, obj).await?;
        }
    }
}
