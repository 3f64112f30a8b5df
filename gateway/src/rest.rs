//! REST for every stored kind: path parsing, verbs, and their translation to store calls.
//!
//! Paths: `/api/v1/[namespaces/{ns}/]{resource}[/{name}[/{subresource}]]` and
//! `/apis/{group}/{version}/[namespaces/{ns}/]{resource}[/{name}[/{subresource}]]`.

mod field_validation;
mod scale;

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use bus_schema::convert::Conversion;
use bus_schema::selector::{FieldSelector, LabelSelector};
use bus_schema::{KindInfo, kinds};
use drover_store::{DeleteOptions, DeleteOutcome, ListOptions, Store, StoreError};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::RequestAttributes;
use crate::cache::{Caches, ReadRequest};
use crate::discovery::{authenticated, has_status};
use crate::status::{ApiError, success};

mod field_manager;

/// Largest request body accepted (objects are limited to 1.5 MiB by the store; JSON is
/// larger than the stored MessagePack).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Interval of BOOKMARK events on watches that ask for them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// Namespaces every cluster has.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The object a request addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The kind.
    pub kind: &'static KindInfo,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, ...).
    pub subresource: Option<String>,
    /// The version the request speaks when it is not the storage version of `kind`
    /// (`autoscaling/v1` HorizontalPodAutoscalers): bodies are converted into the storage
    /// version on the way in and every object answered is converted back.
    pub served: Option<&'static Conversion>,
}

/// Parses an API path into a [`Target`]. `None` for paths that name no resource.
pub fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    // The storage version, else a version served through a conversion.
    let lookup = |plural: &str| {
        kinds::KINDS
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
            .map(|k| (k, None))
            .or_else(|| {
                bus_schema::convert::by_group_version_resource(group, version, plural)
                    .map(|c| (c.storage(), Some(c)))
            })
    };
    let owned = |s: &&str| Some(s.to_string());
    // Namespace objects live at /api/v1/namespaces/{name}[/status|/finalize].
    let namespace_subresource = |res: &str, tail: &[&str]| {
        group.is_empty() && matches!(res, "status" | "finalize") && tail.is_empty()
    };
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        ["namespaces", ns, res, tail @ ..] if !namespace_subresource(res, tail) => {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let ((kind, served), name, sub) = match rest {
        [res] => (lookup(res)?, None, None),
        [res, name] => (lookup(res)?, owned(name), None),
        [res, name, sub] => (lookup(res)?, owned(name), owned(sub)),
        _ => return None,
    };
    if namespace.is_some() && !kind.namespaced {
        return None;
    }
    Some(Target {
        kind,
        namespace,
        name,
        subresource: sub,
        served,
    })
}

/// Creates the namespaces every cluster has, if missing.
pub async fn ensure_default_namespaces(store: &Store) -> Result<(), StoreError> {
    let kind = ns_kind();
    for ns in DEFAULT_NAMESPACES {
        let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        namespace_defaults(&mut obj);
        match store.create(kind, obj).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What every new namespace gets: the `kubernetes` finalizer, phase Active and the
/// `kubernetes.io/metadata.name` label. Tolerates any shape of input (no indexing that
/// could panic on a non-object `spec`).
fn namespace_defaults(obj: &mut Value) {
    let name = drover_store::object::name(obj).to_string();
    let meta = drover_store::object::meta_mut(obj);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(labels) = labels.as_object_mut() {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
        map.insert("status".into(), json!({"phase": "Active"}));
    }
}

fn ns_kind() -> &'static KindInfo {
    kinds::by_group_kind("", "Namespace").expect("Namespace is in KINDS")
}

/// The single entry point for resource requests.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    // Streams (logs, exec's WebSocket) own the connection: routed before any body read.
    if let Some((target, sub)) = crate::podstream::matches(req.path()) {
        return crate::podstream::serve(req, payload, state, target, sub).await;
    }
    let yaml_out = wants_yaml(&req);
    let result = match read_body(&req, payload).await {
        Ok(body) => handle(&req, body, &state).await,
        Err(e) => Err(e),
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(message = "request failed", method = %req.method(), path = req.path(), error = %e);
            e.response()
        }
    };
    if yaml_out {
        return crate::yaml::json_response_to_yaml(resp).await;
    }
    resp
}

