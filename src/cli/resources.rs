//! Which resource a word on the command line or a manifest's `apiVersion`/`kind` means,
//! from the server's discovery documents (`/api/v1`, `/apis`, `/apis/<g>/<v>`).
//!
//! kube's own `Discovery` drops short names (`po`, `deploy`), so this keeps its own table
//! of the fields kubectl resolves with.

use anyhow::{Context, Result, anyhow};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::core::ApiResource;

/// One resource the server serves (subresources left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// `Pod`, `Deployment`, ...
    pub kind: String,
    /// `pods`, `deployments`, ...
    pub plural: String,
    /// `pod`, `deployment`, ...
    pub singular: String,
    /// `po`, `deploy`, ...
    pub short_names: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// What kube's dynamic API needs to build URLs.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// How kubectl names the kind in its messages: `pod`, `deployment.apps`.
    pub fn kind_ref(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// The group-qualified plural of Status messages: `pods`, `deployments.apps`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn matches(&self, word: &str) -> bool {
        let bare = |w: &str| {
            w == self.plural
                || w == self.singular
                || w == self.kind.to_lowercase()
                || self.short_names.iter().any(|s| s == w)
        };
        if bare(word) {
            return true;
        }
        // `deployments.apps`, `deployment.apps`, `deployments.v1.apps`.
        let qualified = |suffix: &str| {
            word.strip_suffix(suffix)
                .and_then(|w| w.strip_suffix('.'))
                .is_some_and(|w| {
                    bare(w)
                        || w.strip_suffix(&format!(".{}", self.version))
                            .is_some_and(bare)
                })
        };
        !self.group.is_empty() && qualified(&self.group)
    }
}

/// Every resource the server serves, in discovery order (core group first, then the
/// groups as `/apis` lists them), which is the order kubectl prefers on ambiguity.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    resources: Vec<Resource>,
}

impl Resources {
    /// Reads the server's discovery documents: the core group's `v1` and the preferred
    /// version of every other group.
    pub async fn discover(client: &Client) -> Result<Resources> {
        let mut resources = Resources::default();
        let core = client
            .list_core_api_resources("v1")
            .await
            .context("reading the server's resource list (/api/v1)")?;
        resources.add_list("", "v1", core);
        let groups = client
            .list_api_groups()
            .await
            .context("reading the server's API groups (/apis)")?;
        for group in groups.groups {
            let Some(gv) = group
                .preferred_version
                .or_else(|| group.versions.first().cloned())
            else {
                continue;
            };
            let list = client
                .list_api_group_resources(&gv.group_version)
                .await
                .with_context(|| format!("reading /apis/{}", gv.group_version))?;
            resources.add_list(&group.name, &gv.version, list);
        }
        Ok(resources)
    }

    /// Adds the main resources of one group-version's list.
    pub fn add_list(&mut self, group: &str, version: &str, list: APIResourceList) {
        for r in list.resources {
            if r.name.contains('/') {
                continue;
            }
            let singular = if r.singular_name.is_empty() {
                r.kind.to_lowercase()
            } else {
                r.singular_name
            };
            self.resources.push(Resource {
                group: r.group.unwrap_or_else(|| group.to_string()),
                version: r.version.unwrap_or_else(|| version.to_string()),
                kind: r.kind,
                plural: r.name,
                singular,
                short_names: r.short_names.unwrap_or_default(),
                namespaced: r.namespaced,
            });
        }
    }

    /// The resource a command-line word names: plural, singular, kind or short name, any
    /// case, optionally qualified by group (`deployments.apps`).
    pub fn resolve(&self, word: &str) -> Result<&Resource> {
        let word = word.to_lowercase();
        self.resources
            .iter()
            .find(|r| r.matches(&word))
            .ok_or_else(|| anyhow!("the server doesn't have a resource type \"{word}\""))
    }

    /// The resource of a manifest's `apiVersion` and `kind`.
    pub fn by_api_version_kind(&self, api_version: &str, kind: &str) -> Result<&Resource> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .ok_or_else(|| {
                anyhow!(
                    "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": ensure the server serves it"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Resources {
        let mut r = Resources::default();
        let core: APIResourceList = serde_json::from_value(json!({
            "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "kind": "Pod", "namespaced": true,
                 "shortNames": ["po"], "verbs": ["get"]},
                {"name": "pods/status", "singularName": "", "kind": "Pod", "namespaced": true, "verbs": ["get"]},
                {"name": "services", "singularName": "service", "kind": "Service", "namespaced": true,
                 "shortNames": ["svc"], "verbs": ["get"]},
                {"name": "namespaces", "singularName": "", "kind": "Namespace", "namespaced": false,
                 "shortNames": ["ns"], "verbs": ["get"]},
            ]
        }))
        .unwrap();
        r.add_list("", "v1", core);
        let apps: APIResourceList = serde_json::from_value(json!({
            "groupVersion": "apps/v1",
            "resources": [
                {"name": "deployments", "singularName": "deployment", "kind": "Deployment",
                 "namespaced": true, "shortNames": ["deploy"], "verbs": ["get"]},
            ]
        }))
        .unwrap();
        r.add_list("apps", "v1", apps);
        r
    }

    fn check(word: &str, expected: Option<&str>) {
        let resources = table();
        let got = resources.resolve(word).ok().map(Resource::group_resource);
        assert_eq!(got.as_deref(), expected, "{word}");
    }

    #[test]
    fn resolves_kubectl_spellings() {
        check("pods", Some("pods"));
        check("pod", Some("pods"));
        check("Pod", Some("pods"));
        check("po", Some("pods"));
        check("svc", Some("services"));
        check("ns", Some("namespaces"));
        check("namespace", Some("namespaces"));
        check("deploy", Some("deployments.apps"));
        check("deployments.apps", Some("deployments.apps"));
        check("deployment.apps", Some("deployments.apps"));
        check("deployments.v1.apps", Some("deployments.apps"));
        check("Deployment", Some("deployments.apps"));
        check("pods/status", None);
        check("status", None);
        check("deployments.extensions", None);
        check("widgets", None);
    }

    #[test]
    fn by_api_version_kind_and_names() {
        let resources = table();
        let d = resources
            .by_api_version_kind("apps/v1", "Deployment")
            .unwrap();
        assert_eq!(d.kind_ref(), "deployment.apps");
        assert_eq!(d.api_version(), "apps/v1");
        let p = resources.by_api_version_kind("v1", "Pod").unwrap();
        assert_eq!(p.kind_ref(), "pod");
        assert!(resources.by_api_version_kind("v2", "Pod").is_err());
        let ns = resources.resolve("ns").unwrap();
        assert_eq!(ns.singular, "namespace");
        assert!(!ns.namespaced);
    }
}
