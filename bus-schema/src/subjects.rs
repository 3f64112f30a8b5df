//! Every NATS subject, KV bucket, stream and key that drover uses is spelled here and
//! nowhere else (Architecture Invariant). Object names become subject tokens through
//! [`token`], a reversible escape, because names may contain `.` (a subject separator)
//! and characters that KV keys do not allow.
//!
//! Subjects for subscribers (documented in README):
//! - `drover.objects.<namespace>.<plural>.<name>`: every change to a stored object,
//!   republished by JetStream from the kind's KV bucket (headers + body, MessagePack).
//! - `drover.events.<namespace>.<kind>.<name>`: cluster events, kept in the
//!   [`EVENTS_STREAM`] stream with bounded age.
//!
//! Cluster-scoped objects use [`CLUSTER_SCOPE`] (`_`) in the namespace position.

use crate::kinds::KindInfo;

/// Namespace token for cluster-scoped objects in keys and subjects.
pub const CLUSTER_SCOPE: &str = "_";

/// Root of every subject drover publishes on.
pub const ROOT: &str = "drover";

/// Wildcard matching every drover subject.
pub const ALL: &str = "drover.>";

/// JetStream stream holding cluster events (`drover.events.>`).
pub const EVENTS_STREAM: &str = "DROVER_EVENTS";

/// Wildcard for every event.
pub const EVENTS_ALL: &str = "drover.events.>";

/// Wildcard for every object change notification.
pub const OBJECTS_ALL: &str = "drover.objects.>";

/// Escapes an object name (or namespace) into one subject token / KV key segment.
///
/// `[A-Za-z0-9-]` pass through, `.` becomes `_`, every other byte becomes `=XX`
/// (upper-case hex). DNS names therefore read naturally (`node-1_example_com`) and the
/// mapping is reversible with [`untoken`].
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => out.push(b as char),
            b'.' => out.push('_'),
            _ => {
                out.push('=');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
    if out.is_empty() {
        // An empty token would produce an invalid subject (`a..b`); `=` alone cannot be
        // produced by any non-empty name.
        out.push('=');
    }
    out
}

/// Reverses [`token`]. Returns `None` for strings [`token`] cannot produce.
pub fn untoken(tok: &str) -> Option<String> {
    if tok == "=" {
        return Some(String::new());
    }
    let bytes = tok.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b'.'),
            b'=' => {
                let hex = tok.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b @ (b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-') => out.push(b),
            _ => return None,
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Namespace token: the escaped namespace, or [`CLUSTER_SCOPE`].
fn ns_token(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => token(ns),
        _ => CLUSTER_SCOPE.to_string(),
    }
}

/// KV bucket for a kind: `drover-<plural>` for the core group,
/// `drover-<plural>-<group with . as _>` otherwise.
pub fn kv_bucket(kind: &KindInfo) -> String {
    if kind.group.is_empty() {
        format!("drover-{}", kind.plural)
    } else {
        format!("drover-{}-{}", kind.plural, kind.group.replace('.', "_"))
    }
}

/// KV key of one object: `<namespace token>.<name token>`.
pub fn kv_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}.{}", ns_token(namespace), token(name))
}

/// Splits a KV key back into (namespace, name); namespace is `None` for cluster scope.
pub fn parse_kv_key(key: &str) -> Option<(Option<String>, String)> {
    let (ns, name) = key.split_once('.')?;
    let name = untoken(name)?;
    if ns == CLUSTER_SCOPE {
        Some((None, name))
    } else {
        Some((Some(untoken(ns)?), name))
    }
}

/// Subject under which JetStream stores a KV key of `bucket`.
pub fn kv_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// Prefix (with trailing dot) of every subject in a KV bucket's stream.
pub fn kv_subject_prefix(bucket: &str) -> String {
    format!("$KV.{bucket}.")
}

/// Filter subject for a KV bucket's stream: all keys, or those of one namespace.
pub fn kv_filter(bucket: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("$KV.{bucket}.{}.>", ns_token(Some(ns))),
        None => format!("$KV.{bucket}.>"),
    }
}