/// Reads the body up to [`MAX_BODY_BYTES`] (413 beyond) and turns a YAML or protobuf
/// body of a create or update into JSON, so the handlers only ever see JSON.
async fn read_body(req: &HttpRequest, payload: web::Payload) -> Result<web::Bytes, ApiError> {
    let body = match payload.to_bytes_limited(MAX_BODY_BYTES).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(format!(
                "reading the request body: {e}"
            )));
        }
        Err(_) => {
            return Err(ApiError {
                code: 413,
                reason: "RequestEntityTooLarge",
                message: format!(
                    "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
                ),
                details: None,
            });
        }
    };
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_write = matches!(req.method().as_str(), "POST" | "PUT" | "DELETE");
    if is_write && crate::yaml::is_yaml_media_type(content_type) {
        return crate::yaml::yaml_to_json_bytes(&body);
    }
    if is_write && crate::protobuf::is_protobuf(content_type) {
        return crate::protobuf::decode(&body).map(web::Bytes::from);
    }
    Ok(body)
}

/// Whether the client prefers YAML (`Accept: application/yaml` first).
fn wants_yaml(req: &HttpRequest) -> bool {
    req.headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(crate::yaml::is_yaml_media_type)
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn verb(method: &Method, target: &Target, q: &HashMap<String, String>) -> &'static str {
    let watch = q.get("watch").is_some_and(|v| v == "true" || v == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        // Subresources created on a named object (`pods/{name}/eviction`).
        ("POST", true) if target.subresource.is_some() => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unsupported",
    }
}

async fn handle(
    req: &HttpRequest,
    body: web::Bytes,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let user = authenticated(req, state)?;
    let target = parse_path(req.path()).ok_or_else(|| ApiError::not_found_path(req.path()))?;
    let mut q = query(req);
    let verb = verb(req.method(), &target, &q);
    let attrs = RequestAttributes {
        verb,
        group: target.kind.group,
        resource: target.kind.plural,
        subresource: target.subresource.as_deref(),
        namespace: target.namespace.as_deref(),
        name: target.name.as_deref(),
    };
    state
        .auth
        .authorize(&user, &attrs)
        .map_err(ApiError::forbidden)?;
    field_manager::resolve(req, &mut q, verb)?;
    let (body, warnings) = validate_fields(req, verb, &target, &q, body)?;
    let body = match target.served {
        Some(conv)
            if matches!(verb, "create" | "update")
                && matches!(target.subresource.as_deref(), None | Some("status")) =>
        {
            body_to_storage(conv, &target, body)?
        }
        _ => body,
    };
    let mut resp = route(req, state, &target, verb, &q, body).await?;
    if let Some(conv) = target.served
        && verb != "watch"
    {
        resp = response_from_storage(conv, resp).await;
    }
    for w in warnings {
        if let Ok(v) =
            actix_web::http::header::HeaderValue::from_str(&field_validation::warning_header(&w))
        {
            resp.headers_mut()
                .append(actix_web::http::header::WARNING, v);
        }
    }
    Ok(resp)
}

/// Applies `fieldValidation` to the bodies that are objects (create, update, merge,
/// strategic and apply patches): returns the body without unknown fields and the
/// warnings to send, or the Strict 400. Bodies that do not parse are left for the
/// handler to refuse with its usual error.
fn validate_fields(
    req: &HttpRequest,
    verb: &str,
    target: &Target,
    q: &HashMap<String, String>,
    body: web::Bytes,
) -> Result<(web::Bytes, Vec<String>), ApiError> {
    let checked = match (verb, target.subresource.as_deref()) {
        ("create" | "update", None | Some("status")) => true,
        ("patch", None | Some("status")) => {
            let ct = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            matches!(
                crate::patch::PatchType::from_content_type(ct),
                Some(
                    crate::patch::PatchType::Merge
                        | crate::patch::PatchType::Strategic
                        | crate::patch::PatchType::Apply
                )
            )
        }
        _ => false,
    };
    if !checked {
        return Ok((body, Vec::new()));
    }
    let mode = field_validation::mode(q)?;
    // JSON is YAML, so one parser reads every object-shaped body (apply may be YAML).
    let Ok(mut obj) = serde_norway::from_slice::<Value>(&body) else {
        return Ok((body, Vec::new()));
    };
    if !obj.is_object() {
        return Ok((body, Vec::new()));
    }
    let schema_kind = target.served.map_or(target.kind, |c| &c.served);
    let warnings = field_validation::check(schema_kind, mode, &mut obj)?;
    let body = serde_json::to_vec(&obj)
        .map(web::Bytes::from)
        .unwrap_or(body);
    Ok((body, warnings))
}

/// Converts the body of a create or update in a served (non-storage) version into the
/// storage version. A body that is not a JSON object is left for the handler to refuse
/// with its usual error; one that does not decode in its version is a 422 with the field
/// paths of that version.
fn body_to_storage(
    conv: &'static Conversion,
    target: &Target,
    body: web::Bytes,
) -> Result<web::Bytes, ApiError> {
    let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
        return Ok(body);
    };
    if !obj.is_object() {
        return Ok(body);
    }
    let served = conv.served.api_version();
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != served
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({served})"
        )));
    }
    let converted = to_storage(conv, target, &obj)?;
    Ok(serde_json::to_vec(&converted)
        .map(web::Bytes::from)
        .unwrap_or(body))
}

