//! Runs `kubectl exec` commands through the [`Runtime`]. The interactive path asks the
//! runtime for a streaming URL (CRI `Exec`) and speaks the `channel.k8s.io` WebSocket
//! protocol to it as a client (containerd's streaming server is the kubelet's and takes
//! `v4.channel.k8s.io`, checked against containerd 1.6 here: it answers v4, sends an
//! empty stdout message first, then output and the channel-3 `Status`, and closes with
//! 1000; `v5` is offered first for servers that know it), relaying
//! stdin/resize from the gateway and stdout/stderr/exit status back. A runtime without
//! streaming still serves commands without stdin or a terminal through `exec_sync`.
//!
//! Known gap: over v4 there is no way to tell the runtime that stdin ended, so
//! `echo x | kubectl exec -i pod -- cat` does not finish against containerd 1.6 (the
//! kubelet uses SPDY's half-close there); `-it` sessions and commands that exit on
//! their own are unaffected.

use std::time::Duration;

use bus_schema::podstream::channel::{self, Outcome, Protocol};
use bus_schema::podstream::{
    Channel, Control, ExecRequest, FrameBody, KEEPALIVE_INTERVAL, MAX_CHUNK_BYTES, StreamError,
};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::session::{Session, Stop};
use super::{Instance, fail, find_container};
use crate::runtime::{self, ContainerState, Runtime, RuntimeError};

/// Longest a command may run through the `exec_sync` fallback.
pub const EXEC_SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// How long connecting to the runtime's streaming server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one exec request on `session`.
pub async fn run(session: &mut Session, runtime: &dyn Runtime, req: &ExecRequest) {
    if req.command.is_empty() {
        let e = StreamError::bad_request("you must specify at least one command for the container");
        return fail(session, e).await;
    }
    let container = match find_container(
        runtime,
        &req.namespace,
        &req.pod,
        &req.pod_uid,
        &req.container,
        Instance::Current,
    )
    .await
    {
        Ok(c) if c.state == ContainerState::Running => c,
        Ok(_) => {
            let e = StreamError::bad_request(format!(
                "container {:?} in pod {:?} is not running",
                req.container, req.pod
            ));
            return fail(session, e).await;
        }
        Err(e) => return fail(session, e).await,
    };
    let request = runtime::ExecRequest {
        container: container.id.clone(),
        command: req.command.clone(),
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr && !req.tty,
    };
    let result = match runtime.exec(&request).await {
        Ok(url) => stream(session, &url).await,
        Err(RuntimeError::Invalid(_)) if !req.stdin && !req.tty => {
            exec_sync(session, runtime, &request).await
        }
        Err(e @ RuntimeError::NotFound { .. }) => {
            return fail(session, StreamError::not_found(e.to_string())).await;
        }
        Err(e) => {
            let e = StreamError::internal(format!("container runtime: {e}"));
            return fail(session, e).await;
        }
    };
    match result {
        Ok(Outcome::Exit(code)) => {
            if let Err(e) = session.send(FrameBody::Exit { code }).await {
                tracing::debug!(message = "exit status not delivered", error = %e);
            }
        }
        Ok(Outcome::Failure(message)) => fail(session, StreamError::internal(message)).await,
        Err(ExecEnd::Stop(e)) => tracing::debug!(message = "exec stopped", error = %e),
        Err(ExecEnd::Runtime(message)) => fail(session, StreamError::internal(message)).await,
    }
}