/// Stream name JetStream uses for a KV bucket.
pub fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// Republish destination for a kind's bucket: `drover.objects.<plural>`-rooted, with the
/// key's two tokens (`<ns>.<name>`) appended, giving
/// `drover.objects.<namespace>.<plural>.<name>` via a subject mapping.
///
/// Returns `(source, destination)` in JetStream republish syntax.
pub fn kv_republish(kind: &KindInfo, bucket: &str) -> (String, String) {
    (
        format!("$KV.{bucket}.*.*"),
        format!(
            "{ROOT}.objects.{{{{wildcard(1)}}}}.{}.{{{{wildcard(2)}}}}",
            plural_token(kind)
        ),
    )
}

fn plural_token(kind: &KindInfo) -> String {
    if kind.group.is_empty() {
        kind.plural.to_string()
    } else {
        token(&kind.group_resource())
    }
}

/// Subject of a change notification for one object (what [`kv_republish`] produces).
pub fn object(kind: &KindInfo, namespace: Option<&str>, name: &str) -> String {
    format!(
        "{ROOT}.objects.{}.{}.{}",
        ns_token(namespace),
        plural_token(kind),
        token(name)
    )
}

/// Subject of an event about one object: `drover.events.<namespace>.<kind>.<name>`.
pub fn event(namespace: Option<&str>, kind: &str, name: &str) -> String {
    format!(
        "{ROOT}.events.{}.{}.{}",
        ns_token(namespace),
        token(kind),
        token(name)
    )
}

/// Subject a node agent serves requests on (logs, exec, introspection).
pub fn node_rpc(node: &str, verb: &str) -> String {
    format!("{ROOT}.node.{}.{}", token(node), token(verb))
}

/// Subject a node agent serves `kubectl logs` requests on
/// ([`crate::podstream::LogRequest`]).
pub fn node_logs(node: &str) -> String {
    node_rpc(node, "logs")
}

/// Subject a node agent serves `kubectl exec` requests on
/// ([`crate::podstream::ExecRequest`]).
pub fn node_exec(node: &str) -> String {
    node_rpc(node, "exec")
}

/// Subject the gateway sends one stream's [`crate::podstream::Control`] messages on
/// (acks, keepalives, stdin, resize, close); `session` is chosen by the gateway.
pub fn podstream_control(session: &str) -> String {
    format!("{ROOT}.podstream.{}.control", token(session))
}

/// Subject on which the pod index publishes changes of the pods bound to one node
/// (core NATS, sequenced; see [`crate::pod_index`]).
pub fn pod_index_events(node: &str) -> String {
    format!("{ROOT}.podindex.{}.events", token(node))
}

/// Subject on which the pod index answers list requests for one node's pods.
pub fn pod_index_list(node: &str) -> String {
    format!("{ROOT}.podindex.{}.list", token(node))
}

/// Wildcard the pod index serves list requests on (one subscription for every node).
pub const POD_INDEX_LIST_ALL: &str = "drover.podindex.*.list";

/// Broadcast by a (re)started pod index: every node agent re-lists its pods.
pub const POD_INDEX_RESYNC: &str = "drover.podindex.resync";

/// The node token of a [`pod_index_list`] subject.
pub fn parse_pod_index_list(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix("drover.podindex.")?;
    let tok = rest.strip_suffix(".list")?;
    if tok.contains('.') {
        return None;
    }
    untoken(tok)
}

/// Subject a node agent publishes its [`crate::metrics::UsageReport`] on (core NATS,
/// every few seconds; not stored).
pub fn metrics_usage(node: &str) -> String {
    format!("{ROOT}.metrics.{}.usage", token(node))
}

/// Wildcard that follows every node's usage reports.
pub const METRICS_USAGE_ALL: &str = "drover.metrics.*.usage";

/// Subject a node agent publishes its bus heartbeat on (core NATS, empty body, every
/// [`NODE_HEARTBEAT_INTERVAL_MS`]; not stored). The control plane recreates a down node's
/// StatefulSet pods only after the node's fence timeout without one, and the node stops
/// those pods itself once its own heartbeats have not reached the server for that long
/// (see `drover_node::fence`).
pub fn node_heartbeat(node: &str) -> String {
    format!("{ROOT}.nodes.{}.heartbeat", token(node))
}