/// `conv.to_storage`, its field errors as the 422 `Invalid` Status every kind answers.
fn to_storage(conv: &Conversion, target: &Target, obj: &Value) -> Result<Value, ApiError> {
    (conv.to_storage)(obj).map_err(|errors| {
        let name = drover_store::object::meta_str(obj, "name")
            .map(str::to_string)
            .unwrap_or_else(|| name_of(target).to_string());
        let invalid = StoreError::Invalid {
            kind: conv.served.group_resource(),
            name: name.clone(),
            errors,
        };
        ApiError::from_store(&conv.served, &name, invalid)
    })
}

/// Converts a JSON answer about the storage version (an object, a list, a Table) into
/// the served version the request spoke. Streams (watches) are converted per event.
async fn response_from_storage(conv: &'static Conversion, resp: HttpResponse) -> HttpResponse {
    let is_json = resp
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return resp;
    }
    let (head, body) = resp.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(b) => b,
        Err(_) => return HttpResponse::InternalServerError().finish(),
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return head.set_body(bytes).map_into_boxed_body();
    };
    let converted = conv.response_from_storage(value);
    let out = serde_json::to_vec(&converted).map_or(bytes, web::Bytes::from);
    head.set_body(out).map_into_boxed_body()
}

/// Dispatches a request by verb and subresource.
async fn route(
    req: &HttpRequest,
    state: &AppState,
    target: &Target,
    verb: &'static str,
    q: &HashMap<String, String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (target, q) = (target.clone(), q.clone());
    let store = &state.store;
    match (verb, target.subresource.as_deref()) {
        ("list", None) => list(req, &state.caches, &target, &q).await,
        ("watch", None) => watch(&state.caches, &target, &q).await,
        ("get", None | Some("status")) => {
            let obj = get(store, &target).await?;
            if wants_table(req) {
                let meta = json!({"resourceVersion": drover_store::object::meta_str(&obj, "resourceVersion")});
                let table = crate::table::to_table(
                    target.kind,
                    std::slice::from_ref(&obj),
                    jiff::Timestamp::now(),
                    include_object(&q),
                    meta,
                );
                return Ok(HttpResponse::Ok().json(table));
            }
            Ok(HttpResponse::Ok().json(obj))
        }
        ("create", None) => create(store, &target, &q, &body).await,
        ("update", sub @ (None | Some("status"))) => {
            update(store, &target, &q, &body, sub == Some("status")).await
        }
        ("patch", sub @ (None | Some("status"))) => {
            let ct = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            patch(store, &target, &q, ct, &body, sub == Some("status")).await
        }
        ("get" | "update" | "patch", Some("scale")) if crate::discovery::has_scale(target.kind) => {
            let ct = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            scale_subresource(store, &target, verb, &q, ct, &body).await
        }
        ("create", Some("eviction")) if drover_store::object::is_pod(target.kind) => {
            let ns = target.namespace.as_deref().unwrap_or("");
            crate::admission::evict(store, ns, name_of(&target), &q, &body).await
        }
        ("delete", None) => delete(store, &target, &q, &body).await,
        ("deletecollection", None) => delete_collection(store, &target, &q, &body).await,
        (v, sub) => Err(ApiError::method_not_allowed(
            &v.to_uppercase(),
            &format!(
                "{}{}",
                target.kind.plural,
                sub.map(|s| format!("/{s}")).unwrap_or_default()
            ),
        )),
    }
}

fn name_of(target: &Target) -> &str {
    target.name.as_deref().unwrap_or("")
}

async fn get(store: &Store, target: &Target) -> Result<Value, ApiError> {
    let name = name_of(target);
    store
        .get(target.kind, target.namespace.as_deref(), name)
        .await
        .map_err(|e| ApiError::from_store(target.kind, name, e))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// Checks the body's type and namespace against the URL and fills what is missing.
fn reconcile_body(target: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let kind = target.kind;
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != kind.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != kind.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    obj["apiVersion"] = json!(kind.api_version());
    obj["kind"] = json!(kind.kind);
    if kind.namespaced {
        let url_ns = target.namespace.as_deref().unwrap_or("");
        let meta = drover_store::object::meta_mut(obj);
        match meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(ns) if !url_ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(_) => {}
            None if !url_ns.is_empty() => {
                meta.insert("namespace".into(), json!(url_ns));
            }
            None => {}
        }
    }
    Ok(())
}

