//! `kubectl logs` and `kubectl exec`: `GET .../pods/{name}/log` (a chunked `text/plain`
//! stream) and `GET|POST .../pods/{name}/exec` (a WebSocket speaking
//! `v5.channel.k8s.io` or `v4.channel.k8s.io`). The gateway checks the pod and the
//! container against the store, then relays to the node agent that runs the pod over
//! NATS ([`node`], protocol in [`bus_schema::podstream`]); it never talks to containerd
//! (Architecture Invariant). SPDY, kubectl's fallback, is not served: an exec request
//! without a WebSocket upgrade gets a 400 saying so.

pub mod node;
pub mod params;

use actix_web::{HttpRequest, HttpResponse, web};
use bus_schema::podstream::channel::{self, Protocol};
use bus_schema::podstream::{
    Control, ExecRequest, FrameBody, LogRequest, MAX_CHUNK_BYTES, TerminalSize,
};
use bus_schema::{kinds, subjects};
use serde_json::Value;

use crate::AppState;
use crate::auth::RequestAttributes;
use crate::rest::{Target, parse_path};
use crate::status::ApiError;
use node::{NodeStream, api_error};
use params::{ExecParams, LogParams};

/// Which streaming subresource a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `pods/{name}/log`.
    Log,
    /// `pods/{name}/exec`.
    Exec,
}

/// The pod and subresource when `path` is a pod's `log` or `exec` (the routing hook in
/// `rest::dispatch` sends those here before reading any body).
pub fn matches(path: &str) -> Option<(Target, Subresource)> {
    let target = parse_path(path)?;
    if !target.kind.group.is_empty() || target.kind.plural != "pods" || target.name.is_none() {
        return None;
    }
    let sub = match target.subresource.as_deref()? {
        "log" => Subresource::Log,
        "exec" => Subresource::Exec,
        _ => return None,
    };
    Some((target, sub))
}

/// Serves a `log` or `exec` request.
pub async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    target: Target,
    sub: Subresource,
) -> HttpResponse {
    let result = match sub {
        Subresource::Log => logs(&req, &state, &target).await,
        Subresource::Exec => exec(&req, payload, &state, &target).await,
    };
    result.unwrap_or_else(|e| {
        tracing::debug!(message = "pod stream request failed", path = req.path(), error = %e);
        e.response()
    })
}

/// Authenticates and authorizes (`get pods/log`, `create pods/exec` as in Kubernetes),
/// then reads the pod.
async fn pod(
    req: &HttpRequest,
    state: &AppState,
    target: &Target,
    verb: &str,
) -> Result<Value, ApiError> {
    let user = crate::discovery::authenticated(req, state)?;
    let name = target.name.as_deref().unwrap_or("");
    let attrs = RequestAttributes {
        verb,
        group: "",
        resource: "pods",
        subresource: target.subresource.as_deref(),
        namespace: target.namespace.as_deref(),
        name: Some(name),
    };
    state
        .auth
        .authorize(&user, &attrs)
        .map_err(ApiError::forbidden)?;
    let kind = kinds::by_group_kind("", "Pod").unwrap_or(target.kind);
    state
        .store
        .get(kind, target.namespace.as_deref(), name)
        .await
        .map_err(|e| ApiError::from_store(kind, name, e))
}

