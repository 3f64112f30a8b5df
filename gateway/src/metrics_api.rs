//! `metrics.k8s.io/v1beta1` (what metrics-server serves through the aggregator): discovery
//! and read-only `PodMetrics` / `NodeMetrics` (list, get, `labelSelector` on lists), so
//! `kubectl top pod` and `kubectl top node` work. The data is not in the store: the
//! gateway follows every node agent's usage report on NATS
//! ([`bus_schema::subjects::METRICS_USAGE_ALL`]) and keeps the latest per node in a
//! [`UsageTable`]; samples older than [`MAX_SAMPLE_AGE`] are not served (a node that
//! stopped reporting has no metrics rather than frozen ones).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use bus_schema::metrics::{PodSample, Usage, UsageReport, UsageTable};
use bus_schema::selector::LabelSelector;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::AppState;
use crate::status::ApiError;

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// The one version served.
pub const VERSION: &str = "v1beta1";
/// Samples older than this (by arrival) are not served.
pub const MAX_SAMPLE_AGE: Duration = Duration::from_secs(60);
/// Delay before subscribing again after the subscription failed or ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// The latest usage reports, shared by the handlers and the follower task.
#[derive(Clone)]
pub struct MetricsApi {
    table: Arc<Mutex<UsageTable>>,
    /// Keeps the follower alive as long as any handler holds the API.
    _follower: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl MetricsApi {
    /// Starts following the node agents' usage reports over `client`.
    pub fn start(client: async_nats::Client) -> MetricsApi {
        let table = Arc::new(Mutex::new(UsageTable::default()));
        let follower = tokio::spawn(follow(client, table.clone()));
        MetricsApi {
            table,
            _follower: Arc::new(AbortOnDrop(follower)),
        }
    }

    /// Registers the metrics.k8s.io routes (before the generic REST fallback).
    pub fn routes(&self, cfg: &mut web::ServiceConfig) {
        let base = format!("/apis/{GROUP}");
        let v = format!("{base}/{VERSION}");
        cfg.app_data(web::Data::new(self.clone()))
            .route(&base, web::get().to(group))
            .route(&v, web::get().to(resources))
            .route(&format!("{v}/nodes"), web::get().to(list_nodes))
            .route(&format!("{v}/nodes/{{name}}"), web::get().to(get_node))
            .route(&format!("{v}/pods"), web::get().to(list_all_pods))
            .route(
                &format!("{v}/namespaces/{{ns}}/pods"),
                web::get().to(list_pods),
            )
            .route(
                &format!("{v}/namespaces/{{ns}}/pods/{{name}}"),
                web::get().to(get_pod),
            );
    }

    fn with_table<T>(&self, f: impl FnOnce(&UsageTable) -> T) -> T {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.expire(now_ms(), MAX_SAMPLE_AGE.as_millis() as i64);
        f(&table)
    }
}

/// The group entry `/apis` lists.
pub fn group_entry() -> Value {
    let version = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

async fn follow(client: async_nats::Client, table: Arc<Mutex<UsageTable>>) {
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
                        Ok((_, report)) => table
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(report, now_ms()),
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

async fn group(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    crate::discovery::authenticated(&req, &state)?;
    let mut body = group_entry();
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(HttpResponse::Ok().json(body))
}

async fn resources(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    crate::discovery::authenticated(&req, &state)?;
    Ok(HttpResponse::Ok().json(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })))
}

fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn window(ms: u64) -> String {
    // Go's Duration string for whole and fractional seconds (`15s`, `1.5s`).
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

/// metrics-server's quantities: CPU in nanocores-or-millicores, memory in Ki when whole.
fn usage_json(usage: Usage) -> Value {
    let memory = if usage.memory_bytes.is_multiple_of(1024) {
        format!("{}Ki", usage.memory_bytes / 1024)
    } else {
        usage.memory_bytes.to_string()
    };
    json!({"cpu": format!("{}m", usage.cpu_millis), "memory": memory})
}

fn pod_json(sample: &PodSample) -> Value {
    let containers: Vec<Value> = sample
        .pod
        .containers
        .iter()
        .map(|c| json!({"name": c.name, "usage": usage_json(c.usage)}))
        .collect();
    json!({
        "kind": "PodMetrics", "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {"name": sample.pod.name, "namespace": sample.pod.namespace,
                     "labels": sample.pod.labels, "creationTimestamp": timestamp(now_ms())},
        "timestamp": timestamp(sample.timestamp_ms), "window": window(sample.window_ms),
        "containers": containers,
    })
}

fn list_json(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": {}, "items": items})
}

/// The `labelSelector` query parameter, if any (a 400 when malformed).
fn label_selector(req: &HttpRequest) -> Result<Option<LabelSelector>, ApiError> {
    let query: BTreeMap<String, String> =
        web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    match query.get("labelSelector").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => LabelSelector::parse(s)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}"))),
    }
}

