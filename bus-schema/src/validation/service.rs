//! Service spec rules (Kubernetes' `ValidateService`), minus what needs cluster state: the
//! store checks node-port and cluster-IP allocation.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use super::meta::validate_labels;
use super::names::is_valid_port_num;
use super::pod::validate_protocol;
use super::value::{Ctx, IntOrString, Obj, get};
use super::{FieldError, FieldPath, is_dns1123_label, is_dns1123_subdomain, is_valid_port_name};

/// Service types, sorted as Kubernetes lists them in errors.
const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
/// Default `--service-node-port-range`.
const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;
/// Longest ClientIP affinity Kubernetes allows (one day).
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;
const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// Spec rule for `Service` objects.
pub(super) fn validate_service(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    let type_path = path.child("type");
    let service_type = match cx.str_at(get(spec, "type"), &type_path).unwrap_or("") {
        "" => "ClusterIP",
        t if SERVICE_TYPES.contains(&t) => t,
        other => {
            cx.push(FieldError::not_supported(&type_path, other, SERVICE_TYPES));
            other
        }
    };

    let cluster_ip_path = path.child("clusterIP");
    let cluster_ip = cx
        .str_at(get(spec, "clusterIP"), &cluster_ip_path)
        .unwrap_or("");
    let headless = cluster_ip == "None";
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<IpAddr>().is_err() {
        cx.push(FieldError::invalid(
            &cluster_ip_path,
            cluster_ip,
            "must be empty, 'None', or a valid IP address",
        ));
    }
    match service_type {
        "LoadBalancer" | "NodePort" if headless => cx.push(FieldError::invalid(
            &cluster_ip_path,
            cluster_ip,
            format!("may not be set to 'None' for {service_type} services"),
        )),
        "ExternalName" => {
            if !cluster_ip.is_empty() {
                cx.push(FieldError::forbidden(
                    &cluster_ip_path,
                    "may not be set for ExternalName services",
                ));
            }
            let external_name_path = path.child("externalName");
            if let Some(external_name) =
                cx.required_str_at(get(spec, "externalName"), &external_name_path)
            {
                // A trailing dot marks the CNAME as fully qualified.
                let cname = external_name.strip_suffix('.').unwrap_or(external_name);
                for msg in is_dns1123_subdomain(cname) {
                    cx.push(FieldError::invalid(&external_name_path, cname, msg));
                }
            }
        }
        _ => {}
    }

    let ports_path = path.child("ports");
    let ports = cx.obj_items_at(get(spec, "ports"), &ports_path);
    let no_ports = match get(spec, "ports") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    if no_ports && !headless && service_type != "ExternalName" {
        cx.push(FieldError::required(&ports_path));
    }
    let require_names = ports.len() > 1;
    let mut port_names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (port_path, port) in &ports {
        validate_service_port(cx, port, port_path, require_names, &mut port_names);

        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP");
        let node_port_path = port_path.child("nodePort");
        let node_port = cx
            .int_at(port.get("nodePort"), &node_port_path)
            .unwrap_or(0);
        if node_port != 0 {
            match service_type {
                "NodePort" | "LoadBalancer" => {
                    if !NODE_PORT_RANGE.contains(&node_port) {
                        cx.push(FieldError::invalid(
                            &node_port_path,
                            node_port.to_string(),
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                NODE_PORT_RANGE.start(),
                                NODE_PORT_RANGE.end()
                            ),
                        ));
                    }
                    if !node_ports.insert((node_port, protocol)) {
                        cx.push(FieldError::duplicate(
                            &node_port_path,
                            node_port.to_string(),
                        ));
                    }
                }
                _ => cx.push(FieldError::forbidden(
                    &node_port_path,
                    format!("may not be used when `type` is '{service_type}'"),
                )),
            }
        }

        if let Some(number) = port.get("port").and_then(Value::as_i64)
            && !port_keys.insert((number, protocol))
        {
            let key = serde_json::json!({ "port": number, "protocol": protocol });
            cx.push(FieldError::duplicate(port_path, key.to_string()));
        }
    }

    validate_labels(cx, get(spec, "selector"), &path.child("selector"));
    validate_session_affinity(cx, spec, path);

    let external_ips_path = path.child("externalIPs");
    for (idx, ip) in cx
        .str_list_at(get(spec, "externalIPs"), &external_ips_path)
        .into_iter()
        .enumerate()
    {
        if ip.parse::<IpAddr>().is_err() {
            cx.push(FieldError::invalid(
                external_ips_path.index(idx),
                ip,
                INVALID_IP,
            ));
        }
    }

    let external_policy_path = path.child("externalTrafficPolicy");
    if let Some(policy) = cx.str_at(get(spec, "externalTrafficPolicy"), &external_policy_path)
        && !policy.is_empty()
    {
        if !matches!(service_type, "NodePort" | "LoadBalancer") {
            cx.push(FieldError::invalid(
                &external_policy_path,
                policy,
                "may only be set for externally-accessible services",
            ));
        } else if !TRAFFIC_POLICIES.contains(&policy) {
            cx.push(FieldError::not_supported(
                &external_policy_path,
                policy,
                TRAFFIC_POLICIES,
            ));
        }
    }
    let internal_policy_path = path.child("internalTrafficPolicy");
    if let Some(policy) = cx.str_at(get(spec, "internalTrafficPolicy"), &internal_policy_path)
        && !policy.is_empty()
        && !TRAFFIC_POLICIES.contains(&policy)
    {
        cx.push(FieldError::not_supported(
            &internal_policy_path,
            policy,
            TRAFFIC_POLICIES,
        ));
    }
}