/// Subject a node agent sends a request to right after each heartbeat, to get an answer
/// from the server itself: nobody subscribes to it, so the server answers "no responders",
/// and that answer proves the server has processed the heartbeat published before it on
/// the same connection (a client-side flush only proves the bytes left the socket).
pub fn node_bus_probe(node: &str) -> String {
    format!("{ROOT}.nodes.{}.probe", token(node))
}

/// Wildcard that follows every node's bus heartbeat.
pub const NODE_HEARTBEAT_ALL: &str = "drover.nodes.*.heartbeat";

/// How often a node agent publishes its bus heartbeat, in milliseconds.
pub const NODE_HEARTBEAT_INTERVAL_MS: u64 = 500;

/// The node name in a [`node_heartbeat`] subject.
pub fn parse_node_heartbeat(subject: &str) -> Option<String> {
    let tok = subject
        .strip_prefix("drover.nodes.")?
        .strip_suffix(".heartbeat")?;
    if tok.contains('.') {
        return None;
    }
    untoken(tok)
}

/// Request subject the control plane answers with its membership view (JSON list of
/// members: name, address, state, metadata), for `drover members`.
pub const MEMBERS_VIEW: &str = "drover.members.view";

/// Subject for liveness announcements of drover processes (used by tests of the
/// envelope decoder and, later, by membership bootstrap).
pub fn hello(component: &str) -> String {
    format!("{ROOT}.hello.{}", token(component))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_heartbeat_subjects_round_trip() {
        for node in ["n1", "node.example.com", "a_b"] {
            assert_eq!(
                parse_node_heartbeat(&node_heartbeat(node)).as_deref(),
                Some(node)
            );
        }
        assert_eq!(parse_node_heartbeat("drover.nodes.a.b.heartbeat"), None);
        assert_eq!(parse_node_heartbeat("drover.metrics.a.usage"), None);
    }

    #[test]
    fn pod_index_subjects_round_trip() {
        for node in ["n1", "node.example.com", "a_b"] {
            assert_eq!(
                parse_pod_index_list(&pod_index_list(node)).as_deref(),
                Some(node)
            );
            assert!(pod_index_events(node).starts_with("drover.podindex."));
        }
        assert_eq!(parse_pod_index_list("drover.podindex.a.b.list"), None);
        assert_eq!(parse_pod_index_list("drover.other.a.list"), None);
    }

    #[test]
    fn token_round_trips() {
        for name in [
            "web-1",
            "node-1.example.com",
            "system:controller",
            "a_b",
            "",
            "Ünïcode",
            "x=y",
        ] {
            let t = token(name);
            assert!(
                !t.contains('.') && !t.contains(' ') && !t.contains('*') && !t.contains('>'),
                "{t}"
            );
            assert!(
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=".contains(c)),
                "{t}"
            );
            assert_eq!(untoken(&t).as_deref(), Some(name), "{name} -> {t}");
        }
        assert_eq!(token("node-1.example.com"), "node-1_example_com");
    }

    #[test]
    fn untoken_rejects_garbage() {
        for bad in ["a=", "a=Z", "a=ZZ", "a b", "a.b", "a*"] {
            assert_eq!(untoken(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_round_trip() {
        assert_eq!(kv_key(Some("default"), "web.1"), "default.web_1");
        assert_eq!(kv_key(None, "node-a"), "_.node-a");
        assert_eq!(
            parse_kv_key("default.web_1"),
            Some((Some("default".into()), "web.1".into()))
        );
        assert_eq!(parse_kv_key("_.node-a"), Some((None, "node-a".into())));
        assert_eq!(parse_kv_key("nodot"), None);
    }

    #[test]
    fn subjects_are_spelled_as_documented() {
        let pods = crate::kinds::by_group_kind("", "Pod").unwrap();
        let deploy = crate::kinds::by_group_kind("apps", "Deployment").unwrap();
        assert_eq!(
            object(pods, Some("default"), "web"),
            "drover.objects.default.pods.web"
        );
        assert_eq!(
            object(deploy, Some("default"), "web"),
            "drover.objects.default.deployments_apps.web"
        );
        assert_eq!(
            event(Some("default"), "Pod", "web"),
            "drover.events.default.Pod.web"
        );
        assert_eq!(kv_bucket(deploy), "drover-deployments-apps");
        assert_eq!(
            kv_filter("drover-pods", Some("kube-system")),
            "$KV.drover-pods.kube-system.>"
        );
    }
}
