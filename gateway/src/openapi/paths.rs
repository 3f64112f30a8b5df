//! The REST paths of each kind as one neutral model, rendered into swagger 2.0 and OpenAPI
//! 3.0 path items.
//!
//! Paths and verbs follow what the gateway serves and discovery advertises
//! ([`crate::discovery::VERBS`], `has_status`, `has_scale`): the collection (list, create,
//! deletecollection), the item (read, replace, patch, delete), list across namespaces for
//! namespaced kinds, and the `/status` and `/scale` subresources. Every write operation
//! carries `dryRun`, `fieldManager` and `fieldValidation`, and every operation carries
//! `x-kubernetes-group-version-kind`: kubectl's field-validation check looks for exactly
//! that pair on a kind's PATCH operation before it sends `fieldValidation=Strict`.
//!
//! PATCH bodies list the JSON and merge patch types but not strategic merge patch, though
//! the gateway applies it to built-in kinds. The schemas carry no `x-kubernetes-patch-*`
//! metadata (k8s-openapi drops it), and a kubectl that saw strategic merge advertised in
//! OpenAPI v3 would compute `kubectl apply` patches from them, treating every list as
//! atomic. Without it kubectl uses the patch metadata compiled into it for built-in kinds
//! and a merge patch for drover's, which is what the gateway expects.

use serde_json::{Map, Value, json};

use super::schemas::{
    DELETE_OPTIONS, GVK_EXTENSION, KindSchemas, PATCH, SCALE, STATUS, V2_REF_PREFIX, V3_REF_PREFIX,
    gvk,
};
use crate::discovery::{VERBS, has_scale, has_status};

/// The patch content types advertised on PATCH operations (see the module doc).
pub(crate) const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
];

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum In {
    Path,
    Query,
}

/// JSON type of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    String,
    Integer,
    Boolean,
}

/// One path or query parameter.
#[derive(Clone, Debug)]
struct Param {
    name: &'static str,
    location: In,
    description: String,
    ty: Type,
}

impl Param {
    fn query(name: &'static str, ty: Type, description: &str) -> Param {
        Param {
            name,
            location: In::Query,
            description: description.to_string(),
            ty,
        }
    }

    fn path(name: &'static str, description: String) -> Param {
        Param {
            name,
            location: In::Path,
            description,
            ty: Type::String,
        }
    }

    fn render(&self, v3: bool) -> Value {
        let ty = match self.ty {
            Type::String => "string",
            Type::Integer => "integer",
            Type::Boolean => "boolean",
        };
        let mut out = json!({
            "name": self.name,
            "in": match self.location { In::Path => "path", In::Query => "query" },
            "description": self.description,
        });
        if self.location == In::Path {
            out["required"] = json!(true);
        }
        let schema = json!({"type": ty, "uniqueItems": true});
        if v3 {
            out["schema"] = schema;
        } else if let (Value::Object(out), Value::Object(schema)) = (&mut out, schema) {
            out.extend(schema);
        }
        out
    }
}

fn pretty() -> Param {
    Param::query(
        "pretty",
        Type::String,
        "If 'true', then the output is pretty printed.",
    )
}

fn dry_run() -> Param {
    Param::query(
        "dryRun",
        Type::String,
        "When present, indicates that modifications should not be persisted. Valid value: All (process the request fully, store nothing).",
    )
}

fn field_manager() -> Param {
    Param::query(
        "fieldManager",
        Type::String,
        "A name associated with the actor or entity that is making these changes.",
    )
}

fn field_validation() -> Param {
    Param::query(
        "fieldValidation",
        Type::String,
        "How the server handles unknown or duplicate fields in the request body: Ignore, Warn (the default) or Strict (fail the request).",
    )
}

/// The parameters of a write (create, replace, patch).
fn write_params() -> Vec<Param> {
    vec![dry_run(), field_manager(), field_validation()]
}

