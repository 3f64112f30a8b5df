//! Discovery: `/version`, `/api`, `/apis`, and the group-version resource lists kubectl
//! and client libraries read to map kinds and short names to URLs. Derived from
//! `bus_schema::KINDS`, so a kind added there is served and discoverable at once.

use actix_web::{HttpRequest, HttpResponse, web};
use bus_schema::{KINDS, KindInfo};
use serde_json::{Value, json};

use crate::AppState;
use crate::status::ApiError;

/// Kubernetes version drover reports (the API surface it follows).
pub const KUBE_MAJOR: &str = "1";
/// Minor version reported.
pub const KUBE_MINOR: &str = "32";

/// Registers the discovery routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/version", web::get().to(version))
        .route("/healthz", web::get().to(ok))
        .route("/livez", web::get().to(ok))
        .route("/readyz", web::get().to(ok))
        .route(bus_schema::members::MEMBERS_PATH, web::get().to(members))
        .route("/api", web::get().to(api))
        .route("/api/v1", web::get().to(core_v1))
        .route("/apis", web::get().to(apis))
        .route("/apis/{group}", web::get().to(group))
        .route("/apis/{group}/{version}", web::get().to(group_version));
}

/// Refuses anonymous callers (401); returns nothing else because discovery is readable
/// by every authenticated user, as in Kubernetes' default policy.
pub(crate) fn authenticated(
    req: &HttpRequest,
    state: &AppState,
) -> Result<crate::auth::UserInfo, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    state
        .auth
        .authenticate(header)
        .ok_or_else(ApiError::unauthorized)
}

/// How long the gateway waits for the control plane's membership view.
const MEMBERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /drover/members`: the control plane's gossip view
/// ([`bus_schema::members::MembersView`]), asked over the bus. 503 when no member of the
/// control plane runs the gossip.
async fn members(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    let unavailable = |why: String| ApiError {
        code: 503,
        reason: "ServiceUnavailable",
        message: format!("no membership view: {why}"),
        details: None,
    };
    let client = state.store.nats_client();
    let reply = tokio::time::timeout(
        MEMBERS_TIMEOUT,
        client.request(bus_schema::subjects::MEMBERS_VIEW, Default::default()),
    )
    .await
    .map_err(|_| unavailable("the control plane did not answer".into()))?
    .map_err(|e| match e.kind() {
        async_nats::RequestErrorKind::NoResponders => unavailable(
            "the control plane runs no gossip member (start it with --gossip-bind)".into(),
        ),
        _ => unavailable(e.to_string()),
    })?;
    let view: bus_schema::members::MembersView = serde_json::from_slice(&reply.payload)
        .map_err(|e| unavailable(format!("undecodable view: {e}")))?;
    Ok(HttpResponse::Ok().json(view))
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn version(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    Ok(HttpResponse::Ok().json(json!({
        "major": KUBE_MAJOR, "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-drover.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, arch()),
    })))
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn api(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    Ok(HttpResponse::Ok().json(json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": req.connection_info().host()}],
    })))
}

/// Every kind at every version served: the storage versions (`KINDS`), then the versions
/// served through a conversion.
fn served_kinds() -> impl Iterator<Item = &'static KindInfo> {
    KINDS.iter().chain(bus_schema::convert::served_kinds())
}

/// The groups drover serves, in first-seen order of `KINDS`, with their versions: the
/// storage version first, so it is the preferred one.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for k in served_kinds().filter(|k| !k.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, versions)) if !versions.contains(&k.version) => versions.push(k.version),
            Some(_) => {}
            None => out.push((k.group, vec![k.version])),
        }
    }
    out
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

async fn apis(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    let mut groups: Vec<Value> = groups().iter().map(|(g, vs)| group_json(g, vs)).collect();
    groups.push(crate::metrics_api::group_entry());
    Ok(HttpResponse::Ok()
        .json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})))
}

async fn group(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    let name = path.into_inner();
    let found = groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .ok_or_else(|| ApiError::not_found_path(req.path()))?;
    let mut body = group_json(found.0, &found.1);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(HttpResponse::Ok().json(body))
}

/// Verbs every stored kind supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Kinds with a scale subresource.
pub fn has_scale(kind: &KindInfo) -> bool {
    matches!(
        (kind.group, kind.kind),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet")
    )
}

/// Kinds with a status subresource (everything with a `status` in Kubernetes).
pub fn has_status(kind: &KindInfo) -> bool {
    !matches!(
        kind.kind,
        "ConfigMap"
            | "Secret"
            | "Event"
            | "ServiceAccount"
            | "Endpoints"
            | "EndpointSlice"
            | "LimitRange"
            | "ControllerRevision"
            | "PriorityClass"
            | "Lease"
    )
}

/// The APIResourceList of one group version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&KindInfo> = served_kinds()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in kinds {
        let mut r = json!({
            "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
            "verbs": VERBS, "storageVersionHash": "",
        });
        if !k.short_names.is_empty() {
            r["shortNames"] = json!(k.short_names);
        }
        if !k.categories.is_empty() {
            r["categories"] = json!(k.categories);
        }
        resources.push(r);
        if has_status(k) {
            resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.group.is_empty() && k.kind == "Pod" {
            // kubectl drain evicts through this when discovery lists it (else it deletes).
            resources.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
        if has_scale(k) {
            resources.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

async fn core_v1(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    resource_list("", "v1")
        .map(|b| HttpResponse::Ok().json(b))
        .ok_or_else(|| ApiError::not_found_path(req.path()))
}

async fn group_version(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    let (group, version) = path.into_inner();
    resource_list(&group, &version)
        .map(|b| HttpResponse::Ok().json(b))
        .ok_or_else(|| ApiError::not_found_path(req.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_discoverable_with_its_short_names() {
        for k in KINDS {
            let list = resource_list(k.group, k.version).unwrap();
            let r = list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == k.plural)
                .unwrap();
            assert_eq!(r["kind"], k.kind);
            assert_eq!(r["namespaced"], k.namespaced);
            for s in k.short_names {
                assert!(r["shortNames"].as_array().unwrap().iter().any(|x| x == s));
            }
        }
        assert!(resource_list("nope", "v1").is_none());
        let pods = resource_list("", "v1").unwrap();
        assert!(
            pods["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/status")
        );
        assert!(groups().iter().any(|(g, _)| *g == "drover.io"));
    }

    #[test]
    fn autoscaling_serves_v2_preferred_and_v1() {
        let (_, versions) = groups()
            .into_iter()
            .find(|(g, _)| *g == "autoscaling")
            .unwrap();
        assert_eq!(versions, ["v2", "v1"]);
        assert_eq!(
            group_json("autoscaling", &versions)["preferredVersion"]["version"],
            "v2"
        );
        let v1 = resource_list("autoscaling", "v1").unwrap();
        let names: Vec<&str> = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status"
            ]
        );
    }
}
