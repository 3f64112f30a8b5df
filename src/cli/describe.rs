//! `drover describe KIND NAME...`: an object in kubectl describe's sections (Name,
//! Namespace, Labels, Annotations, status, containers of pods, replicas of deployments,
//! ports of services, data of config maps, ...) followed by the Events about it.
//!
//! Rendering is a pure function of the object, its events and the clock ([`render`]), so
//! the layout is unit-tested; any field may be missing or mistyped without a panic.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use kube::api::ListParams;
use serde_json::Value;

use super::events::last_seen;
use super::print::{DESCRIBE_PADDING, tabwrite};
use super::{
    AlreadyReported, ClientArgs, Ctx, Resource, error_line, kinds_and_names, str_at, to_value,
};

/// Arguments of `drover describe`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// Resource type, or TYPE/NAME.
    #[arg(value_name = "KIND")]
    pub resource: String,
    /// Objects to describe.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs `drover describe`.
pub async fn run(args: DescribeArgs) -> Result<()> {
    let ctx = Ctx::connect(&args.client).await?;
    let mut failed = false;
    let mut first = true;
    for request in kinds_and_names(&args.resource, &args.names)? {
        if request.names.is_empty() {
            bail!(
                "you must name the object(s) to describe: drover describe {} NAME",
                request.kind
            );
        }
        let resource = ctx.resources().await?.resolve(&request.kind)?.clone();
        let namespace = resource.namespaced.then(|| ctx.namespace.clone());
        let api = ctx.api(&resource, namespace.as_deref());
        for name in &request.names {
            let obj = match api.get(name).await {
                Ok(o) => to_value(&o),
                Err(e) => {
                    eprintln!("{}", error_line(&e.into()));
                    failed = true;
                    continue;
                }
            };
            let events = events_for(&ctx, &resource, &obj).await?;
            if !first {
                println!("\n");
            }
            first = false;
            print!("{}", render(&resource, &obj, &events, Timestamp::now()));
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// The events whose involvedObject is this object, oldest first: selected by kind, name
/// and namespace on the server; a uid, when an event records one, must match too.
async fn events_for(ctx: &Ctx, resource: &Resource, obj: &Value) -> Result<Vec<Value>> {
    let resources = ctx.resources().await?;
    let Ok(event_resource) = resources.by_api_version_kind("v1", "Event") else {
        return Ok(Vec::new());
    };
    let name = str_at(obj, "/metadata/name");
    let namespace = str_at(obj, "/metadata/namespace");
    let mut selector = format!(
        "involvedObject.kind={},involvedObject.name={name}",
        resource.kind
    );
    if !namespace.is_empty() {
        selector.push_str(&format!(",involvedObject.namespace={namespace}"));
    }
    let api = ctx.api(event_resource, (!namespace.is_empty()).then_some(namespace));
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .context("listing the object's events")?;
    let uid = str_at(obj, "/metadata/uid");
    let mut events: Vec<Value> = list
        .items
        .iter()
        .map(to_value)
        .filter(|e| {
            let event_uid = str_at(e, "/involvedObject/uid");
            event_uid.is_empty() || event_uid == uid
        })
        .collect();
    events.sort_by(|a, b| {
        let t = |e: &Value| last_seen(e).parse::<Timestamp>().ok();
        t(a).cmp(&t(b))
    });
    Ok(events)
}

/// Lines of `key:\tvalue` cells, aligned like kubectl's describe tabwriter.
#[derive(Default)]
struct Out {
    lines: Vec<Vec<String>>,
}

impl Out {
    fn kv(&mut self, level: usize, key: &str, value: impl Into<String>) {
        self.lines
            .push(vec![format!("{}{key}:", indent(level)), value.into()]);
    }

    fn title(&mut self, level: usize, key: &str) {
        self.lines.push(vec![format!("{}{key}:", indent(level))]);
    }

    fn raw(&mut self, level: usize, cells: Vec<String>) {
        let mut cells = cells;
        if let Some(first) = cells.first_mut() {
            *first = format!("{}{first}", indent(level));
        }
        self.lines.push(cells);
    }

    /// A key with one value per line (labels, annotations, env): `<none>` when empty.
    fn multiline(&mut self, level: usize, key: &str, values: Vec<String>) {
        let mut values = values.into_iter();
        match values.next() {
            None => self.kv(level, key, "<none>"),
            Some(first) => {
                self.kv(level, key, first);
                for v in values {
                    self.raw(level, vec![String::new(), v]);
                }
            }
        }
    }

    fn finish(self) -> String {
        tabwrite(&self.lines, 0, DESCRIBE_PADDING)
    }
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

/// `k=v` per label (or `k: v` per annotation), sorted.
fn pairs(map: Option<&Value>, sep: &str) -> Vec<String> {
    let mut out: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}{sep}{}", scalar(v)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A scalar as text; objects and arrays as compact JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn array_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// kubectl's time format in describe (RFC 1123 with a numeric zone), in UTC.
fn describe_time(s: &str) -> String {
    match s.parse::<Timestamp>() {
        Ok(t) => t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        Err(_) => s.to_string(),
    }
}

/// How long ago `s` was, as kubectl prints ages; `<unknown>` when missing or malformed.
fn age(s: &str, now: Timestamp) -> String {
    let Ok(t) = s.parse::<Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = now.duration_since(t).as_secs().max(0);
    drover_gateway::table::human_duration(Duration::from_secs(secs.unsigned_abs()))
}

/// The whole description of one object.
pub fn render(resource: &Resource, obj: &Value, events: &[Value], now: Timestamp) -> String {
    let mut out = Out::default();
    out.kv(0, "Name", str_at(obj, "/metadata/name"));
    if resource.namespaced {
        out.kv(0, "Namespace", str_at(obj, "/metadata/namespace"));
    }
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => pod(&mut out, obj),
        ("apps", "Deployment") => deployment(&mut out, obj),
        ("", "Service") => service(&mut out, obj),
        ("", "ConfigMap") => config_map(&mut out, obj),
        ("", "Secret") => secret(&mut out, obj),
        ("", "Namespace") => namespace(&mut out, obj),
        _ => generic(&mut out, obj),
    }
    events_section(&mut out, events, now);
    out.finish()
}

fn labels_and_annotations(out: &mut Out, obj: &Value) {
    out.multiline(0, "Labels", pairs(obj.pointer("/metadata/labels"), "="));
    out.multiline(
        0,
        "Annotations",
        pairs(obj.pointer("/metadata/annotations"), ": "),
    );
}

fn controlled_by(out: &mut Out, obj: &Value) {
    if let Some(owner) = array_at(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
    {
        out.kv(
            0,
            "Controlled By",
            format!("{}/{}", str_at(owner, "/kind"), str_at(owner, "/name")),
        );
    }
}

fn pod(out: &mut Out, pod: &Value) {
    if let Some(priority) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        out.kv(0, "Priority", priority.to_string());
    }
    let service_account = str_at(pod, "/spec/serviceAccountName");
    if !service_account.is_empty() {
        out.kv(0, "Service Account", service_account);
    }
    let node = str_at(pod, "/spec/nodeName");
    let host_ip = str_at(pod, "/status/hostIP");
    out.kv(
        0,
        "Node",
        match (node, host_ip) {
            ("", _) => "<none>".to_string(),
            (n, "") => n.to_string(),
            (n, ip) => format!("{n}/{ip}"),
        },
    );
    let start = str_at(pod, "/status/startTime");
    if !start.is_empty() {
        out.kv(0, "Start Time", describe_time(start));
    }
    labels_and_annotations(out, pod);
    let phase = str_at(pod, "/status/phase");
    // A pod no one has reported on yet is Pending, as the API server defaults it and as
    // the table prints it.
    let status = if str_at(pod, "/metadata/deletionTimestamp").is_empty() {
        if phase.is_empty() { "Pending" } else { phase }.to_string()
    } else {
        "Terminating".to_string()
    };
    out.kv(0, "Status", status);
    let reason = str_at(pod, "/status/reason");
    if !reason.is_empty() {
        out.kv(0, "Reason", reason);
    }
    out.kv(0, "IP", str_at(pod, "/status/podIP"));
    let ips: Vec<String> = array_at(pod, "/status/podIPs")
        .iter()
        .map(|ip| format!("IP:  {}", str_at(ip, "/ip")))
        .collect();
    out.multiline(0, "IPs", ips);
    controlled_by(out, pod);
    let statuses = array_at(pod, "/status/containerStatuses");
    let init = array_at(pod, "/spec/initContainers");
    if !init.is_empty() {
        out.title(0, "Init Containers");
        let init_statuses = array_at(pod, "/status/initContainerStatuses");
        for c in init {
            container(out, 1, c, init_statuses);
        }
    }
    out.title(0, "Containers");
    for c in array_at(pod, "/spec/containers") {
        container(out, 1, c, statuses);
    }
    let conditions = array_at(pod, "/status/conditions");
    if !conditions.is_empty() {
        out.title(0, "Conditions");
        out.raw(1, vec!["Type".into(), "Status".into()]);
        for c in conditions {
            out.raw(
                1,
                vec![str_at(c, "/type").into(), str_at(c, "/status").into()],
            );
        }
    }
    let volumes = array_at(pod, "/spec/volumes");
    if volumes.is_empty() {
        out.kv(0, "Volumes", "<none>");
    } else {
        out.title(0, "Volumes");
        for v in volumes {
            out.title(1, str_at(v, "/name"));
            let source = v
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name"));
            if let Some((kind, detail)) = source {
                out.kv(2, "Type", kind.as_str());
                for (k, val) in detail.as_object().into_iter().flatten() {
                    out.kv(2, &title_case(k), scalar(val));
                }
            }
        }
    }
    let qos = match str_at(pod, "/status/qosClass") {
        "" => qos_class(pod),
        q => q,
    };
    out.kv(0, "QoS Class", qos);
    out.multiline(
        0,
        "Node-Selectors",
        pairs(pod.pointer("/spec/nodeSelector"), "="),
    );
    let tolerations: Vec<String> = array_at(pod, "/spec/tolerations")
        .iter()
        .map(|t| {
            let key = str_at(t, "/key");
            let value = str_at(t, "/value");
            let effect = str_at(t, "/effect");
            let mut s = key.to_string();
            if !value.is_empty() {
                s.push_str(&format!("={value}"));
            }
            if !effect.is_empty() {
                s.push_str(&format!(":{effect}"));
            }
            if s.is_empty() {
                s = str_at(t, "/operator").to_string();
            }
            s
        })
        .collect();
    out.multiline(0, "Tolerations", tolerations);
}

/// The QoS class the kubelet would give a pod whose status does not say yet: BestEffort
/// without any requests or limits, Guaranteed when every container limits CPU and memory
/// and requests what it limits, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers = array_at(pod, "/spec/containers");
    let resources = |c: &Value, which: &str| {
        c.pointer(&format!("/resources/{which}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if containers
        .iter()
        .all(|c| resources(c, "requests").is_empty() && resources(c, "limits").is_empty())
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = resources(c, "limits");
        let requests = resources(c, "requests");
        ["cpu", "memory"].iter().all(|r| {
            limits.contains_key(*r) && requests.get(*r).is_none_or(|v| Some(v) == limits.get(*r))
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn container(out: &mut Out, level: usize, c: &Value, statuses: &[Value]) {
    let name = str_at(c, "/name");
    let status = statuses.iter().find(|s| str_at(s, "/name") == name);
    out.title(level, name);
    let level = level + 1;
    if let Some(s) = status {
        out.kv(level, "Container ID", str_at(s, "/containerID"));
    }
    out.kv(level, "Image", str_at(c, "/image"));
    if let Some(s) = status {
        out.kv(level, "Image ID", str_at(s, "/imageID"));
    }
    let ports: Vec<String> = array_at(c, "/ports")
        .iter()
        .map(|p| {
            let proto = match str_at(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            format!("{}/{proto}", int_at(p, "/containerPort"))
        })
        .collect();
    out.kv(
        level,
        if ports.len() > 1 { "Ports" } else { "Port" },
        if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(", ")
        },
    );
    for (key, field) in [("Command", "/command"), ("Args", "/args")] {
        let items = array_at(c, field);
        if !items.is_empty() {
            out.title(level, key);
            for item in items {
                out.raw(level + 1, vec![scalar(item)]);
            }
        }
    }
    if let Some(s) = status {
        let state = s.get("state").and_then(Value::as_object);
        match state.and_then(|m| m.iter().next()) {
            Some((which, detail)) => {
                out.kv(level, "State", title_case(which));
                for (k, v) in detail.as_object().into_iter().flatten() {
                    let text = if k.ends_with("At") {
                        describe_time(&scalar(v))
                    } else {
                        scalar(v)
                    };
                    out.kv(level + 1, &title_case(k), text);
                }
            }
            None => out.kv(level, "State", "Waiting"),
        }
        out.kv(
            level,
            "Ready",
            if s.get("ready").and_then(Value::as_bool) == Some(true) {
                "True"
            } else {
                "False"
            },
        );
        out.kv(
            level,
            "Restart Count",
            int_at(s, "/restartCount").to_string(),
        );
    }
    for (key, field) in [
        ("Limits", "/resources/limits"),
        ("Requests", "/resources/requests"),
    ] {
        let items = pairs(c.pointer(field), ":  ");
        if !items.is_empty() {
            out.title(level, key);
            for item in items {
                out.raw(level + 1, vec![item]);
            }
        }
    }
    let env: Vec<String> = array_at(c, "/env")
        .iter()
        .map(|e| {
            let value = match e.get("valueFrom") {
                Some(from) => format!("<set from {}>", scalar(from)),
                None => str_at(e, "/value").to_string(),
            };
            format!("{}:  {value}", str_at(e, "/name"))
        })
        .collect();
    out.multiline(level, "Environment", env);
    let mounts: Vec<String> = array_at(c, "/volumeMounts")
        .iter()
        .map(|m| {
            let ro = if m.get("readOnly").and_then(Value::as_bool) == Some(true) {
                "ro"
            } else {
                "rw"
            };
            format!(
                "{} from {} ({ro})",
                str_at(m, "/mountPath"),
                str_at(m, "/name")
            )
        })
        .collect();
    out.multiline(level, "Mounts", mounts);
}

fn deployment(out: &mut Out, d: &Value) {
    out.kv(
        0,
        "CreationTimestamp",
        describe_time(str_at(d, "/metadata/creationTimestamp")),
    );
    labels_and_annotations(out, d);
    out.kv(0, "Selector", selector_text(d.pointer("/spec/selector")));
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    out.kv(
        0,
        "Replicas",
        format!(
            "{desired} desired | {} updated | {} total | {} available | {} unavailable",
            int_at(d, "/status/updatedReplicas"),
            int_at(d, "/status/replicas"),
            int_at(d, "/status/availableReplicas"),
            int_at(d, "/status/unavailableReplicas"),
        ),
    );
    let strategy = match str_at(d, "/spec/strategy/type") {
        "" => "RollingUpdate",
        s => s,
    };
    out.kv(0, "StrategyType", strategy);
    out.kv(
        0,
        "MinReadySeconds",
        int_at(d, "/spec/minReadySeconds").to_string(),
    );
    if strategy == "RollingUpdate" {
        let ru = |field: &str| match d.pointer(&format!("/spec/strategy/rollingUpdate/{field}")) {
            Some(v) => scalar(v),
            None => "25%".into(),
        };
        out.kv(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                ru("maxUnavailable"),
                ru("maxSurge")
            ),
        );
    }
    out.title(0, "Pod Template");
    out.multiline(
        1,
        "Labels",
        pairs(d.pointer("/spec/template/metadata/labels"), "="),
    );
    out.title(1, "Containers");
    for c in array_at(d, "/spec/template/spec/containers") {
        container(out, 2, c, &[]);
    }
    conditions_table(out, d);
}

fn conditions_table(out: &mut Out, obj: &Value) {
    let conditions = array_at(obj, "/status/conditions");
    if conditions.is_empty() {
        return;
    }
    out.title(0, "Conditions");
    out.raw(1, vec!["Type".into(), "Status".into(), "Reason".into()]);
    out.raw(1, vec!["----".into(), "------".into(), "------".into()]);
    for c in conditions {
        out.raw(
            1,
            vec![
                str_at(c, "/type").into(),
                str_at(c, "/status").into(),
                str_at(c, "/reason").into(),
            ],
        );
    }
}

/// A LabelSelector as kubectl prints it: `app=web,tier in (a,b)`.
fn selector_text(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts = pairs(sel.get("matchLabels"), "=");
    for expr in array_at(sel, "/matchExpressions") {
        let key = str_at(expr, "/key");
        let values: Vec<String> = array_at(expr, "/values").iter().map(scalar).collect();
        parts.push(match str_at(expr, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn service(out: &mut Out, svc: &Value) {
    labels_and_annotations(out, svc);
    let selector = pairs(svc.pointer("/spec/selector"), "=");
    out.kv(
        0,
        "Selector",
        if selector.is_empty() {
            "<none>".to_string()
        } else {
            selector.join(",")
        },
    );
    let ty = match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    };
    out.kv(0, "Type", ty);
    out.kv(0, "IP", or_none(str_at(svc, "/spec/clusterIP")));
    for p in array_at(svc, "/spec/ports") {
        let name = match str_at(p, "/name") {
            "" => "<unset>",
            n => n,
        };
        let proto = match str_at(p, "/protocol") {
            "" => "TCP",
            other => other,
        };
        out.kv(0, "Port", format!("{name}  {}/{proto}", int_at(p, "/port")));
        let target = p.get("targetPort").map(scalar).unwrap_or_default();
        if !target.is_empty() {
            out.kv(0, "TargetPort", format!("{target}/{proto}"));
        }
        if let Some(node_port) = p.get("nodePort").and_then(Value::as_i64) {
            out.kv(0, "NodePort", format!("{name}  {node_port}/{proto}"));
        }
    }
    let affinity = match str_at(svc, "/spec/sessionAffinity") {
        "" => "None",
        a => a,
    };
    out.kv(0, "Session Affinity", affinity);
}

fn config_map(out: &mut Out, cm: &Value) {
    labels_and_annotations(out, cm);
    out.raw(0, vec![String::new()]);
    out.raw(0, vec!["Data".into()]);
    out.raw(0, vec!["====".into()]);
    let mut data: Vec<(&String, &Value)> = cm
        .get("data")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    data.sort_by_key(|(k, _)| k.as_str());
    for (key, value) in data {
        out.raw(0, vec![format!("{key}:")]);
        out.raw(0, vec!["----".into()]);
        for line in scalar(value).lines() {
            out.raw(0, vec![line.to_string()]);
        }
        out.raw(0, vec![String::new()]);
    }
    out.raw(0, vec![String::new()]);
    out.raw(0, vec!["BinaryData".into()]);
    out.raw(0, vec!["====".into()]);
    for (key, value) in cm
        .get("binaryData")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let bytes = scalar(value).len() * 3 / 4;
        out.raw(0, vec![format!("{key}: {bytes} bytes")]);
    }
    out.raw(0, vec![String::new()]);
}

fn secret(out: &mut Out, secret: &Value) {
    labels_and_annotations(out, secret);
    out.raw(0, vec![String::new()]);
    out.kv(0, "Type", str_at(secret, "/type"));
    out.raw(0, vec![String::new()]);
    out.raw(0, vec!["Data".into()]);
    out.raw(0, vec!["====".into()]);
    // Values stay hidden, as in kubectl: only their decoded sizes.
    for (key, value) in secret
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let encoded = scalar(value);
        let padding = encoded.chars().rev().take_while(|c| *c == '=').count();
        let bytes = (encoded.len() * 3 / 4).saturating_sub(padding);
        out.kv(0, key, format!("{bytes} bytes"));
    }
}

fn namespace(out: &mut Out, ns: &Value) {
    labels_and_annotations(out, ns);
    out.kv(0, "Status", or_none(str_at(ns, "/status/phase")));
    out.raw(0, vec![String::new()]);
    out.raw(0, vec!["No resource quota.".into()]);
    out.raw(0, vec![String::new()]);
    out.raw(0, vec!["No LimitRange resource.".into()]);
}

/// Kinds without their own describer: metadata, then `spec` and `status` field by field
/// (as kubectl does for custom resources).
fn generic(out: &mut Out, obj: &Value) {
    labels_and_annotations(out, obj);
    out.kv(0, "API Version", str_at(obj, "/apiVersion"));
    out.kv(0, "Kind", str_at(obj, "/kind"));
    let created = str_at(obj, "/metadata/creationTimestamp");
    if !created.is_empty() {
        out.kv(0, "Creation Timestamp", describe_time(created));
    }
    let Some(map) = obj.as_object() else {
        return;
    };
    for (key, value) in map {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        fields(out, 0, &title_case(key), value);
    }
}

/// One field of the generic describer, nested objects and lists indented below it.
fn fields(out: &mut Out, level: usize, key: &str, value: &Value) {
    match value {
        Value::Object(map) if map.is_empty() => out.kv(level, key, "<none>"),
        Value::Object(map) => {
            out.title(level, key);
            for (k, v) in map {
                fields(out, level + 1, &title_case(k), v);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            out.multiline(level, key, items.iter().map(scalar).collect());
        }
        Value::Array(items) => {
            out.title(level, key);
            for item in items {
                match item.as_object() {
                    Some(map) => {
                        for (k, v) in map {
                            fields(out, level + 1, &title_case(k), v);
                        }
                    }
                    None => out.raw(level + 1, vec![scalar(item)]),
                }
            }
        }
        other => out.kv(level, key, scalar(other)),
    }
}

/// `containerPort` → `Container Port`, as kubectl's generic describer spells field names.
fn title_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    let mut prev_lower = false;
    for (idx, ch) in field.chars().enumerate() {
        if idx == 0 {
            out.extend(ch.to_uppercase());
        } else if ch.is_uppercase() && prev_lower {
            out.push(' ');
            out.push(ch);
        } else {
            out.push(ch);
        }
        prev_lower = ch.is_lowercase() || ch.is_ascii_digit();
    }
    out
}

fn events_section(out: &mut Out, events: &[Value], now: Timestamp) {
    if events.is_empty() {
        out.kv(0, "Events", "<none>");
        return;
    }
    out.title(0, "Events");
    out.raw(
        1,
        ["Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
    );
    out.raw(
        1,
        ["----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    );
    for e in events {
        let last = age(last_seen(e), now);
        let count = e
            .pointer("/series/count")
            .or_else(|| e.get("count"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let first = match str_at(e, "/firstTimestamp") {
            "" => str_at(e, "/eventTime"),
            f => f,
        };
        let age_text = if count > 1 && !first.is_empty() {
            format!("{last} (x{count} over {})", age(first, now))
        } else {
            last
        };
        let from = [
            "/source/component",
            "/reportingComponent",
            "/reportingController",
        ]
        .iter()
        .map(|p| str_at(e, p))
        .find(|s| !s.is_empty())
        .unwrap_or("");
        out.raw(
            1,
            vec![
                str_at(e, "/type").to_string(),
                str_at(e, "/reason").to_string(),
                age_text,
                from.to_string(),
                str_at(e, "/message").trim().to_string(),
            ],
        );
    }
}

#[cfg(test)]
mod tests;