fn validate_service_port<'a>(
    cx: &mut Ctx,
    port: &'a Obj,
    path: &FieldPath,
    require_name: bool,
    names: &mut BTreeSet<&'a str>,
) {
    let name_path = path.child("name");
    let name = cx.str_at(port.get("name"), &name_path).unwrap_or("");
    if name.is_empty() {
        if require_name {
            cx.push(FieldError::required(&name_path));
        }
    } else {
        for msg in is_dns1123_label(name) {
            cx.push(FieldError::invalid(&name_path, name, msg));
        }
        if !names.insert(name) {
            cx.push(FieldError::duplicate(&name_path, name));
        }
    }

    let port_path = path.child("port");
    let raw_port = port.get("port");
    match cx.int_at(raw_port, &port_path) {
        Some(number) => {
            for msg in is_valid_port_num(number) {
                cx.push(FieldError::invalid(&port_path, number.to_string(), msg));
            }
        }
        None if raw_port.is_none_or(Value::is_null) => cx.push(FieldError::required(&port_path)),
        None => {}
    }

    validate_protocol(cx, port.get("protocol"), &path.child("protocol"));

    // 0 and "" mean "same as port" (Kubernetes defaults them).
    let target_path = path.child("targetPort");
    match cx.int_or_string_at(port.get("targetPort"), &target_path) {
        Some(IntOrString::Int(0)) | Some(IntOrString::Str("")) | None => {}
        Some(IntOrString::Int(number)) => {
            for msg in is_valid_port_num(number) {
                cx.push(FieldError::invalid(&target_path, number.to_string(), msg));
            }
        }
        Some(IntOrString::Str(name)) => {
            for msg in is_valid_port_name(name) {
                cx.push(FieldError::invalid(&target_path, name, msg));
            }
        }
    }
}

fn validate_session_affinity(cx: &mut Ctx, spec: Option<&Obj>, path: &FieldPath) {
    let affinity_path = path.child("sessionAffinity");
    let affinity = cx
        .str_at(get(spec, "sessionAffinity"), &affinity_path)
        .unwrap_or("");
    if !affinity.is_empty() && !SESSION_AFFINITIES.contains(&affinity) {
        cx.push(FieldError::not_supported(
            &affinity_path,
            affinity,
            SESSION_AFFINITIES,
        ));
    }
    let config_path = path.child("sessionAffinityConfig");
    let Some(config) = cx.obj_at(get(spec, "sessionAffinityConfig"), &config_path) else {
        return;
    };
    if affinity != "ClientIP" {
        cx.push(FieldError::forbidden(
            &config_path,
            "must not be set when session affinity is None",
        ));
        return;
    }
    let client_ip_path = config_path.child("clientIP");
    let client_ip = cx.obj_at(config.get("clientIP"), &client_ip_path);
    let timeout_path = client_ip_path.child("timeoutSeconds");
    if let Some(timeout) = cx.int_at(get(client_ip, "timeoutSeconds"), &timeout_path)
        && !(1..=MAX_CLIENT_IP_AFFINITY_SECONDS).contains(&timeout)
    {
        cx.push(FieldError::invalid(
            &timeout_path,
            timeout.to_string(),
            format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
        ));
    }
}
