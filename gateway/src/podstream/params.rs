//! The pure part of `pods/{name}/log` and `pods/{name}/exec`: query parameters as kubectl
//! sends them, the container a request means, and whether the pod can serve it. Errors
//! carry the apiserver's messages, so clients print what they print against Kubernetes.

use serde_json::Value;

use crate::status::ApiError;

/// Annotation naming the container `kubectl logs`/`exec` use by default.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The query string as ordered pairs (exec repeats `command`).
pub fn pairs(query: &str) -> Vec<(String, String)> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn flag(pairs: &[(String, String)], key: &str) -> Result<bool, ApiError> {
    match last(pairs, key) {
        None | Some("") => Ok(false),
        Some("true" | "1" | "True" | "TRUE") => Ok(true),
        Some("false" | "0" | "False" | "FALSE") => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid value {v:?} for {key}: want true or false"
        ))),
    }
}

fn int(pairs: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    last(pairs, key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for {key}: want an integer"))
            })
        })
        .transpose()
}

/// `pods/{name}/log` options (`container` is resolved separately).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogParams {
    /// `container`, if given.
    pub container: Option<String>,
    /// `follow`.
    pub follow: bool,
    /// `previous`.
    pub previous: bool,
    /// `tailLines`.
    pub tail_lines: Option<i64>,
    /// `sinceSeconds`.
    pub since_seconds: Option<i64>,
    /// `sinceTime`.
    pub since_time: Option<String>,
    /// `timestamps`.
    pub timestamps: bool,
    /// `limitBytes`.
    pub limit_bytes: Option<i64>,
}

impl LogParams {
    /// Reads and checks the query (the apiserver's `PodLogOptions` validation).
    pub fn parse(pairs: &[(String, String)]) -> Result<LogParams, ApiError> {
        let p = LogParams {
            container: last(pairs, "container")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            follow: flag(pairs, "follow")?,
            previous: flag(pairs, "previous")?,
            tail_lines: int(pairs, "tailLines")?,
            since_seconds: int(pairs, "sinceSeconds")?,
            since_time: last(pairs, "sinceTime")
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            timestamps: flag(pairs, "timestamps")?,
            limit_bytes: int(pairs, "limitBytes")?,
        };
        if p.tail_lines.is_some_and(|n| n < 0) {
            return Err(ApiError::bad_request(
                "tailLines: must be greater than or equal to 0",
            ));
        }
        if p.limit_bytes.is_some_and(|n| n < 1) {
            return Err(ApiError::bad_request("limitBytes: must be greater than 0"));
        }
        if p.since_seconds.is_some_and(|n| n < 1) {
            return Err(ApiError::bad_request(
                "sinceSeconds: must be greater than 0",
            ));
        }
        if p.since_seconds.is_some() && p.since_time.is_some() {
            return Err(ApiError::bad_request(
                "at most one of sinceTime or sinceSeconds may be specified",
            ));
        }
        if let Some(t) = &p.since_time
            && t.parse::<jiff::Timestamp>().is_err()
        {
            return Err(ApiError::bad_request(format!(
                "sinceTime: {t:?} is not an RFC 3339 time"
            )));
        }
        Ok(p)
    }
}

/// `pods/{name}/exec` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecParams {
    /// `container`, if given.
    pub container: Option<String>,
    /// Every `command` value, in order.
    pub command: Vec<String>,
    /// `stdin`.
    pub stdin: bool,
    /// `stdout`.
    pub stdout: bool,
    /// `stderr`.
    pub stderr: bool,
    /// `tty`.
    pub tty: bool,
}

impl ExecParams {
    /// Reads and checks the query.
    pub fn parse(pairs: &[(String, String)]) -> Result<ExecParams, ApiError> {
        let p = ExecParams {
            container: last(pairs, "container")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            stdin: flag(pairs, "stdin")?,
            stdout: flag(pairs, "stdout")?,
            stderr: flag(pairs, "stderr")?,
            tty: flag(pairs, "tty")?,
        };
        if p.command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        if !(p.stdin || p.stdout || p.stderr) {
            return Err(ApiError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        if p.tty && p.stderr {
            // kubectl never asks for this; the kubelet refuses it the same way.
            return Err(ApiError::bad_request(
                "stderr cannot be used with a tty: they are the same stream",
            ));
        }
        Ok(p)
    }
}

/// Names of the pod's regular containers, in spec order.
fn container_names(pod: &Value) -> Vec<&str> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a request means: the one named (it must exist in the spec), else the
/// `kubectl.kubernetes.io/default-container` annotation's, else the only one.
pub fn resolve_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names = container_names(pod);
    let init: Vec<&str> = ["initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    if let Some(c) = requested {
        if names.contains(&c) || init.contains(&c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(c) = pod["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION].as_str()
        && names.contains(&c)
    {
        return Ok(c.to_string());
    }
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(ApiError::bad_request(format!(
            "pod {name} has no containers"
        ))),
        many => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            many.join(" ")
        ))),
    }
}

