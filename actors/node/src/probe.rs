//! Container probes (startup, liveness, readiness) as the kubelet's prober runs them.
//!
//! The bookkeeping ([`ProbeTracker`]: when each probe is due, consecutive successes and
//! failures against `successThreshold`/`failureThreshold`, the startup probe gating the
//! other two) is pure and driven with explicit instants, so it is unit-tested without
//! clocks. [`run_probe`] does one check: `exec` through [`Runtime::exec_sync`],
//! `httpGet` with a minimal HTTP/1.1 GET, `tcpSocket` with a connect, each within
//! `timeoutSeconds`.
//!
//! The PodActor runs due probes inline in its reconcile (no task per container), so a
//! pod without probes costs nothing. On the hollow runtime, whose pod IPs are not real,
//! `httpGet` and `tcpSocket` become a scripted `exec_sync` of
//! `["hollow-probe", "http"|"tcp", port, path]` instead of a connection.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::runtime::{ContainerId, Runtime};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `startupProbe`: gates the other two until it succeeds.
    Startup,
    /// `livenessProbe`: failure restarts the container.
    Liveness,
    /// `readinessProbe`: drives `ready`.
    Readiness,
}

impl ProbeKind {
    /// `Startup`, `Liveness`, `Readiness` (event messages).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// One probe's schedule and counters.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// The probe spec.
    pub probe: Probe,
    /// Current result (readiness and startup start failed, liveness starts ok).
    pub ok: bool,
    successes: u32,
    failures: u32,
    /// When the probe runs next.
    pub next_due: Instant,
}

impl ProbeState {
    fn new(probe: Probe, initial: bool, started: Instant) -> ProbeState {
        let delay = probe.initial_delay_seconds.unwrap_or(0).max(0) as u64;
        ProbeState {
            probe,
            ok: initial,
            successes: 0,
            failures: 0,
            next_due: started + Duration::from_secs(delay),
        }
    }

    /// `periodSeconds` (default 10, at least 1).
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    /// `timeoutSeconds` (default 1, at least 1).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.probe.timeout_seconds.unwrap_or(1).max(1) as u64)
    }

    /// Records one result at `now`; returns whether the overall result flipped.
    pub fn observe(&mut self, success: bool, now: Instant) -> bool {
        self.next_due = now + self.period();
        let before = self.ok;
        if success {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) as u32 {
                self.ok = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) as u32 {
                self.ok = false;
            }
        }
        before != self.ok
    }

    /// Whether the failure threshold was just reached (the action fires once per run
    /// of failures).
    pub fn failed_now(&self) -> bool {
        !self.ok && self.failures == self.probe.failure_threshold.unwrap_or(3).max(1) as u32
    }
}

/// The probes of one container instance.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    /// The container instance the counters belong to.
    pub container: ContainerId,
    /// `startupProbe`.
    pub startup: Option<ProbeState>,
    /// `livenessProbe`.
    pub liveness: Option<ProbeState>,
    /// `readinessProbe`.
    pub readiness: Option<ProbeState>,
}

impl ProbeTracker {
    /// Trackers for `container`'s probes, for an instance that started at `started`;
    /// `None` when it has no probes (nothing to schedule).
    pub fn new(spec: &Container, container: ContainerId, started: Instant) -> Option<ProbeTracker> {
        if spec.startup_probe.is_none()
            && spec.liveness_probe.is_none()
            && spec.readiness_probe.is_none()
        {
            return None;
        }
        Some(ProbeTracker {
            container,
            startup: spec
                .startup_probe
                .clone()
                .map(|p| ProbeState::new(p, false, started)),
            liveness: spec
                .liveness_probe
                .clone()
                .map(|p| ProbeState::new(p, true, started)),
            readiness: spec
                .readiness_probe
                .clone()
                .map(|p| ProbeState::new(p, false, started)),
        })
    }

    /// Carries over what an earlier agent published for this same container instance
    /// (an agent restart re-adopting it): a container that was ready stays ready, and
    /// one that had started stays started, until a probe says otherwise. Starting from
    /// "not ready" would take every adopted pod out of its Services until its first
    /// readiness probe passes (`initialDelaySeconds` later), as old kubelets did.
    pub fn resume(&mut self, ready: bool, started: bool) {
        if let Some(r) = self.readiness.as_mut() {
            r.ok = ready;
        }
        if let Some(s) = self.startup.as_mut() {
            s.ok = started;
        }
    }

