//! The gateway's end of one logs or exec stream to a node agent (protocol in
//! [`bus_schema::podstream`]): publishes the request with a private reply inbox, checks
//! that frames arrive in order, acknowledges each frame once the previous one has been
//! handed on, keeps the agent's idle timer fed, and tells the agent to stop when it is
//! dropped (the HTTP client went away).

use std::time::Duration;

use bus_schema::envelope::{self, Meta};
use bus_schema::podstream::{
    Control, FIRST_FRAME_TIMEOUT, Frame, FrameBody, IDLE_TIMEOUT, KEEPALIVE_INTERVAL, StreamError,
};
use bus_schema::subjects;
use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::status::ApiError;

/// Why a stream to a node broke (after it was open).
#[derive(Debug, thiserror::Error)]
pub enum NodeStreamError {
    /// A frame is missing (NATS dropped it): the output would have a hole.
    #[error("frames lost between the node and the gateway (expected {expected}, got {got})")]
    Gap {
        /// The seq expected next.
        expected: u64,
        /// The seq that arrived.
        got: u64,
    },
    /// The node said nothing for [`IDLE_TIMEOUT`].
    #[error("node {0} stopped answering")]
    Idle(String),
    /// No agent subscribes to the node's subjects (the node is down or gone).
    #[error("node {0} is not reachable: no agent serves it")]
    NoAgent(String),
    /// The inbox subscription ended (NATS connection closed).
    #[error("the connection to the node ended")]
    Closed,
}

/// One open stream.
pub struct NodeStream {
    client: async_nats::Client,
    node: String,
    control: String,
    inbox: async_nats::Subscriber,
    meta: Meta,
    next_seq: u64,
    /// Seq to acknowledge before waiting for the next frame (the caller has handed the
    /// frame on by the time it asks for the next).
    unacked: Option<u64>,
    heard: Instant,
    sent: Instant,
    done: bool,
}

/// Maps a node's error frame to the API error the client sees.
pub fn api_error(e: StreamError) -> ApiError {
    let reason = match e.reason.as_str() {
        "NotFound" => "NotFound",
        "BadRequest" => "BadRequest",
        _ => "InternalError",
    };
    ApiError {
        code: e.code,
        reason,
        message: e.message,
        details: None,
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError {
        code: 503,
        reason: "ServiceUnavailable",
        message,
        details: None,
    }
}

impl NodeStream {
    /// Sends `request` to `subject` of `node` and waits for the first frame (at most
    /// [`FIRST_FRAME_TIMEOUT`]). An error frame becomes the matching API error; silence
    /// is a 503 naming the node.
    pub async fn open<T: Serialize>(
        client: async_nats::Client,
        node: &str,
        subject: String,
        session: &str,
        request: &T,
    ) -> Result<(NodeStream, FrameBody), ApiError> {
        let meta = Meta {
            sender: "gateway".into(),
            traceparent: None,
        };
        let reply = client.new_inbox();
        let inbox = client
            .subscribe(reply.clone())
            .await
            .map_err(|e| unavailable(format!("subscribing to a reply inbox: {e}")))?;
        let (headers, payload) = envelope::encode(request, &meta)
            .map_err(|e| ApiError::bad_request(format!("encoding the request: {e}")))?;
        let mut stream = NodeStream {
            control: subjects::podstream_control(session),
            client,
            node: node.to_string(),
            inbox,
            meta,
            next_seq: 0,
            unacked: None,
            heard: Instant::now(),
            sent: Instant::now(),
            done: false,
        };
        stream
            .client
            .publish_with_reply_and_headers(subject, reply, headers, payload)
            .await
            .map_err(|e| unavailable(format!("sending the request to node {node}: {e}")))?;
        let first = tokio::time::timeout(FIRST_FRAME_TIMEOUT, stream.next()).await;
        match first {
            Err(_) => {
                stream.done = true;
                Err(unavailable(format!(
                    "node {node} did not answer within {}s (is its agent running?)",
                    FIRST_FRAME_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(e)) => {
                stream.done = true;
                Err(unavailable(e.to_string()))
            }
            Ok(Ok(FrameBody::Error(e))) => {
                stream.done = true;
                Err(api_error(e))
            }
            Ok(Ok(body)) => Ok((stream, body)),
        }
    }

    /// The next frame, acknowledging the one returned before. Keepalive frames are
    /// consumed here; the agent's `End`, `Exit` and `Error` end the stream.
    pub async fn next(&mut self) -> Result<FrameBody, NodeStreamError> {
        if let Some(seq) = self.unacked {
            self.control(Control::Ack { seq }).await;
            self.unacked = None;
        }
        loop {
            let keepalive_in = KEEPALIVE_INTERVAL.saturating_sub(self.sent.elapsed());
            let msg = match tokio::time::timeout(keepalive_in, self.inbox.next()).await {
                Err(_) => {
                    if self.heard.elapsed() >= IDLE_TIMEOUT {
                        return Err(NodeStreamError::Idle(self.node.clone()));
                    }
                    self.control(Control::Keepalive).await;
                    continue;
                }
                Ok(None) => return Err(NodeStreamError::Closed),
                Ok(Some(msg)) => msg,
            };
            // nats-server answers a request nobody subscribes to with a 503 status on the
            // reply subject: no agent serves this node.
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(NodeStreamError::NoAgent(self.node.clone()));
            }
            let frame = match envelope::decode::<Frame>(msg.headers.as_ref(), &msg.payload) {
                Ok((_, f)) => f,
                Err(error) => {
                    tracing::debug!(message = "bad frame dropped", %error);
                    continue;
                }
            };
            self.heard = Instant::now();
            if frame.seq != self.next_seq {
                return Err(NodeStreamError::Gap {
                    expected: self.next_seq,
                    got: frame.seq,
                });
            }
            self.next_seq += 1;
            self.unacked = Some(frame.seq);
            match frame.body {
                FrameBody::Keepalive => continue,
                body @ (FrameBody::End | FrameBody::Exit { .. } | FrameBody::Error(_)) => {
                    self.done = true;
                    return Ok(body);
                }
                body => return Ok(body),
            }
        }
    }

    /// Sends a control message (stdin, resize, ...); failures are logged: the idle
    /// timeouts end a stream whose bus is gone.
    pub async fn control(&mut self, control: Control) {
        let Ok((headers, payload)) = envelope::encode(&control, &self.meta) else {
            return;
        };
        if let Err(error) = self
            .client
            .publish_with_headers(self.control.clone(), headers, payload)
            .await
        {
            tracing::debug!(message = "control message not sent", %error);
        }
        self.sent = Instant::now();
    }

    /// How long until a keepalive is due (for callers that wait on other things too).
    pub fn keepalive_due_in(&self) -> Duration {
        KEEPALIVE_INTERVAL.saturating_sub(self.sent.elapsed())
    }
}

impl Drop for NodeStream {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The client went away mid-stream: tell the agent now rather than let it wait
        // for its idle timeout.
        let (client, subject) = (self.client.clone(), self.control.clone());
        if let Ok((headers, payload)) = envelope::encode(&Control::Close, &self.meta)
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = client.publish_with_headers(subject, headers, payload).await;
            });
        }
    }
}
