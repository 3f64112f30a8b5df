//! The wire protocol of `kubectl logs` and `kubectl exec` between the gateway and the node
//! agent that runs the pod. The gateway never talks to containerd (Architecture
//! Invariant): it asks the node over NATS and relays the answer to the HTTP client.
//!
//! # Opening a stream
//! The gateway picks a fresh `session` id, subscribes to a reply inbox and publishes a
//! [`LogRequest`] on [`crate::subjects::node_logs`] (or an [`ExecRequest`] on
//! [`crate::subjects::node_exec`]) with that inbox as the reply subject. The agent
//! answers on the inbox with [`Frame`]s numbered from 0 and listens for [`Control`]
//! messages on [`crate::subjects::podstream_control`]`(session)`.
//!
//! # Frames (agent → gateway)
//! Every frame carries the next `seq`; a gap means NATS dropped a message (a slow
//! consumer) and the gateway ends the stream with an error rather than relay a hole.
//! A log stream is `Data(Stdout)*` then `End`; an exec session is `Started`, then
//! `Data(Stdout|Stderr)*`, then `Exit`. Either may end early with `Error`, a
//! Kubernetes-`Status`-shaped [`StreamError`]. `Keepalive` frames tell the gateway the
//! agent is alive while a followed log is quiet.
//!
//! # Control (gateway → agent) and flow control
//! The gateway acknowledges frames (`Ack { seq }`, the highest seq it has written to its
//! client); the agent never has more than [`WINDOW`] frames unacknowledged, so a slow
//! HTTP client slows the agent down instead of filling memory on either side (each
//! frame carries at most [`MAX_CHUNK_BYTES`]). Any control message proves the gateway
//! is still there; it sends `Keepalive` every [`KEEPALIVE_INTERVAL`] when it has nothing
//! else to say. An agent that hears nothing for [`IDLE_TIMEOUT`] stops the stream (the
//! HTTP client went away, or the gateway died), and so does a gateway that hears
//! nothing from the agent. `Close` ends a stream at once (client disconnected). Exec
//! adds `Stdin`, `StdinEof` (WebSocket v5's close of channel 0) and `Resize`.
//!
//! Bodies use the [`crate::envelope`] encoding (MessagePack maps); byte payloads are
//! MessagePack binaries.

pub mod channel;

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Most frames the agent sends beyond the last acknowledged one.
pub const WINDOW: u64 = 16;

/// Largest payload of one [`FrameBody::Data`] or [`Control::Stdin`] (well below NATS's
/// default 1 MiB `max_payload`).
pub const MAX_CHUNK_BYTES: usize = 32 * 1024;

/// How often each side sends a keepalive when it has nothing else to send.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How long either side waits without hearing from the other before it ends the
/// stream (three keepalives lost).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the gateway waits for a node's first frame before answering 504.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// `kubectl logs` as sent to the node (the query parameters of `pods/{name}/log`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRequest {
    /// Stream id chosen by the gateway; names the control subject.
    pub session: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod uid (so a recreated pod of the same name is not confused with the old one).
    pub pod_uid: String,
    /// Container name (resolved by the gateway; never empty).
    pub container: String,
    /// Keep streaming new lines until the container exits.
    pub follow: bool,
    /// Read the previous (exited) instance of the container.
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Only lines at or after this RFC 3339 time.
    pub since_time: Option<String>,
    /// Prefix every line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<i64>,
}

/// `kubectl exec` as sent to the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecRequest {
    /// Stream id chosen by the gateway; names the control subject.
    pub session: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod uid.
    pub pod_uid: String,
    /// Container name (resolved by the gateway; never empty).
    pub container: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Attach standard input.
    pub stdin: bool,
    /// Attach standard output.
    pub stdout: bool,
    /// Attach standard error (false with a terminal).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// Which output stream a [`FrameBody::Data`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// Standard output (and every log line).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One agent → gateway message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Position in the stream, from 0, without gaps.
    pub seq: u64,
    /// What it says.
    pub body: FrameBody,
}

/// The content of a [`Frame`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameBody {
    /// The exec session is set up (the command runs).
    Started,
    /// Output bytes (at most [`MAX_CHUNK_BYTES`]).
    Data {
        /// The output stream.
        channel: Channel,
        /// The bytes.
        data: Bytes,
    },
    /// Nothing to say; the agent is alive.
    Keepalive,
    /// The log stream ended normally.
    End,
    /// The command exited with this code.
    Exit {
        /// Exit code (0 = success).
        code: i32,
    },
    /// The stream failed; nothing follows.
    Error(StreamError),
}

/// A failure in the shape of a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// HTTP code (404 container not found, 400 bad request, 500 runtime failure).
    pub code: u16,
    /// `Status.reason` (`NotFound`, `BadRequest`, `InternalError`).
    pub reason: String,
    /// Human-readable message, lower-case as the apiserver's.
    pub message: String,
}

