//! The fence guard: a small process beside the agent (`drover fence-guard`, its own
//! session) that kills the node's StatefulSet pods when the agent stops vouching for them,
//! so a frozen (SIGSTOP) or dead agent cannot leave a copy running while the control plane
//! recreates the pod elsewhere.
//!
//! The agent writes lines on the guard's stdin:
//! * `ok`: its bus heartbeat got through and its fence is open;
//! * `cgroups <path>\t<path>...`: the cgroup parents of its StatefulSet pods (the whole set,
//!   replacing the last one; `cgroups` alone empties it).
//!
//! With no `ok` for the fence timeout the guard SIGKILLs every process in those cgroups (in
//! every mounted hierarchy), and keeps doing so each tick until an `ok` comes: the control
//! plane counts the same timeout from the last heartbeat that reached it, so the guard acts
//! no later than the agent's own fence would have. When stdin ends (the agent died or
//! stopped), the guard keeps its clock, kills what it guards once the timeout has passed,
//! and exits; with nothing to guard it exits at once. A new agent replaces the old guard
//! (by the PID in its pid file) before starting its own.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the guard looks at its clock.
pub const GUARD_TICK: Duration = Duration::from_millis(50);

/// What the guard knows (pure: fed lines and the time).
#[derive(Debug)]
pub struct GuardState {
    timeout: Duration,
    last_ok: Instant,
    cgroups: BTreeSet<String>,
    eof: bool,
}

/// What the guard does after a tick.
#[derive(Debug, PartialEq, Eq)]
pub enum GuardAction {
    /// Nothing.
    Wait,
    /// Kill every process in these cgroups.
    Kill(Vec<String>),
    /// Kill every process in these cgroups (possibly none), then exit.
    KillAndExit(Vec<String>),
}

impl GuardState {
    /// A guard started at `now` (the start counts as an `ok`).
    pub fn new(timeout: Duration, now: Instant) -> GuardState {
        GuardState {
            timeout,
            last_ok: now,
            cgroups: BTreeSet::new(),
            eof: false,
        }
    }

    /// Applies one line from the agent; unknown lines are ignored (a newer agent).
    pub fn line(&mut self, line: &str, now: Instant) {
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "ok" {
            self.last_ok = now;
        } else if let Some(rest) = line.strip_prefix("cgroups") {
            self.cgroups = rest
                .split('\t')
                .map(str::trim)
                .filter(|p| is_safe_cgroup_path(p))
                .map(str::to_string)
                .collect();
        }
    }

    /// The agent's end of the pipe closed.
    pub fn eof(&mut self) {
        self.eof = true;
    }

    /// What to do at `now`.
    pub fn tick(&self, now: Instant) -> GuardAction {
        let overdue = now.saturating_duration_since(self.last_ok) >= self.timeout;
        let guarded: Vec<String> = self.cgroups.iter().cloned().collect();
        match (self.eof, overdue) {
            (true, _) if guarded.is_empty() => GuardAction::KillAndExit(Vec::new()),
            (true, true) => GuardAction::KillAndExit(guarded),
            (false, true) if !guarded.is_empty() => GuardAction::Kill(guarded),
            _ => GuardAction::Wait,
        }
    }
}

/// A cgroup path the guard accepts: absolute, no `..`, no empty or dot segments (the guard
/// runs as root and kills what it finds under the path).
pub fn is_safe_cgroup_path(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && p[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Every PID in the cgroup `path` and below, in every hierarchy mounted under
/// `cgroup_mount` (cgroup v1 controllers and the unified tree).
pub fn pids_in(cgroup_mount: &Path, path: &str) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let Ok(hierarchies) = std::fs::read_dir(cgroup_mount) else {
        return pids;
    };
    for h in hierarchies.flatten() {
        let mut stack: Vec<PathBuf> = vec![h.path().join(path.trim_start_matches('/'))];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    pids
}

/// SIGKILLs every process in the cgroups (a few rounds, for processes forked meanwhile);
/// returns how many it signalled.
pub fn kill_cgroups(cgroup_mount: &Path, paths: &[String]) -> usize {
    let mut killed = 0;
    for _ in 0..5 {
        let pids: BTreeSet<i32> = paths
            .iter()
            .flat_map(|p| pids_in(cgroup_mount, p))
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if pid > 1
                && nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
            {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

/// Runs the guard on `input` (the agent's pipe) until it exits. Blocking (threads, no
/// runtime: the guard must keep working whatever state the agent is in).
pub fn run(input: impl std::io::Read + Send + 'static, timeout: Duration, cgroup_mount: &Path) {
    let state = Arc::new(Mutex::new(GuardState::new(timeout, Instant::now())));
    let reader_state = state.clone();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(input);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let mut s = reader_state.lock().unwrap_or_else(|e| e.into_inner());
            s.line(&line, Instant::now());
        }
        reader_state.lock().unwrap_or_else(|e| e.into_inner()).eof();
    });
    loop {
        std::thread::sleep(GUARD_TICK);
        let action = state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tick(Instant::now());
        match action {
            GuardAction::Wait => {}
            GuardAction::Kill(paths) => {
                let n = kill_cgroups(cgroup_mount, &paths);
                if n > 0 {
                    eprintln!(
                        "drover fence-guard: no word from the agent for {timeout:?}: killed {n} processes of StatefulSet pods"
                    );
                }
            }
            GuardAction::KillAndExit(paths) => {
                let n = kill_cgroups(cgroup_mount, &paths);
                if n > 0 {
                    eprintln!(
                        "drover fence-guard: agent gone for {timeout:?}: killed {n} processes of StatefulSet pods"
                    );
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