/// The parameters of a list or watch.
fn list_params() -> Vec<Param> {
    vec![
        Param::query(
            "allowWatchBookmarks",
            Type::Boolean,
            "Requests watch events of type BOOKMARK; servers may ignore it.",
        ),
        Param::query(
            "continue",
            Type::String,
            "The continue token of a previous page of a paginated list.",
        ),
        Param::query(
            "fieldSelector",
            Type::String,
            "A selector restricting the returned objects by their fields. Defaults to everything.",
        ),
        Param::query(
            "labelSelector",
            Type::String,
            "A selector restricting the returned objects by their labels. Defaults to everything.",
        ),
        Param::query(
            "limit",
            Type::Integer,
            "Most objects to return in one page; the list's metadata.continue then fetches the next.",
        ),
        Param::query(
            "resourceVersion",
            Type::String,
            "The resource version the list or watch starts from.",
        ),
        Param::query(
            "resourceVersionMatch",
            Type::String,
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
        ),
        Param::query(
            "sendInitialEvents",
            Type::Boolean,
            "With watch=true, sends the current objects as ADDED events first.",
        ),
        Param::query(
            "timeoutSeconds",
            Type::Integer,
            "Timeout of the list or watch call, in seconds.",
        ),
        Param::query(
            "watch",
            Type::Boolean,
            "Watch for changes to the described resources and return them as a stream of add, update and remove notifications.",
        ),
    ]
}

/// The parameters of a delete.
fn delete_params() -> Vec<Param> {
    vec![
        dry_run(),
        Param::query(
            "gracePeriodSeconds",
            Type::Integer,
            "Seconds before the object should be deleted; zero means delete immediately.",
        ),
        Param::query(
            "orphanDependents",
            Type::Boolean,
            "Deprecated: use propagationPolicy.",
        ),
        Param::query(
            "propagationPolicy",
            Type::String,
            "Whether and how garbage collection is performed: Orphan, Background or Foreground.",
        ),
    ]
}

/// HTTP method of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

/// A request body.
#[derive(Clone, Debug)]
enum Body {
    /// An object of the given definition, any content type.
    Object(String),
    /// A patch of one of [`PATCH_CONTENT_TYPES`].
    Patch,
}

/// One operation of a path.
#[derive(Clone, Debug)]
struct Operation {
    method: Method,
    /// `x-kubernetes-action`: get, list, post, put, patch, delete, deletecollection.
    action: &'static str,
    id: String,
    description: String,
    params: Vec<Param>,
    body: Option<Body>,
    /// Status codes and the definition of the response body.
    responses: Vec<(u16, String)>,
    /// `x-kubernetes-group-version-kind`.
    gvk: Value,
    /// Whether the response may be a watch stream.
    watchable: bool,
}

/// One path and its operations.
#[derive(Clone, Debug)]
pub(crate) struct PathItem {
    /// The path, e.g. `/api/v1/namespaces/{namespace}/pods`.
    pub(crate) path: String,
    params: Vec<Param>,
    operations: Vec<Operation>,
}

impl PathItem {
    /// The path item as swagger 2.0 (`v3 == false`) or OpenAPI 3.0 JSON.
    pub(crate) fn render(&self, v3: bool) -> Value {
        let mut out = Map::new();
        for op in &self.operations {
            out.insert(op.method.key().to_string(), op.render(v3));
        }
        out.insert(
            "parameters".to_string(),
            Value::Array(self.params.iter().map(|p| p.render(v3)).collect()),
        );
        Value::Object(out)
    }
}

fn reference(name: &str, v3: bool) -> Value {
    let prefix = if v3 { V3_REF_PREFIX } else { V2_REF_PREFIX };
    json!({"$ref": format!("{prefix}{name}")})
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        _ => "",
    }
}

impl Operation {
    fn render(&self, v3: bool) -> Value {
        let produces: &[&str] = if self.watchable {
            &["application/json", "application/json;stream=watch"]
        } else {
            &["application/json"]
        };
        let mut responses = Map::new();
        for (code, definition) in &self.responses {
            let mut response = json!({"description": status_text(*code)});
            let schema = reference(definition, v3);
            if v3 {
                let content: Map<String, Value> = produces
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": schema})))
                    .collect();
                response["content"] = Value::Object(content);
            } else {
                response["schema"] = schema;
            }
            responses.insert(code.to_string(), response);
        }
        responses.insert("401".to_string(), json!({"description": status_text(401)}));

        let mut params: Vec<Value> = Vec::new();
        let mut out = json!({
            "description": self.description,
            "operationId": self.id,
            "tags": [self.gvk_tag()],
            "responses": responses,
            "x-kubernetes-action": self.action,
            GVK_EXTENSION: self.gvk,
        });
        match (&self.body, v3) {
            (Some(Body::Object(definition)), true) => {
                out["requestBody"] = json!({
                    "content": {"*/*": {"schema": reference(definition, true)}},
                    "required": true,
                });
            }
            (Some(Body::Patch), true) => {
                let content: Map<String, Value> = PATCH_CONTENT_TYPES
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": reference(PATCH, true)})))
                    .collect();
                out["requestBody"] = json!({"content": content, "required": true});
            }
            (Some(body), false) => {
                let (definition, consumes) = match body {
                    Body::Object(definition) => (definition.as_str(), vec!["*/*"]),
                    Body::Patch => (PATCH, PATCH_CONTENT_TYPES.to_vec()),
                };
                out["consumes"] = json!(consumes);
                params.push(json!({
                    "name": "body", "in": "body", "required": true,
                    "schema": reference(definition, false),
                }));
            }
            (None, _) => {
                if !v3 {
                    out["consumes"] = json!(["*/*"]);
                }
            }
        }
        if !v3 {
            out["produces"] = json!(produces);
            out["schemes"] = json!(["https"]);
        }
        params.extend(self.params.iter().map(|p| p.render(v3)));
        out["parameters"] = Value::Array(params);
        out
    }

