//! OpenAPI: `/openapi/v2` (swagger 2.0) and `/openapi/v3` (the group-version index and one
//! OpenAPI 3.0 document per group version), generated from the types.
//!
//! kubectl reads v3 to decide whether a kind's PATCH operation takes `fieldValidation` (then
//! it sends `fieldValidation=Strict` and leaves validation to the server instead of
//! validating client-side from the v2 document), for `kubectl explain`, and to pick a patch
//! type in `kubectl apply`. Schemas come from `k8s-openapi`'s and drover's
//! `schemars` implementations ([`schemas`]); paths and operations from `KINDS` and the
//! verbs discovery advertises ([`paths`]).
//!
//! The documents never change while the process runs, so they are built once, on first
//! use, and served as bytes. Caching follows kube-openapi: the entity tag is the
//! upper-case hex SHA-512 of the body; the v3 index links each document as
//! `/openapi/v3/<gv>?hash=<etag>`, a request carrying the current hash gets
//! `Cache-Control: public, immutable` and a one-year `Expires` (kubectl's disk cache keys
//! on them), an outdated hash is redirected (301) to the current URL, and a matching
//! `If-None-Match` gets 304. v3 is served as JSON only (kubectl reads it as JSON); v2 as
//! JSON or as the protobuf message kubectl asks for ([`protobuf`]). An `Accept` that
//! admits none of them gets 406.

mod paths;
mod protobuf;
pub(crate) mod schemas;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::AppState;
use crate::discovery::{KUBE_MAJOR, KUBE_MINOR, authenticated};
use crate::status::ApiError;

/// Registers `/openapi/v2`, `/openapi/v3` and `/openapi/v3/{group-version}`. They must be
/// configured before the REST default service; like discovery, they require an
/// authenticated caller and nothing more.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi/v2", web::get().to(v2))
        .route("/openapi/v3", web::get().to(v3_index))
        .route(
            "/openapi/v3/{group_version:.*}",
            web::get().to(v3_group_version),
        );
}

/// One served document.
#[derive(Clone, Debug)]
pub struct Document {
    /// The body: JSON, or protobuf for [`Documents::v2_protobuf`].
    pub body: Bytes,
    /// Entity tag, unquoted: upper-case hex SHA-512 of the JSON body.
    pub etag: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        // `Value`'s `Display` is infallible, unlike `serde_json::to_vec`.
        let body = Bytes::from(value.to_string());
        let etag = Sha512::digest(&body)
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        Document { body, etag }
    }
}

/// Every document the gateway serves.
#[derive(Debug)]
pub struct Documents {
    /// `/openapi/v2`: every path and definition.
    pub v2: Document,
    /// The same as gnostic's protobuf message; same entity tag, as in kube-openapi.
    pub v2_protobuf: Document,
    /// `/openapi/v3`: `{"paths": {"<gv>": {"serverRelativeURL": "..."}}}`.
    pub v3_index: Document,
    /// `/openapi/v3/<gv>` by `<gv>` (`api/v1`, `apis/apps/v1`).
    pub v3: BTreeMap<String, Document>,
}

/// The documents, built on first use.
pub fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(build)
}

/// The key of a kind's group version in `/openapi/v3`: `api/v1`, `apis/apps/v1`.
fn group_version_key(kind: &bus_schema::KindInfo) -> String {
    if kind.group.is_empty() {
        format!("api/{}", kind.version)
    } else {
        format!("apis/{}/{}", kind.group, kind.version)
    }
}

/// Where the v3 index points for one group version, with the hash that makes it cacheable.
fn server_relative_url(group_version: &str, etag: &str) -> String {
    format!("/openapi/v3/{group_version}?hash={etag}")
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0")})
}

fn bearer_token_scheme() -> Value {
    json!({
        "BearerToken": {
            "type": "apiKey", "name": "authorization", "in": "header",
            "description": "Bearer token authentication",
        }
    })
}

/// The schema set behind the documents (also what `fieldValidation` checks bodies
/// against), built on first use.
pub(crate) fn schema_set() -> &'static schemas::SchemaSet {
    static SET: OnceLock<schemas::SchemaSet> = OnceLock::new();
    SET.get_or_init(schemas::SchemaSet::build)
}