    /// Whether the startup probe passed (true without one).
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(|s| s.ok)
    }

    /// Readiness (`None` without a readiness probe).
    pub fn ready(&self) -> Option<bool> {
        self.readiness.as_ref().map(|r| r.ok && self.started())
    }

    /// The probes due at `now` (startup alone until it passes).
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        if let Some(s) = &self.startup
            && !s.ok
        {
            return if s.next_due <= now {
                vec![ProbeKind::Startup]
            } else {
                vec![]
            };
        }
        let mut out = Vec::new();
        if self.liveness.as_ref().is_some_and(|p| p.next_due <= now) {
            out.push(ProbeKind::Liveness);
        }
        if self.readiness.as_ref().is_some_and(|p| p.next_due <= now) {
            out.push(ProbeKind::Readiness);
        }
        out
    }

    /// When the next probe is due.
    pub fn next_due(&self) -> Option<Instant> {
        if let Some(s) = &self.startup
            && !s.ok
        {
            return Some(s.next_due);
        }
        [&self.liveness, &self.readiness]
            .into_iter()
            .flatten()
            .map(|p| p.next_due)
            .min()
    }

    /// The state of one probe.
    pub fn state_mut(&mut self, kind: ProbeKind) -> Option<&mut ProbeState> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }
}

/// Resolves a probe/hook port (a number, or a named `containerPort`).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// What the prober needs to reach a container.
pub struct Target<'a> {
    /// The runtime (exec probes).
    pub runtime: &'a dyn Runtime,
    /// The container instance.
    pub id: &'a ContainerId,
    /// Its spec (named ports).
    pub spec: &'a Container,
    /// The pod IP (httpGet/tcpSocket default host).
    pub pod_ip: &'a str,
    /// The runtime does not run real networks (hollow): network checks are scripted.
    pub scripted_network: bool,
}

/// Runs one check; `Err` carries the failure message for the `Unhealthy` event.
pub async fn run_probe(
    target: &Target<'_>,
    probe: &Probe,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return run_exec(target, &command, timeout).await;
    }
    if let Some(http) = &probe.http_get {
        return run_http(target, http, timeout).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, target.spec).ok_or("bad port")?;
        if target.scripted_network {
            let cmd = ["hollow-probe".to_string(), "tcp".into(), port.to_string()];
            return run_exec(target, &cmd, timeout).await;
        }
        let host = tcp
            .host
            .clone()
            .unwrap_or_else(|| target.pod_ip.to_string());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    // gRPC probes and unknown handlers: not supported, never fail the container for it.
    Ok(())
}

async fn run_exec(
    target: &Target<'_>,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    match target.runtime.exec_sync(target.id, command, timeout).await {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) => {
            let mut msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if msg.is_empty() {
                msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            if msg.is_empty() {
                msg = format!("command {command:?} exited with {}", out.exit_code);
            }
            Err(msg)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `httpGet` (probe or preStop hook): a plain HTTP/1.1 GET; 200..400 is success.
pub async fn run_http(
    target: &Target<'_>,
    http: &HTTPGetAction,
    timeout: Duration,
) -> Result<(), String> {
    let port = resolve_port(&http.port, target.spec).ok_or("bad port")?;
    let path = http
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    if target.scripted_network {
        let cmd = [
            "hollow-probe".to_string(),
            "http".into(),
            port.to_string(),
            path,
        ];
        return run_exec(target, &cmd, timeout).await;
    }
    if http.scheme.as_deref() == Some("HTTPS") {
        return Err("HTTPS probes are not supported".into());
    }
    let host = http
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| target.pod_ip.to_string());
    let headers: String = http
        .http_headers
        .iter()
        .flatten()
        .map(|h| format!("{}: {}\r\n", h.name, h.value))
        .collect();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: drover-probe/1.0\r\nAccept: */*\r\nConnection: close\r\n{headers}\r\n"
    );
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| "malformed HTTP response".to_string())?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"http://{host}:{port}{path}\": context deadline exceeded"
        )),
    }
}

#[cfg(test)]
mod tests;