/// Why an exec ended without an outcome.
#[derive(Debug, thiserror::Error)]
enum ExecEnd {
    #[error(transparent)]
    Stop(#[from] Stop),
    #[error("{0}")]
    Runtime(String),
}

async fn send_data(session: &mut Session, channel: Channel, data: &[u8]) -> Result<(), Stop> {
    let data = Bytes::copy_from_slice(data);
    for start in (0..data.len()).step_by(MAX_CHUNK_BYTES) {
        let end = (start + MAX_CHUNK_BYTES).min(data.len());
        session
            .send(FrameBody::Data {
                channel,
                data: data.slice(start..end),
            })
            .await?;
    }
    Ok(())
}

/// The fallback for runtimes without streaming: run to completion, then relay.
async fn exec_sync(
    session: &mut Session,
    runtime: &dyn Runtime,
    request: &runtime::ExecRequest,
) -> Result<Outcome, ExecEnd> {
    session.send(FrameBody::Started).await?;
    let run = runtime.exec_sync(&request.container, &request.command, EXEC_SYNC_TIMEOUT);
    tokio::pin!(run);
    let output = loop {
        tokio::select! {
            output = &mut run => break output,
            // Keep acks, keepalives and a client's close flowing while it runs.
            input = session.next_input(KEEPALIVE_INTERVAL) => { input?; }
        }
    };
    let output = output.map_err(|e| ExecEnd::Runtime(format!("container runtime: {e}")))?;
    if request.stdout {
        send_data(session, Channel::Stdout, &output.stdout).await?;
    }
    if request.stderr {
        send_data(session, Channel::Stderr, &output.stderr).await?;
    }
    Ok(Outcome::Exit(output.exit_code))
}

/// The WebSocket URL for the runtime's streaming URL (`http://127.0.0.1:port/exec/x`).
fn websocket_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_string()
    }
}

/// Relays between the gateway session and the runtime's streaming server.
async fn stream(session: &mut Session, url: &str) -> Result<Outcome, ExecEnd> {
    let runtime_err = |e: &dyn std::fmt::Display| {
        ExecEnd::Runtime(format!("connecting to the runtime's streaming server: {e}"))
    };
    let mut request = websocket_url(url)
        .into_client_request()
        .map_err(|e| runtime_err(&e))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&Protocol::offer()).map_err(|e| runtime_err(&e))?,
    );
    let (ws, response) =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|e| runtime_err(&e))?
            .map_err(|e| runtime_err(&e))?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(channel::chosen)
        .unwrap_or(Protocol::V4);
    session.send(FrameBody::Started).await?;
    let (mut sink, mut source) = ws.split();
    let mut outcome = None;
    loop {
        tokio::select! {
            msg = source.next() => {
                let data = match msg {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(e)) => {
                        tracing::debug!(message = "runtime stream broke", error = %e);
                        break;
                    }
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(_)) => continue,
                };
                match channel::decode(&data) {
                    Some((channel::STDOUT, d)) => send_data(session, Channel::Stdout, d).await?,
                    Some((channel::STDERR, d)) => send_data(session, Channel::Stderr, d).await?,
                    Some((channel::ERROR, d)) => outcome = Some(channel::parse_status(d)),
                    _ => {}
                }
            }
            input = session.next_input(KEEPALIVE_INTERVAL) => {
                let msg = match input {
                    Err(stop) => {
                        let _ = sink.send(Message::Close(None)).await;
                        return Err(stop.into());
                    }
                    Ok(None) => continue,
                    Ok(Some(Control::Stdin(data))) => channel::encode(channel::STDIN, &data),
                    Ok(Some(Control::Resize(size))) => channel::encode(
                        channel::RESIZE,
                        &serde_json::to_vec(&size).unwrap_or_default(),
                    ),
                    Ok(Some(Control::StdinEof)) if protocol == Protocol::V5 => {
                        vec![channel::CLOSE, channel::STDIN]
                    }
                    Ok(Some(_)) => continue,
                };
                if let Err(e) = sink.send(Message::Binary(msg.into())).await {
                    tracing::debug!(message = "runtime stream refused input", error = %e);
                }
            }
        }
    }
    Ok(outcome.unwrap_or_else(|| {
        Outcome::Failure("the runtime's exec stream ended without an exit status".into())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_urls_become_websocket_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:1234/exec/abc"),
            "ws://127.0.0.1:1234/exec/abc"
        );
        assert_eq!(websocket_url("https://h/exec/x"), "wss://h/exec/x");
        assert_eq!(websocket_url("ws://h/x"), "ws://h/x");
    }
}