fn dry_run(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported dryRun value {other:?}: supported values are \"All\""
        ))),
    }
}

async fn require_namespace(store: &Store, namespace: &str) -> Result<(), ApiError> {
    match store.get(ns_kind(), None, namespace).await {
        Ok(ns) if drover_store::object::is_terminating(&ns) => Err(ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
            details: None,
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::from_store(ns_kind(), namespace, e)),
    }
}

async fn create(
    store: &Store,
    target: &Target,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let obj = parse_json(body)?;
    create_object(store, target, q, obj, Some(field_manager::of(q))).await
}

/// Creates `obj`; `manager` is recorded as its Update manager (`None`: the caller already
/// set `managedFields`, as server-side apply does).
async fn create_object(
    store: &Store,
    target: &Target,
    q: &HashMap<String, String>,
    mut obj: Value,
    manager: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    reconcile_body(target, &mut obj)?;
    let kind = target.kind;
    if kind.namespaced
        && let Some(ns) = drover_store::object::namespace(&obj)
    {
        require_namespace(store, ns).await?;
    }
    if kind.kind == "Namespace" {
        namespace_defaults(&mut obj);
    }
    if let Some(manager) = manager {
        field_manager::track(kind, None, &mut obj, manager, false);
    }
    crate::admission::admit_create(store, kind, &mut obj, dry_run(q)?).await?;
    let name = drover_store::object::name(&obj).to_string();
    if dry_run(q)? {
        let validated = bus_schema::validation::validate_object(kind, &obj);
        return match validated {
            Ok(()) => Ok(HttpResponse::Created().json(obj)),
            Err(errors) => Err(ApiError::from_store(
                kind,
                &name,
                StoreError::Invalid {
                    kind: kind.group_resource(),
                    name: name.clone(),
                    errors,
                },
            )),
        };
    }
    let created = match store.create(kind, obj.clone()).await {
        Ok(created) => created,
        Err(e) => {
            if kind.group.is_empty() && kind.kind == "Service" {
                // Give back what admission claimed, except what a Service of that name
                // holds (an AlreadyExists: its values read as this owner's too).
                let ns = drover_store::object::namespace(&obj);
                let existing = store.get(kind, ns, &name).await.unwrap_or(Value::Null);
                crate::admission::release_services(store, kind, &existing, &obj).await;
            }
            return Err(ApiError::from_store(kind, &name, e));
        }
    };
    Ok(HttpResponse::Created().json(created))
}

async fn update(
    store: &Store,
    target: &Target,
    q: &HashMap<String, String>,
    body: &[u8],
    status_only: bool,
) -> Result<HttpResponse, ApiError> {
    let obj = parse_json(body)?;
    let manager = Some(field_manager::of(q));
    let updated = write(store, target, obj, status_only, dry_run(q)?, manager).await?;
    Ok(HttpResponse::Ok().json(updated))
}

/// Patch attempts when the object changes between read and write (only for patches
/// that do not pin a resourceVersion themselves).
const PATCH_ATTEMPTS: usize = 8;

async fn patch(
    store: &Store,
    target: &Target,
    q: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
    status_only: bool,
) -> Result<HttpResponse, ApiError> {
    use crate::patch::{self, PatchType};
    let kind = target.kind;
    let name = name_of(target).to_string();
    let patch_type = PatchType::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    let dry = dry_run(q)?;
    let apply = patch_type == PatchType::Apply;
    if apply && let Some(conv) = target.served {
        // Server-side apply tracks field ownership in the storage version's fields; the
        // other versions' patches are applied to their own view (below), apply is not.
        return Err(ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!(
                "server-side apply is not supported for {} in version {}; apply the {} object",
                kind.group_resource(),
                conv.served.version,
                kind.api_version()
            ),
            details: None,
        });
    }
    let apply_to =
        |current: Option<&Value>| field_manager::apply(kind, &name, current, body, q, status_only);
    for _ in 0..PATCH_ATTEMPTS {
        let current = match get(store, target).await {
            // Server-side apply creates what does not exist (not through a subresource).
            Err(e) if e.code == 404 && apply && !status_only => {
                let obj = apply_to(None)?;
                return create_object(store, target, q, obj, None).await;
            }
            current => current?,
        };
        // A served version patches its own view of the object, converted back after.
        let view = match target.served {
            Some(conv) => std::borrow::Cow::Owned((conv.from_storage)(&current)),
            None => std::borrow::Cow::Borrowed(&current),
        };
        let patched = match patch_type {
            PatchType::Json => patch::apply_json_patch(&view, body),
            PatchType::Merge => patch::apply_merge_patch(&view, body),
            PatchType::Strategic => patch::apply_strategic_merge_patch(kind.kind, &view, body),
            PatchType::Apply => Ok(apply_to(Some(&current))?),
        };
        let mut patched = patched.map_err(|e| ApiError {
            code: e.status_code(),
            reason: match e.status_code() {
                415 => "UnsupportedMediaType",
                422 => "Invalid",
                _ => "BadRequest",
            },
            message: e.to_string(),
            details: None,
        })?;
        if let Some(conv) = target.served {
            patched = to_storage(conv, target, &patched)?;
        }
        let current_rv = drover_store::object::meta_str(&current, "resourceVersion")
            .unwrap_or("")
            .to_string();
        let pinned = drover_store::object::meta_str(&patched, "resourceVersion")
            .is_some_and(|rv| rv != current_rv);
        if !pinned {
            drover_store::object::meta_mut(&mut patched)
                .insert("resourceVersion".into(), json!(current_rv));
        }
        let manager = (!apply).then(|| field_manager::of(q));
        match write(store, target, patched, status_only, dry, manager).await {
            Err(e) if e.reason == "Conflict" && !pinned => continue,
            Ok(obj) => return Ok(HttpResponse::Ok().json(obj)),
            Err(e) => return Err(e),
        }
    }
    Err(keeps_changing(kind, &name))
}