fn pod_identity(pod: &Value) -> (String, String, String) {
    let meta = &pod["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    (s(&meta["namespace"]), s(&meta["name"]), s(&meta["uid"]))
}

async fn logs(
    req: &HttpRequest,
    state: &AppState,
    target: &Target,
) -> Result<HttpResponse, ApiError> {
    let params = LogParams::parse(&params::pairs(req.query_string()))?;
    let pod = pod(req, state, target, "get").await?;
    let container = params::resolve_container(&pod, params.container.as_deref())?;
    let node = params::node_of(&pod)?;
    let (namespace, name, uid) = pod_identity(&pod);
    let session = uuid::Uuid::new_v4().simple().to_string();
    let request = LogRequest {
        session: session.clone(),
        namespace,
        pod: name,
        pod_uid: uid,
        container,
        follow: params.follow,
        previous: params.previous,
        tail_lines: params.tail_lines,
        since_seconds: params.since_seconds,
        since_time: params.since_time,
        timestamps: params.timestamps,
        limit_bytes: params.limit_bytes,
    };
    let client = state.store.nats_client().clone();
    let (mut stream, first) = NodeStream::open(
        client,
        &node,
        subjects::node_logs(&node),
        &session,
        &request,
    )
    .await?;
    let body = async_stream::stream! {
        let mut frame = first;
        loop {
            match frame {
                FrameBody::Data { data, .. } => yield Ok::<_, std::io::Error>(data),
                FrameBody::End => break,
                FrameBody::Error(e) => {
                    // The status line is gone; cut the body so the client sees a failure.
                    yield Err(std::io::Error::other(e.message));
                    break;
                }
                _ => {}
            }
            frame = match stream.next().await {
                Ok(f) => f,
                Err(e) => {
                    yield Err(std::io::Error::other(e.to_string()));
                    break;
                }
            };
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .streaming(body))
}

async fn exec(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    target: &Target,
) -> Result<HttpResponse, ApiError> {
    let params = ExecParams::parse(&params::pairs(req.query_string()))?;
    let pod = pod(req, state, target, "create").await?;
    let container = params::resolve_container(&pod, params.container.as_deref())?;
    let node = params::node_of(&pod)?;
    params::check_exec_phase(&pod)?;
    let is_websocket = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let protocol = channel::negotiate(
        req.headers()
            .get_all("sec-websocket-protocol")
            .filter_map(|v| v.to_str().ok()),
    );
    let Some(protocol) = protocol.filter(|_| is_websocket) else {
        return Err(ApiError::bad_request(format!(
            "exec is served over WebSocket with {} or {} only (SPDY is not supported)",
            Protocol::V5.name(),
            Protocol::V4.name()
        )));
    };
    let (namespace, name, uid) = pod_identity(&pod);
    let session = uuid::Uuid::new_v4().simple().to_string();
    let request = ExecRequest {
        session: session.clone(),
        namespace,
        pod: name,
        pod_uid: uid,
        container,
        command: params.command,
        stdin: params.stdin,
        stdout: params.stdout,
        stderr: params.stderr,
        tty: params.tty,
    };
    let (response, ws, messages) =
        actix_ws::handle_with_protocols(req, payload, &[protocol.name()])
            .map_err(|e| ApiError::bad_request(format!("websocket handshake: {e}")))?;
    let client = state.store.nats_client().clone();
    actix_web::rt::spawn(relay(
        client, node, session, request, protocol, ws, messages,
    ));
    Ok(response)
}

/// Sends the final channel-3 status and closes the WebSocket.
async fn finish(mut ws: actix_ws::Session, status: Value) {
    let bytes = serde_json::to_vec(&status).unwrap_or_default();
    let _ = ws.binary(channel::encode(channel::ERROR, &bytes)).await;
    // A close without a code reads as an error to client-go; 1000 is a clean end.
    let _ = ws.close(Some(normal_close())).await;
}

fn normal_close() -> actix_ws::CloseReason {
    actix_ws::CloseReason {
        code: actix_ws::CloseCode::Normal,
        description: None,
    }
}

fn failure_status(e: &ApiError) -> Value {
    let mut s = channel::failure_status(&e.message);
    s["reason"] = e.reason.into();
    s["code"] = e.code.into();
    s
}

/// Relays one exec session between the client's WebSocket and the node.
async fn relay(
    client: async_nats::Client,
    node: String,
    session: String,
    request: ExecRequest,
    protocol: Protocol,
    mut ws: actix_ws::Session,
    messages: actix_ws::MessageStream,
) {
    use futures::StreamExt;
    let opened = NodeStream::open(
        client,
        &node,
        subjects::node_exec(&node),
        &session,
        &request,
    )
    .await;
    let mut stream = match opened {
        Ok((stream, FrameBody::Started)) => stream,
        Ok((_, other)) => {
            let e = ApiError::bad_request(format!(
                "unexpected first frame from node {node}: {other:?}"
            ));
            return finish(ws, failure_status(&e)).await;
        }
        Err(e) => return finish(ws, failure_status(&e)).await,
    };
    let mut messages = messages
        .max_frame_size(MAX_CHUNK_BYTES * 4)
        .aggregate_continuations()
        .max_continuation_size(MAX_CHUNK_BYTES * 4);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let controls = match msg {
                    None | Some(Err(_)) | Some(Ok(actix_ws::AggregatedMessage::Close(_))) => {
                        stream.control(Control::Close).await;
                        let _ = ws.close(Some(normal_close())).await;
                        return;
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Ping(p))) => {
                        let _ = ws.pong(&p).await;
                        continue;
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Binary(data))) => client_input(&data, protocol),
                    Some(Ok(_)) => continue,
                };
                for c in controls {
                    stream.control(c).await;
                }
            }
            frame = stream.next() => {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        let e = ApiError { code: 503, reason: "ServiceUnavailable", message: e.to_string(), details: None };
                        return finish(ws, failure_status(&e)).await;
                    }
                };
                let sent = match frame {
                    FrameBody::Data { channel: bus_schema::podstream::Channel::Stdout, data } => {
                        ws.binary(channel::encode(channel::STDOUT, &data)).await
                    }
                    FrameBody::Data { channel: bus_schema::podstream::Channel::Stderr, data } => {
                        ws.binary(channel::encode(channel::STDERR, &data)).await
                    }
                    FrameBody::Exit { code } => return finish(ws, channel::exit_status(code)).await,
                    FrameBody::Error(e) => return finish(ws, failure_status(&api_error(e))).await,
                    FrameBody::End => return finish(ws, channel::exit_status(0)).await,
                    FrameBody::Started | FrameBody::Keepalive => Ok(()),
                };
                if sent.is_err() {
                    // The client is gone; dropping the stream tells the node.
                    return;
                }
            }
        }
    }
}