impl StreamError {
    /// 404 NotFound.
    pub fn not_found(message: impl Into<String>) -> StreamError {
        StreamError {
            code: 404,
            reason: "NotFound".into(),
            message: message.into(),
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> StreamError {
        StreamError {
            code: 400,
            reason: "BadRequest".into(),
            message: message.into(),
        }
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> StreamError {
        StreamError {
            code: 500,
            reason: "InternalError".into(),
            message: message.into(),
        }
    }
}

/// Terminal size, as `kubectl exec -t` sends it on WebSocket channel 4.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// One gateway → agent message on the control subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Every frame up to and including `seq` has been delivered to the client.
    Ack {
        /// The highest delivered seq.
        seq: u64,
    },
    /// Nothing to say; the gateway (and its client) are still there.
    Keepalive,
    /// Bytes for the command's standard input (at most [`MAX_CHUNK_BYTES`]).
    Stdin(Bytes),
    /// Standard input is closed.
    StdinEof,
    /// The terminal was resized.
    Resize(TerminalSize),
    /// The client went away: stop now.
    Close,
}

/// The sender's side of flow control: how many frames may go out before an ack.
/// Pure bookkeeping, so both the agent and the tests use the same rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credit {
    /// Seq of the next frame to send.
    pub next_seq: u64,
    /// Number of frames acknowledged (highest acked seq + 1).
    pub acked: u64,
}

impl Credit {
    /// Whether one more frame may be sent now.
    pub fn can_send(&self) -> bool {
        self.next_seq < self.acked + WINDOW
    }

    /// Takes the seq for the next frame.
    pub fn take(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Records an ack of every frame up to `seq` (acks may arrive out of date: the
    /// highest wins; acks of frames never sent are capped).
    pub fn ack(&mut self, seq: u64) {
        let acked = seq.saturating_add(1).min(self.next_seq);
        self.acked = self.acked.max(acked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode_body, encode_body};

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: T,
    ) {
        let bytes = encode_body(&value).unwrap();
        let back: T = decode_body(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn messages_round_trip() {
        round_trip(LogRequest {
            session: "s1".into(),
            namespace: "default".into(),
            pod: "web".into(),
            container: "c".into(),
            tail_lines: Some(3),
            since_time: Some("2024-01-01T00:00:00Z".into()),
            ..LogRequest::default()
        });
        round_trip(ExecRequest {
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            stdin: true,
            tty: true,
            ..ExecRequest::default()
        });
        for body in [
            FrameBody::Started,
            FrameBody::Data {
                channel: Channel::Stderr,
                data: Bytes::from_static(b"\x00\xffbin"),
            },
            FrameBody::Keepalive,
            FrameBody::End,
            FrameBody::Exit { code: 3 },
            FrameBody::Error(StreamError::not_found("container \"x\" not found")),
        ] {
            round_trip(Frame { seq: 7, body });
        }
        for c in [
            Control::Ack { seq: 9 },
            Control::Keepalive,
            Control::Stdin(Bytes::from_static(b"abc")),
            Control::StdinEof,
            Control::Resize(TerminalSize {
                width: 80,
                height: 24,
            }),
            Control::Close,
        ] {
            round_trip(c);
        }
    }

    #[test]
    fn data_travels_as_a_binary() {
        // A MessagePack bin (0xc4..0xc6) keeps chunks compact; an array of integers
        // would double their size.
        let bytes = encode_body(&Control::Stdin(Bytes::from_static(b"abc"))).unwrap();
        assert!(bytes.windows(4).any(|w| w == [0xc4, 3, b'a', b'b']));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [&b""[..], b"\xff\xff", b"\x81\xa3foo\x01"] {
            assert!(decode_body::<Frame>(junk).is_err());
            assert!(decode_body::<Control>(junk).is_err());
        }
    }

    #[test]
    fn terminal_size_uses_kubectl_names() {
        let size: TerminalSize = serde_json::from_str(r#"{"Width":120,"Height":40}"#).unwrap();
        assert_eq!(
            size,
            TerminalSize {
                width: 120,
                height: 40
            }
        );
    }

    #[test]
    fn credit_bounds_frames_in_flight() {
        let mut credit = Credit::default();
        for _ in 0..WINDOW {
            assert!(credit.can_send());
            credit.take();
        }
        assert!(!credit.can_send());
        credit.ack(0);
        assert!(credit.can_send());
        credit.take();
        assert!(!credit.can_send());
        // Stale and future acks.
        credit.ack(0);
        assert!(!credit.can_send());
        credit.ack(u64::MAX);
        assert_eq!(credit.acked, credit.next_seq);
        assert!(credit.can_send());
    }
}