/// Writes a whole object (PUT, and the result of a PATCH). `manager` is recorded as the
/// write's Update manager; `None` keeps the `managedFields` of `obj` (server-side apply
/// computed them).
async fn write(
    store: &Store,
    target: &Target,
    mut obj: Value,
    status_only: bool,
    dry: bool,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    reconcile_body(target, &mut obj)?;
    let kind = target.kind;
    let name = name_of(target).to_string();
    match drover_store::object::meta_str(&obj, "name") {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
        None => {
            drover_store::object::meta_mut(&mut obj).insert("name".into(), json!(name));
        }
    }
    let current = get(store, target).await?;
    let sent_fields = obj.pointer("/metadata/managedFields").cloned();
    let mut merged = if status_only {
        // The status subresource changes only the status.
        let mut m = current.clone();
        m["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
        if let Some(rv) = drover_store::object::meta_str(&obj, "resourceVersion") {
            drover_store::object::meta_mut(&mut m).insert("resourceVersion".into(), json!(rv));
        }
        m
    } else if has_status(kind) {
        // Writes to the main resource leave the status alone.
        let mut m = obj;
        match current.get("status") {
            Some(s) => m["status"] = s.clone(),
            None => {
                m.as_object_mut().map(|o| o.remove("status"));
            }
        }
        m
    } else {
        obj
    };
    field_manager::record(
        kind,
        &current,
        &mut merged,
        manager,
        status_only,
        sent_fields,
    );
    if !status_only {
        crate::admission::admit_update(store, kind, &current, &mut merged, dry).await?;
    }
    if dry {
        return Ok(merged);
    }
    match store.update(kind, merged.clone()).await {
        Ok(updated) => {
            crate::admission::release_services(store, kind, &updated, &current).await;
            Ok(updated)
        }
        Err(e) => {
            if kind.group.is_empty() && kind.kind == "Service" {
                // Give back what this write claimed, except what the Service holds now
                // (a concurrent update may have claimed the same value and won).
                let now = get(store, target).await.unwrap_or(current);
                crate::admission::release_services(store, kind, &now, &merged).await;
            }
            Err(ApiError::from_store(kind, &name, e))
        }
    }
}

/// The 409 after [`PATCH_ATTEMPTS`] read-modify-write rounds lost to other writers.
fn keeps_changing(kind: &'static KindInfo, name: &str) -> ApiError {
    ApiError::from_store(
        kind,
        name,
        StoreError::Conflict {
            kind: kind.group_resource(),
            name: name.to_string(),
            reason: "the object keeps changing; retry".into(),
        },
    )
}

/// GET, PUT and PATCH of the `scale` subresource.
async fn scale_subresource(
    store: &Store,
    target: &Target,
    verb: &str,
    q: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    use crate::patch::{self, PatchType};
    let kind = target.kind;
    let name = name_of(target).to_string();
    let dry = dry_run(q)?;
    for _ in 0..PATCH_ATTEMPTS {
        let current = get(store, target).await?;
        let current_scale = scale::to_scale(&current);
        let wanted = match verb {
            "get" => return Ok(HttpResponse::Ok().json(current_scale)),
            "update" => parse_json(body)?,
            _ => {
                let patched = match PatchType::from_content_type(content_type) {
                    Some(PatchType::Json) => patch::apply_json_patch(&current_scale, body),
                    Some(PatchType::Merge | PatchType::Strategic) => {
                        patch::apply_merge_patch(&current_scale, body)
                    }
                    _ => return Err(ApiError::unsupported_media_type(content_type)),
                };
                patched.map_err(|e| ApiError {
                    code: e.status_code(),
                    reason: if e.status_code() == 422 {
                        "Invalid"
                    } else {
                        "BadRequest"
                    },
                    message: e.to_string(),
                    details: None,
                })?
            }
        };
        let updated = scale::apply_scale(kind, &current, &wanted)?;
        if dry {
            return Ok(HttpResponse::Ok().json(scale::to_scale(&updated)));
        }
        let wanted_rv =
            drover_store::object::meta_str(&wanted, "resourceVersion").filter(|s| !s.is_empty());
        let pinned_by_client = match verb {
            "update" => wanted_rv.is_some(),
            _ => wanted_rv != drover_store::object::meta_str(&current_scale, "resourceVersion"),
        };
        match store.update(kind, updated).await {
            Ok(obj) => return Ok(HttpResponse::Ok().json(scale::to_scale(&obj))),
            Err(StoreError::Conflict { .. }) if !pinned_by_client => continue,
            Err(e) => return Err(ApiError::from_store(kind, &name, e)),
        }
    }
    Err(keeps_changing(kind, &name))
}

async fn delete(
    store: &Store,
    target: &Target,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let kind = target.kind;
    let name = name_of(target).to_string();
    let opts_body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(body)?
    };
    let grace = q
        .get("gracePeriodSeconds")
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {s:?}")))
        })
        .transpose()?
        .or_else(|| opts_body.get("gracePeriodSeconds").and_then(Value::as_i64));
    let mut opts = DeleteOptions {
        uid: opts_body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: opts_body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        grace_period_seconds: grace,
        add_finalizers: propagation_finalizers(q, &opts_body)?,
    };
    if drover_store::object::is_pod(kind) && opts.grace_period_seconds.is_none() {
        // A pod bound to a node stops gracefully (its agent deletes it with grace 0 when
        // the containers are gone); an unbound pod has nothing to stop.
        opts.grace_period_seconds = drover_store::object::default_grace(&get(store, target).await?);
    }
    if dry_run(q)? {
        let current = get(store, target).await?;
        return Ok(HttpResponse::Ok().json(current));
    }
    match store
        .delete(kind, target.namespace.as_deref(), &name, &opts)
        .await
    {
        Ok(DeleteOutcome::Deleted(obj)) => {
            crate::admission::release_services(store, kind, &Value::Null, &obj).await;
            Ok(HttpResponse::Ok().json(if kind.kind == "Pod" {
                obj
            } else {
                success(kind, &name, drover_store::object::meta_str(&obj, "uid"))
            }))
        }
        Ok(DeleteOutcome::Terminating(obj)) => Ok(HttpResponse::Ok().json(obj)),
        Err(e) => Err(ApiError::from_store(kind, &name, e)),
    }
}

