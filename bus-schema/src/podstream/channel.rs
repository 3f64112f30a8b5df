//! The Kubernetes remote-command WebSocket framing (`v4.channel.k8s.io`,
//! `v5.channel.k8s.io`) that both ends of an exec relay: kubectl speaks it to the
//! gateway, and the node agent speaks it to the container runtime's streaming server
//! (containerd's CRI streaming server is the kubelet's, which knows v4). Each binary
//! WebSocket message is one channel byte followed by data. Pure functions only.

use serde_json::{Value, json};

/// Standard input (client → server).
pub const STDIN: u8 = 0;
/// Standard output (server → client).
pub const STDOUT: u8 = 1;
/// Standard error (server → client).
pub const STDERR: u8 = 2;
/// The final `Status` as JSON (server → client).
pub const ERROR: u8 = 3;
/// Terminal size as JSON `{"Width":w,"Height":h}` (client → server).
pub const RESIZE: u8 = 4;
/// v5 only: "close channel N" (`[255, N]`), how a client says stdin reached EOF.
pub const CLOSE: u8 = 255;

/// A channel protocol version drover speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// `v4.channel.k8s.io`: JSON Status on channel 3, no stdin close.
    V4,
    /// `v5.channel.k8s.io`: v4 plus the close signal.
    V5,
}

impl Protocol {
    /// The `Sec-WebSocket-Protocol` token.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    /// Every protocol drover speaks, most preferred first, as a client offers them.
    pub fn offer() -> String {
        format!("{}, {}", Protocol::V5.name(), Protocol::V4.name())
    }
}

/// Picks the best protocol among those a client offers (a comma-separated
/// `Sec-WebSocket-Protocol` header, possibly repeated: pass each value).
pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Protocol> {
    offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|p| match p.trim() {
            "v5.channel.k8s.io" => Some(Protocol::V5),
            "v4.channel.k8s.io" => Some(Protocol::V4),
            _ => None,
        })
        .max()
}

/// The protocol a server chose (its `Sec-WebSocket-Protocol` answer).
pub fn chosen(answer: &str) -> Option<Protocol> {
    negotiate([answer])
}

/// One message: the channel byte, then the data.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(data.len() + 1);
    msg.push(channel);
    msg.extend_from_slice(data);
    msg
}

/// Splits a message into its channel and data; `None` for an empty message.
pub fn decode(msg: &[u8]) -> Option<(u8, &[u8])> {
    msg.split_first().map(|(c, rest)| (*c, rest))
}

/// How a command ended, as carried on channel 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and exited with this code.
    Exit(i32),
    /// It could not run (or the runtime failed): the Status message.
    Failure(String),
}

/// The channel-3 `Status` for an exit code (`Success`, or `NonZeroExitCode` with an
/// `ExitCode` cause, which kubectl turns into its own exit code).
pub fn exit_status(code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The channel-3 `Status` for a failure that is not an exit code.
pub fn failure_status(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

/// Reads a channel-3 `Status` (never panics on bad input: that is a failure).
pub fn parse_status(data: &[u8]) -> Outcome {
    let Ok(status) = serde_json::from_slice::<Value>(data) else {
        return Outcome::Failure(format!(
            "unreadable exec status: {}",
            String::from_utf8_lossy(data)
        ));
    };
    if status["status"] == "Success" {
        return Outcome::Exit(0);
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok());
        if let Some(code) = code {
            return Outcome::Exit(code);
        }
    }
    Outcome::Failure(
        status["message"]
            .as_str()
            .unwrap_or("exec failed")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_v5() {
        let check = |offered: &[&str], want| assert_eq!(negotiate(offered.iter().copied()), want);
        check(
            &["v5.channel.k8s.io, v4.channel.k8s.io"],
            Some(Protocol::V5),
        );
        check(
            &["v4.channel.k8s.io", "v3.channel.k8s.io,v5.channel.k8s.io"],
            Some(Protocol::V5),
        );
        check(
            &["v4.channel.k8s.io,v3.channel.k8s.io,channel.k8s.io"],
            Some(Protocol::V4),
        );
        check(&["channel.k8s.io", "base64.channel.k8s.io"], None);
        check(&[], None);
        assert_eq!(chosen("v4.channel.k8s.io"), Some(Protocol::V4));
    }

    #[test]
    fn framing() {
        assert_eq!(encode(STDOUT, b"hi"), b"\x01hi");
        assert_eq!(decode(b"\x02err"), Some((STDERR, &b"err"[..])));
        assert_eq!(decode(b"\x00"), Some((STDIN, &b""[..])));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&[CLOSE, STDIN]), Some((CLOSE, &[STDIN][..])));
    }

    #[test]
    fn statuses_round_trip() {
        for code in [0, 1, 42, 255, -1] {
            let bytes = serde_json::to_vec(&exit_status(code)).unwrap();
            assert_eq!(parse_status(&bytes), Outcome::Exit(code));
        }
        let bytes = serde_json::to_vec(&failure_status("no such file")).unwrap();
        assert_eq!(
            parse_status(&bytes),
            Outcome::Failure("no such file".into())
        );
        assert!(matches!(parse_status(b"{not json"), Outcome::Failure(_)));
        assert!(matches!(
            parse_status(br#"{"status":"Failure","reason":"NonZeroExitCode"}"#),
            Outcome::Failure(_)
        ));
    }
}
