//! drover's own kinds (group `drover.io/v1`). They carry the same `ObjectMeta` as the
//! built-in kinds and implement the same `k8s-openapi` traits, so generic code (store,
//! gateway, validation) treats them exactly like `Pod` or `Service`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A weighted split of a root service's traffic across backend services (canaries).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplit {
    /// Always `drover.io/v1` on the wire.
    #[serde(default)]
    pub api_version: String,
    /// Always `TrafficSplit` on the wire.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired split.
    pub spec: TrafficSplitSpec,
}

/// The root service and its weighted backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitSpec {
    /// Name of the root service whose VIP clients connect to.
    pub service: String,
    /// Backend services and their relative weights.
    #[serde(default)]
    pub backends: Vec<TrafficSplitBackend>,
}

/// One backend of a [`TrafficSplit`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitBackend {
    /// Name of a service in the same namespace.
    pub service: String,
    /// Relative weight; 0 takes the backend out of rotation.
    pub weight: u32,
}

impl k8s_openapi::Resource for TrafficSplit {
    const API_VERSION: &'static str = "drover.io/v1";
    const GROUP: &'static str = "drover.io";
    const KIND: &'static str = "TrafficSplit";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "trafficsplits";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for TrafficSplit {
    const LIST_KIND: &'static str = "TrafficSplitList";
}

impl k8s_openapi::Metadata for TrafficSplit {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