/// The finalizers a delete's `propagationPolicy` (or the older `orphanDependents`) asks
/// the garbage collector for: Background (the default) needs none.
fn propagation_finalizers(
    q: &HashMap<String, String>,
    body: &Value,
) -> Result<Vec<String>, ApiError> {
    let policy = q
        .get("propagationPolicy")
        .map(String::as_str)
        .or_else(|| body.get("propagationPolicy").and_then(Value::as_str));
    let orphan_dependents = q
        .get("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| body.get("orphanDependents").and_then(Value::as_bool));
    match (policy, orphan_dependents) {
        (Some(_), Some(_)) => Err(ApiError::invalid_options(
            "propagationPolicy",
            "orphanDependents and deleteOptions.propagationPolicy cannot both be set",
        )),
        (None | Some(""), None | Some(false)) | (Some("Background"), None) => Ok(Vec::new()),
        (Some("Foreground"), None) => Ok(vec!["foregroundDeletion".into()]),
        (Some("Orphan"), None) | (None, Some(true)) => Ok(vec!["orphan".into()]),
        (Some(other), None) => Err(ApiError::invalid_options(
            "propagationPolicy",
            &format!(
                "Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
        )),
    }
}

async fn delete_collection(
    store: &Store,
    target: &Target,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let list_opts = list_options(target, q)?;
    let opts_body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(body)?
    };
    let add_finalizers = propagation_finalizers(q, &opts_body)?;
    let kind = target.kind;
    let listed = list_objects(store, target, &list_opts).await?;
    let mut items = Vec::new();
    for obj in listed.items {
        let name = drover_store::object::name(&obj).to_string();
        let ns = drover_store::object::namespace(&obj).map(str::to_string);
        let opts = DeleteOptions {
            grace_period_seconds: if drover_store::object::is_pod(kind) {
                drover_store::object::default_grace(&obj)
            } else {
                None
            },
            add_finalizers: add_finalizers.clone(),
            ..Default::default()
        };
        match store.delete(kind, ns.as_deref(), &name, &opts).await {
            Ok(DeleteOutcome::Deleted(o)) => {
                crate::admission::release_services(store, kind, &Value::Null, &o).await;
                items.push(o);
            }
            Ok(DeleteOutcome::Terminating(o)) => items.push(o),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(ApiError::from_store(kind, &name, e)),
        }
    }
    Ok(HttpResponse::Ok().json(json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": {}, "items": items})))
}

/// Lists the target's kind in the target's namespace (or all).
async fn list_objects(
    store: &Store,
    target: &Target,
    opts: &ListOptions,
) -> Result<drover_store::ObjectList, ApiError> {
    store
        .list(target.kind, target.namespace.as_deref(), opts)
        .await
        .map_err(|e| ApiError::from_store(target.kind, "", e))
}

/// Field selectors each kind supports (Kubernetes' per-kind field label conversions).
fn supported_field(kind: &KindInfo, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || match kind.kind {
            "Pod" => matches!(
                field,
                "spec.nodeName"
                    | "status.phase"
                    | "spec.restartPolicy"
                    | "spec.schedulerName"
                    | "spec.serviceAccountName"
                    | "status.podIP"
                    | "status.nominatedNodeName"
            ),
            "Event" => matches!(
                field,
                "involvedObject.kind"
                    | "involvedObject.namespace"
                    | "involvedObject.name"
                    | "involvedObject.uid"
                    | "involvedObject.apiVersion"
                    | "involvedObject.resourceVersion"
                    | "involvedObject.fieldPath"
                    | "reason"
                    | "reportingComponent"
                    | "source"
                    | "type"
            ),
            "Secret" => field == "type",
            "Node" => field == "spec.unschedulable",
            "Namespace" => field == "status.phase",
            "ReplicaSet" | "Job" => field == "status.replicas" || field == "status.successful",
            _ => false,
        }
}

fn list_options(target: &Target, q: &HashMap<String, String>) -> Result<ListOptions, ApiError> {
    let label_selector = match q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let field_selector = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => {
            let fs = FieldSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
            if let Some(bad) = fs.fields().find(|f| !supported_field(target.kind, f)) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {bad}"
                )));
            }
            Some(fs)
        }
        None => None,
    };
    let limit = match q.get("limit").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {s:?}")))?,
        ),
        None => None,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: q.get("continue").cloned().filter(|s| !s.is_empty()),
    })
}

