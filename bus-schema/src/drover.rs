//! drover's own kinds (group `drover.io/v1`). They carry the same `ObjectMeta` as the
//! built-in kinds and implement the same `k8s-openapi` traits, so generic code (store,
//! gateway, validation) treats them exactly like `Pod` or `Service`.
//!
//! Each type derives `schemars::JsonSchema`; the gateway's OpenAPI documents are generated
//! from it, so the doc comments below are what `kubectl explain` prints. Schema names follow
//! the apiserver's convention for non-`k8s.io` groups (reversed group, version, kind), e.g.
//! `io.drover.v1.TrafficSplit`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A weighted split of a root service's traffic across backend services (canaries).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.drover.v1.TrafficSplit")]
pub struct TrafficSplit {
    /// APIVersion of this object: always `drover.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// Kind of this object: always `TrafficSplit`.
    #[serde(default)]
    pub kind: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired split.
    pub spec: TrafficSplitSpec,
}

/// The root service and its weighted backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.drover.v1.TrafficSplitSpec")]
pub struct TrafficSplitSpec {
    /// Name of the root service whose VIP clients connect to.
    pub service: String,
    /// Backend services and their relative weights.
    #[serde(default)]
    pub backends: Vec<TrafficSplitBackend>,
}

/// One backend of a TrafficSplit: a service and its relative weight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.drover.v1.TrafficSplitBackend")]
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