fn build() -> Documents {
    let started = std::time::Instant::now();
    let set = schema_set().clone();
    let mut by_group_version: BTreeMap<String, Vec<paths::PathItem>> = BTreeMap::new();
    for k in &set.kinds {
        by_group_version
            .entry(group_version_key(k.kind))
            .or_default()
            .extend(paths::kind_paths(k));
    }

    let mut v2_paths = Map::new();
    for item in by_group_version.values().flatten() {
        v2_paths.insert(item.path.clone(), item.render(false));
    }
    let v2_value = json!({
        "swagger": "2.0",
        "info": info(),
        "paths": v2_paths,
        "definitions": set.definitions,
        "securityDefinitions": bearer_token_scheme(),
        "security": [{"BearerToken": []}],
    });
    let v2 = Document::new(&v2_value);
    let v2_protobuf = Document {
        body: Bytes::from(protobuf::encode_document(&v2_value)),
        etag: v2.etag.clone(),
    };

    let mut v3 = BTreeMap::new();
    let mut index = Map::new();
    for (group_version, items) in &by_group_version {
        let roots: Vec<String> = items
            .iter()
            .flat_map(paths::referenced_definitions)
            .collect();
        let component_schemas: Map<String, Value> = set
            .closure(roots.iter().map(String::as_str))
            .into_iter()
            .filter_map(|name| {
                let schema = schemas::to_v3(set.definitions.get(&name)?);
                Some((name, schema))
            })
            .collect();
        let item_values: Map<String, Value> = items
            .iter()
            .map(|item| (item.path.clone(), item.render(true)))
            .collect();
        let document = Document::new(&json!({
            "openapi": "3.0.0",
            "info": info(),
            "paths": item_values,
            "components": {
                "schemas": component_schemas,
                "securitySchemes": bearer_token_scheme(),
            },
            "security": [{"BearerToken": []}],
        }));
        index.insert(
            group_version.clone(),
            json!({"serverRelativeURL": server_relative_url(group_version, &document.etag)}),
        );
        v3.insert(group_version.clone(), document);
    }
    let v3_index = Document::new(&json!({"paths": index}));
    tracing::debug!(
        message = "openapi documents built",
        elapsed_ms = started.elapsed().as_millis() as u64,
        v2_bytes = v2.body.len(),
        n_group_versions = v3.len()
    );
    Documents {
        v2,
        v2_protobuf,
        v3_index,
        v3,
    }
}

/// An encoding a document is served in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/json`.
    Json,
    /// gnostic's protobuf message (swagger 2.0 only).
    Protobuf,
}

/// Media subtypes (of `application/`) kubectl and kube-openapi use for the v2 protobuf
/// document: the `@` form is what clients send, the `.` form what the server answers.
const V2_PROTOBUF_SUBTYPES: &[&str] = &[
    "com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

/// Content type of a protobuf v2 answer.
const V2_PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Picks the encoding for an `Accept` header among `offered` (in the server's order of
/// preference, which decides between equally acceptable ones, e.g. for `*/*`), the way
/// kube-openapi does: clauses by falling quality, the first offered encoding a clause
/// admits. A missing or empty header admits anything; `q=0` refuses. `None`: 406.
pub(crate) fn negotiate(accept: Option<&str>, offered: &[Encoding]) -> Option<Encoding> {
    let accept = accept
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("*/*");
    let mut clauses: Vec<(f32, String, String)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|param| param.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let (ty, subtype) = media.split_once('/')?;
            Some((quality, ty.to_string(), subtype.to_string()))
        })
        .filter(|(quality, _, _)| *quality > 0.0)
        .collect();
    // Stable: equal qualities keep the client's order.
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses.iter().find_map(|(_, ty, subtype)| {
        if ty != "application" && ty != "*" {
            return None;
        }
        offered.iter().copied().find(|encoding| match encoding {
            _ if subtype == "*" => true,
            Encoding::Json => subtype == "json",
            Encoding::Protobuf => V2_PROTOBUF_SUBTYPES.contains(&subtype.as_str()),
        })
    })
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag.trim_matches('"') == etag
        })
}

fn not_acceptable() -> HttpResponse {
    HttpResponse::NotAcceptable()
        .insert_header((header::VARY, "Accept"))
        .finish()
}

/// The document, or 304 when the client already holds it; `immutable` adds the caching
/// headers of a request that named the current hash.
fn respond(
    req: &HttpRequest,
    document: &Document,
    content_type: &str,
    immutable: bool,
) -> HttpResponse {
    let not_modified = if_none_match(req, &document.etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, format!("\"{}\"", document.etag)))
        .insert_header((header::VARY, "Accept"));
    if immutable {
        let expires = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * 365))
            .unwrap_or(jiff::Timestamp::MAX)
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        response
            .insert_header((header::CACHE_CONTROL, "public, immutable"))
            .insert_header((header::EXPIRES, expires));
    }
    if not_modified {
        return response.finish();
    }
    response
        .content_type(content_type)
        .body(document.body.clone())
}

const JSON: &str = "application/json";

fn accept_header(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
}

async fn v2(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    let offered = [Encoding::Json, Encoding::Protobuf];
    let docs = documents();
    Ok(match negotiate(accept_header(&req), &offered) {
        Some(Encoding::Json) => respond(&req, &docs.v2, JSON, false),
        Some(Encoding::Protobuf) => {
            respond(&req, &docs.v2_protobuf, V2_PROTOBUF_CONTENT_TYPE, false)
        }
        None => not_acceptable(),
    })
}

async fn v3_index(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    Ok(respond(&req, &documents().v3_index, JSON, false))
}

async fn v3_group_version(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authenticated(&req, &state)?;
    let group_version = path.into_inner();
    let document = documents()
        .v3
        .get(&group_version)
        .ok_or_else(|| ApiError::not_found_path(req.path()))?;
    // Only JSON: kubectl reads v3 as JSON, and the v3 protobuf message is not encoded.
    if negotiate(accept_header(&req), &[Encoding::Json]).is_none() {
        return Ok(not_acceptable());
    }
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    let hash = query
        .as_ref()
        .and_then(|q| q.get("hash"))
        .filter(|hash| !hash.is_empty());
    match hash {
        Some(hash) if *hash != document.etag => Ok(HttpResponse::MovedPermanently()
            .insert_header((
                header::LOCATION,
                server_relative_url(&group_version, &document.etag),
            ))
            .finish()),
        Some(_) => Ok(respond(&req, document, JSON, true)),
        None => Ok(respond(&req, document, JSON, false)),
    }
}