async fn list(
    req: &HttpRequest,
    caches: &Caches,
    target: &Target,
    q: &HashMap<String, String>,
) -> Result<HttpResponse, ApiError> {
    let opts = list_options(target, q)?;
    let kind = target.kind;
    let read = ReadRequest::from_query(q).map_err(ApiError::bad_request)?;
    let listed = caches
        .list(kind, target.namespace.as_deref(), &opts, &read)
        .await?;
    let mut meta = json!({"resourceVersion": listed.resource_version.to_string()});
    if let Some(c) = &listed.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(n) = listed.remaining_item_count {
        meta["remainingItemCount"] = json!(n);
    }
    if wants_table(req) {
        let table = crate::table::to_table(
            kind,
            &listed.items,
            jiff::Timestamp::now(),
            include_object(q),
            meta,
        );
        return Ok(HttpResponse::Ok().json(table));
    }
    Ok(HttpResponse::Ok().json(json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": meta, "items": listed.items})))
}

/// Whether the client asked for a meta.k8s.io Table (kubectl get does).
fn wants_table(req: &HttpRequest) -> bool {
    req.headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
        })
}

fn include_object(q: &HashMap<String, String>) -> crate::table::IncludeObject {
    crate::table::IncludeObject::parse(q.get("includeObject").map(String::as_str))
}

fn watch_line(event_type: &str, object: &Value) -> web::Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    web::Bytes::from(line)
}

/// A watch event's object in the served version: a bookmark carries only metadata, so
/// only its `apiVersion` changes; an ERROR's Status is left alone.
fn watch_object(conv: &Conversion, event_type: &str, object: &Value) -> Value {
    let mut out = object.clone();
    match event_type {
        "BOOKMARK" => {
            out["apiVersion"] = json!(conv.served.api_version());
            out
        }
        _ => conv.response_from_storage(out),
    }
}