/// The node that runs the pod, or the apiserver's 400 for a pod that has none.
pub fn node_of(pod: &Value) -> Result<String, ApiError> {
    match pod["spec"]["nodeName"].as_str() {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            pod["metadata"]["name"].as_str().unwrap_or("")
        ))),
    }
}

/// Exec needs a pod that has not finished (the apiserver's check).
pub fn check_exec_phase(pod: &Value) -> Result<(), ApiError> {
    match pod["status"]["phase"].as_str() {
        Some("Succeeded" | "Failed") => Err(ApiError::bad_request(
            "cannot exec into a container in a completed pod",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Vec<(String, String)> {
        pairs(s)
    }

    #[test]
    fn log_params() {
        assert_eq!(
            LogParams::parse(&q(
                "container=c&follow=true&tailLines=5&timestamps=true&limitBytes=10&previous=false"
            ))
            .unwrap(),
            LogParams {
                container: Some("c".into()),
                follow: true,
                tail_lines: Some(5),
                timestamps: true,
                limit_bytes: Some(10),
                ..LogParams::default()
            }
        );
        assert_eq!(
            LogParams::parse(&q("sinceTime=2026-11-23T08%3A00%3A00Z"))
                .unwrap()
                .since_time
                .as_deref(),
            Some("2026-11-23T08:00:00Z")
        );
        for bad in [
            "tailLines=-1",
            "tailLines=x",
            "limitBytes=0",
            "sinceSeconds=0",
            "follow=maybe",
            "sinceTime=yesterday",
            "sinceSeconds=5&sinceTime=2026-11-23T08%3A00%3A00Z",
        ] {
            let e = LogParams::parse(&q(bad)).unwrap_err();
            assert_eq!(e.code, 400, "{bad}");
        }
    }

    #[test]
    fn exec_params() {
        let p = ExecParams::parse(&q(
            "command=sh&command=-c&command=echo+a%26b&container=c&stdin=true&stdout=true&tty=true",
        ))
        .unwrap();
        assert_eq!(p.command, ["sh", "-c", "echo a&b"]);
        assert!(p.stdin && p.stdout && p.tty && !p.stderr);
        assert_eq!(p.container.as_deref(), Some("c"));
        for bad in [
            "stdout=true",
            "command=ls",
            "command=ls&stdout=true&stderr=true&tty=true",
        ] {
            assert_eq!(ExecParams::parse(&q(bad)).unwrap_err().code, 400, "{bad}");
        }
    }

    #[test]
    fn containers() {
        let pod = |containers: &[&str], annotation: Option<&str>| {
            json!({
                "metadata": {"name": "p", "annotations": {DEFAULT_CONTAINER_ANNOTATION: annotation}},
                "spec": {"containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
                         "initContainers": [{"name": "init"}]},
            })
        };
        let check = |pod: &Value, requested, want: Result<&str, &str>| {
            let got = resolve_container(pod, requested);
            match want {
                Ok(name) => assert_eq!(got.unwrap(), name),
                Err(msg) => assert_eq!(got.unwrap_err().message, msg),
            }
        };
        check(&pod(&["a"], None), None, Ok("a"));
        check(&pod(&["a", "b"], None), Some("b"), Ok("b"));
        check(&pod(&["a", "b"], None), Some("init"), Ok("init"));
        check(&pod(&["a", "b"], Some("b")), None, Ok("b"));
        check(
            &pod(&["a", "b"], None),
            None,
            Err("a container name must be specified for pod p, choose one of: [a b]"),
        );
        check(
            &pod(&["a"], None),
            Some("x"),
            Err("container x is not valid for pod p"),
        );
    }

    #[test]
    fn nodes_and_phases() {
        assert_eq!(node_of(&json!({"spec": {"nodeName": "n1"}})).unwrap(), "n1");
        assert_eq!(
            node_of(&json!({"metadata": {"name": "p"}, "spec": {}}))
                .unwrap_err()
                .message,
            "pod p does not have a host assigned"
        );
        assert!(check_exec_phase(&json!({"status": {"phase": "Running"}})).is_ok());
        assert!(check_exec_phase(&json!({"status": {"phase": "Succeeded"}})).is_err());
    }
}