    /// The tag kube-openapi gives an operation: `core_v1`, `apps_v1`, `drover.io_v1`.
    fn gvk_tag(&self) -> String {
        let group = self.gvk["group"].as_str().unwrap_or_default();
        let version = self.gvk["version"].as_str().unwrap_or_default();
        let group = match group {
            "" => "core",
            g => g.strip_suffix(".k8s.io").unwrap_or(g),
        };
        format!("{group}_{version}")
    }
}

/// `CoreV1`, `AppsV1`, `DiscoveryV1`, `DroverIoV1`: the group-version part of operation ids.
fn id_infix(group: &str, version: &str) -> String {
    let group = match group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g),
    };
    let mut out = String::new();
    for word in group.split(['.', '-']).chain([version]) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn allows(verb: &str) -> bool {
    VERBS.contains(&verb)
}

/// Every path of one kind.
pub(crate) fn kind_paths(k: &KindSchemas) -> Vec<PathItem> {
    let kind = k.kind;
    let prefix = if kind.group.is_empty() {
        format!("/api/{}", kind.version)
    } else {
        format!("/apis/{}/{}", kind.group, kind.version)
    };
    let infix = id_infix(kind.group, kind.version);
    let scope = if kind.namespaced { "Namespaced" } else { "" };
    let name = kind.kind;
    let object_gvk = gvk(kind.group, kind.version, kind.kind);
    let base = if kind.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", kind.plural)
    } else {
        format!("{prefix}/{}", kind.plural)
    };
    let mut scope_params = Vec::new();
    if kind.namespaced {
        scope_params.push(Param::path(
            "namespace",
            "object name and auth scope, such as for teams and projects".to_string(),
        ));
    }
    let item_params = || {
        let mut params = vec![Param::path("name", format!("name of the {name}"))];
        params.extend(scope_params.iter().cloned());
        params.push(pretty());
        params
    };
    let op = |method, action, id: String, description: String| Operation {
        method,
        action,
        id,
        description,
        params: Vec::new(),
        body: None,
        responses: Vec::new(),
        gvk: object_gvk.clone(),
        watchable: false,
    };

    let mut paths = Vec::new();

    // The collection.
    let mut collection = PathItem {
        path: base.clone(),
        params: scope_params.iter().cloned().chain([pretty()]).collect(),
        operations: Vec::new(),
    };
    if allows("list") {
        let mut list = op(
            Method::Get,
            "list",
            format!("list{infix}{scope}{name}"),
            format!("list or watch objects of kind {name}"),
        );
        list.params = list_params();
        list.responses = vec![(200, k.list.clone())];
        list.watchable = allows("watch");
        collection.operations.push(list);
    }
    if allows("create") {
        let mut create = op(
            Method::Post,
            "post",
            format!("create{infix}{scope}{name}"),
            format!("create a {name}"),
        );
        create.params = write_params();
        create.body = Some(Body::Object(k.object.clone()));
        create.responses = vec![
            (200, k.object.clone()),
            (201, k.object.clone()),
            (202, k.object.clone()),
        ];
        collection.operations.push(create);
    }
    if allows("deletecollection") {
        let mut delete = op(
            Method::Delete,
            "deletecollection",
            format!("deleteCollection{infix}{scope}{name}"),
            format!("delete collection of {name}"),
        );
        delete.params = delete_params();
        delete.params.extend(list_params());
        delete.body = Some(Body::Object(DELETE_OPTIONS.to_string()));
        delete.responses = vec![(200, STATUS.to_string())];
        collection.operations.push(delete);
    }
    paths.push(collection);

    // The item.
    let mut item = PathItem {
        path: format!("{base}/{{name}}"),
        params: item_params(),
        operations: Vec::new(),
    };
    if allows("get") {
        let mut read = op(
            Method::Get,
            "get",
            format!("read{infix}{scope}{name}"),
            format!("read the specified {name}"),
        );
        read.responses = vec![(200, k.object.clone())];
        item.operations.push(read);
    }
    if allows("update") {
        let mut replace = op(
            Method::Put,
            "put",
            format!("replace{infix}{scope}{name}"),
            format!("replace the specified {name}"),
        );
        replace.params = write_params();
        replace.body = Some(Body::Object(k.object.clone()));
        replace.responses = vec![(200, k.object.clone()), (201, k.object.clone())];
        item.operations.push(replace);
    }
    if allows("patch") {
        let mut patch = op(
            Method::Patch,
            "patch",
            format!("patch{infix}{scope}{name}"),
            format!("partially update the specified {name}"),
        );
        patch.params = write_params();
        patch.body = Some(Body::Patch);
        patch.responses = vec![(200, k.object.clone()), (201, k.object.clone())];
        item.operations.push(patch);
    }
    if allows("delete") {
        let mut delete = op(
            Method::Delete,
            "delete",
            format!("delete{infix}{scope}{name}"),
            format!("delete a {name}"),
        );
        delete.params = delete_params();
        delete.body = Some(Body::Object(DELETE_OPTIONS.to_string()));
        delete.responses = vec![(200, STATUS.to_string()), (202, STATUS.to_string())];
        item.operations.push(delete);
    }
    paths.push(item);

    // Subresources: get, replace and patch, like discovery advertises.
    let mut subresources = Vec::new();
    if has_status(kind) {
        subresources.push(("status", "Status", k.object.clone(), object_gvk.clone()));
    }
    if has_scale(kind) {
        subresources.push((
            "scale",
            "Scale",
            SCALE.to_string(),
            gvk("autoscaling", "v1", "Scale"),
        ));
    }
    for (sub, suffix, definition, sub_gvk) in subresources {
        let op = |method, action, verb: &str, description: String| Operation {
            method,
            action,
            id: format!("{verb}{infix}{scope}{name}{suffix}"),
            description,
            params: Vec::new(),
            body: None,
            responses: Vec::new(),
            gvk: sub_gvk.clone(),
            watchable: false,
        };
        let mut read = op(
            Method::Get,
            "get",
            "read",
            format!("read {sub} of the specified {name}"),
        );
        read.responses = vec![(200, definition.clone())];
        let mut replace = op(
            Method::Put,
            "put",
            "replace",
            format!("replace {sub} of the specified {name}"),
        );
        replace.params = write_params();
        replace.body = Some(Body::Object(definition.clone()));
        replace.responses = vec![(200, definition.clone()), (201, definition.clone())];
        let mut patch = op(
            Method::Patch,
            "patch",
            "patch",
            format!("partially update {sub} of the specified {name}"),
        );
        patch.params = write_params();
        patch.body = Some(Body::Patch);
        patch.responses = vec![(200, definition.clone()), (201, definition.clone())];
        paths.push(PathItem {
            path: format!("{base}/{{name}}/{sub}"),
            params: item_params(),
            operations: vec![read, replace, patch],
        });
    }

    // Namespaced kinds also list across namespaces.
    if kind.namespaced && allows("list") {
        let mut list = op(
            Method::Get,
            "list",
            format!("list{infix}{name}ForAllNamespaces"),
            format!("list or watch objects of kind {name} in every namespace"),
        );
        list.responses = vec![(200, k.list.clone())];
        list.watchable = allows("watch");
        let mut params = list_params();
        params.push(pretty());
        paths.push(PathItem {
            path: format!("{prefix}/{}", kind.plural),
            params,
            operations: vec![list],
        });
    }
    paths
}

/// The definitions a path item refers to.
pub(crate) fn referenced_definitions(item: &PathItem) -> Vec<String> {
    let mut out = Vec::new();
    for op in &item.operations {
        match &op.body {
            Some(Body::Object(definition)) => out.push(definition.clone()),
            Some(Body::Patch) => out.push(PATCH.to_string()),
            None => {}
        }
        out.extend(op.responses.iter().map(|(_, d)| d.clone()));
    }
    out
}