/// What one client WebSocket message asks of the command (pure).
pub fn client_input(data: &[u8], protocol: Protocol) -> Vec<Control> {
    match channel::decode(data) {
        Some((channel::STDIN, d)) => d
            .chunks(MAX_CHUNK_BYTES)
            .map(|c| Control::Stdin(bytes::Bytes::copy_from_slice(c)))
            .collect(),
        Some((channel::RESIZE, d)) => serde_json::from_slice::<TerminalSize>(d)
            .map(|s| vec![Control::Resize(s)])
            .unwrap_or_default(),
        Some((channel::CLOSE, [channel::STDIN, ..])) if protocol == Protocol::V5 => {
            vec![Control::StdinEof]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let sub = |p: &str| matches(p).map(|(_, s)| s);
        assert_eq!(
            sub("/api/v1/namespaces/default/pods/web/log"),
            Some(Subresource::Log)
        );
        assert_eq!(
            sub("/api/v1/namespaces/default/pods/web/exec"),
            Some(Subresource::Exec)
        );
        assert_eq!(sub("/api/v1/namespaces/default/pods/web/status"), None);
        assert_eq!(sub("/api/v1/namespaces/default/pods/web"), None);
        assert_eq!(sub("/api/v1/namespaces/default/configmaps/web/log"), None);
    }

    #[test]
    fn client_messages() {
        assert_eq!(
            client_input(b"\x00hello", Protocol::V5),
            vec![Control::Stdin(bytes::Bytes::from_static(b"hello"))]
        );
        assert_eq!(
            client_input(br#"\x04{"Width":80,"Height":24}"#, Protocol::V4),
            Vec::new(),
            "a literal backslash is not channel 4"
        );
        assert_eq!(
            client_input(b"\x04{\"Width\":80,\"Height\":24}", Protocol::V4),
            vec![Control::Resize(TerminalSize {
                width: 80,
                height: 24
            })]
        );
        assert_eq!(
            client_input(&[255, 0], Protocol::V5),
            vec![Control::StdinEof]
        );
        assert_eq!(client_input(&[255, 0], Protocol::V4), Vec::new());
        assert_eq!(client_input(b"\x04garbage", Protocol::V5), Vec::new());
        assert_eq!(client_input(b"", Protocol::V5), Vec::new());
        let big = [vec![0u8], vec![7u8; MAX_CHUNK_BYTES + 1]].concat();
        assert_eq!(client_input(&big, Protocol::V5).len(), 2);
    }
}