/// metrics-server's 404 (`podmetrics.metrics.k8s.io "default/web" not found`).
fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError {
        code: 404,
        reason: "NotFound",
        message: format!("{resource}.{GROUP} {name:?} not found"),
        details: Some(json!({"name": name, "group": GROUP, "kind": resource})),
    }
}

fn pods_response(
    req: &HttpRequest,
    api: &MetricsApi,
    namespace: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let selector = label_selector(req)?;
    let items: Vec<Value> = api
        .with_table(|t| t.pods(namespace))
        .iter()
        .filter(|s| {
            selector
                .as_ref()
                .is_none_or(|sel| sel.matches(&s.pod.labels))
        })
        .map(pod_json)
        .collect();
    Ok(HttpResponse::Ok().json(list_json("PodMetricsList", items)))
}

async fn list_all_pods(
    req: HttpRequest,
    state: web::Data<AppState>,
    api: web::Data<MetricsApi>,
) -> Result<HttpResponse, ApiError> {
    crate::discovery::authenticated(&req, &state)?;
    pods_response(&req, &api, None)
}

async fn list_pods(
    req: HttpRequest,
    state: web::Data<AppState>,
    api: web::Data<MetricsApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    crate::discovery::authenticated(&req, &state)?;
    pods_response(&req, &api, Some(&path.into_inner()))
}

async fn get_pod(
    req: HttpRequest,
    state: web::Data<AppState>,
    api: web::Data<MetricsApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    crate::discovery::authenticated(&req, &state)?;
    let (ns, name) = path.into_inner();
    api.with_table(|t| t.pod(&ns, &name))
        .map(|s| HttpResponse::Ok().json(pod_json(&s)))
        .ok_or_else(|| not_found("podmetrics", &format!("{ns}/{name}")))
}

fn node_json(name: &str, sample: &bus_schema::metrics::NodeSample) -> Value {
    json!({
        "kind": "NodeMetrics", "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {"name": name, "creationTimestamp": timestamp(now_ms())},
        "timestamp": timestamp(sample.timestamp_ms), "window": window(sample.window_ms),
        "usage": usage_json(sample.usage),
    })
}

async fn list_nodes(
    req: HttpRequest,
    state: web::Data<AppState>,
    api: web::Data<MetricsApi>,
) -> Result<HttpResponse, ApiError> {
    crate::discovery::authenticated(&req, &state)?;
    // Node labels are not in the reports: a labelSelector is accepted (kubectl sends
    // one for `top node -l`) but filtered by kubectl's own node list.
    label_selector(&req)?;
    let items: Vec<Value> = api
        .with_table(|t| t.nodes())
        .iter()
        .map(|(name, s)| node_json(name, s))
        .collect();
    Ok(HttpResponse::Ok().json(list_json("NodeMetricsList", items)))
}

async fn get_node(
    req: HttpRequest,
    state: web::Data<AppState>,
    api: web::Data<MetricsApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    crate::discovery::authenticated(&req, &state)?;
    let name = path.into_inner();
    api.with_table(|t| t.node(&name))
        .map(|s| HttpResponse::Ok().json(node_json(&name, &s)))
        .ok_or_else(|| not_found("nodemetrics", &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_metrics_server_writes_them() {
        let check = |usage: Usage, cpu: &str, memory: &str| {
            let v = usage_json(usage);
            assert_eq!(
                (v["cpu"].as_str(), v["memory"].as_str()),
                (Some(cpu), Some(memory))
            );
        };
        check(
            Usage {
                cpu_millis: 250,
                memory_bytes: 8 * 1024 * 1024,
            },
            "250m",
            "8192Ki",
        );
        check(
            Usage {
                cpu_millis: 0,
                memory_bytes: 1000,
            },
            "0m",
            "1000",
        );
        assert_eq!(window(15_000), "15s");
        assert_eq!(window(1_500), "1.5s");
    }
}