async fn watch(
    caches: &Caches,
    target: &Target,
    q: &HashMap<String, String>,
) -> Result<HttpResponse, ApiError> {
    let opts = list_options(target, q)?;
    let read = ReadRequest::from_query(q).map_err(ApiError::bad_request)?;
    let bookmarks = q
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true" || v == "1");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let ns = target.namespace.as_deref();
    let interval = bookmarks.then_some(BOOKMARK_INTERVAL);
    let events = caches
        .watch(target.kind, ns, &opts, &read, interval)
        .await?;
    // timeoutSeconds ends the stream cleanly, as in Kubernetes.
    let deadline = async move {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let served = target.served;
    let stream = events
        .map(move |e| {
            let line = match served {
                None => watch_line(e.event_type, &e.object),
                Some(conv) => {
                    watch_line(e.event_type, &watch_object(conv, e.event_type, &e.object))
                }
            };
            Ok::<_, actix_web::Error>(line)
        })
        .take_until(deadline);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Transfer-Encoding", "chunked"))
        .streaming(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (plural, namespace, name, subresource)
    type Expected<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn check(path: &str, want: Option<Expected<'_>>) {
        let got = parse_path(path).map(|t| (t.kind.plural, t.namespace, t.name, t.subresource));
        let want = want.map(|(k, ns, n, s)| {
            (
                k,
                ns.map(String::from),
                n.map(String::from),
                s.map(String::from),
            )
        });
        assert_eq!(got, want, "{path}");
    }

    #[test]
    fn a_served_version_parses_to_the_stored_kind_and_its_conversion() {
        let v1 = parse_path("/apis/autoscaling/v1/namespaces/a/horizontalpodautoscalers").unwrap();
        assert_eq!(v1.kind.version, "v2");
        assert_eq!(v1.served.map(|c| c.served.version), Some("v1"));
        let v2 = parse_path("/apis/autoscaling/v2/namespaces/a/horizontalpodautoscalers").unwrap();
        assert_eq!(v2.kind, v1.kind);
        assert!(v2.served.is_none());
    }

    #[test]
    fn watch_events_of_a_served_version() {
        let conv = bus_schema::convert::by_group_version_resource(
            "autoscaling",
            "v1",
            "horizontalpodautoscalers",
        )
        .unwrap();
        let bookmark = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"resourceVersion": "9"}});
        assert_eq!(
            watch_object(conv, "BOOKMARK", &bookmark),
            json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"resourceVersion": "9"}})
        );
        let added = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "a"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 2, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 40}}}]}});
        let got = watch_object(conv, "ADDED", &added);
        assert_eq!(got["apiVersion"], "autoscaling/v1");
        assert_eq!(got["spec"]["targetCPUUtilizationPercentage"], 40);
        let gone = json!({"apiVersion": "v1", "kind": "Status", "code": 410});
        assert_eq!(watch_object(conv, "ERROR", &gone), gone);
    }

    #[test]
    fn paths() {
        check("/api/v1/pods", Some(("pods", None, None, None)));
        check(
            "/api/v1/namespaces/default/pods",
            Some(("pods", Some("default"), None, None)),
        );
        check(
            "/api/v1/namespaces/default/pods/web",
            Some(("pods", Some("default"), Some("web"), None)),
        );
        check(
            "/api/v1/namespaces/default/pods/web/status",
            Some(("pods", Some("default"), Some("web"), Some("status"))),
        );
        check("/api/v1/namespaces", Some(("namespaces", None, None, None)));
        check(
            "/api/v1/namespaces/default",
            Some(("namespaces", None, Some("default"), None)),
        );
        check(
            "/api/v1/namespaces/default/status",
            Some(("namespaces", None, Some("default"), Some("status"))),
        );
        check(
            "/api/v1/namespaces/default/finalize",
            Some(("namespaces", None, Some("default"), Some("finalize"))),
        );
        check("/api/v1/nodes/n1", Some(("nodes", None, Some("n1"), None)));
        check(
            "/apis/apps/v1/namespaces/ns1/deployments/web/scale",
            Some(("deployments", Some("ns1"), Some("web"), Some("scale"))),
        );
        check(
            "/apis/apps/v1/deployments",
            Some(("deployments", None, None, None)),
        );
        check(
            "/apis/drover.io/v1/namespaces/a/trafficsplits/x",
            Some(("trafficsplits", Some("a"), Some("x"), None)),
        );
        check(
            "/apis/autoscaling/v1/namespaces/ns1/horizontalpodautoscalers/web/status",
            Some((
                "horizontalpodautoscalers",
                Some("ns1"),
                Some("web"),
                Some("status"),
            )),
        );
        check("/apis/autoscaling/v3/horizontalpodautoscalers", None);
        check("/api/v1/namespaces/default/nodes", None);
        check("/api/v2/pods", None);
        check("/apis/apps/v1/pods", None);
        check("/api/v1/pods/a/b/c", None);
        check("/nope", None);
    }
}
