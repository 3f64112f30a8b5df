use std::time::{Duration, Instant};

use super::{GuardAction, GuardState, is_safe_cgroup_path};

const T: Duration = Duration::from_secs(5);

fn at(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

#[test]
fn the_guard_kills_only_after_the_timeout_without_ok() {
    let t0 = Instant::now();
    let mut g = GuardState::new(T, t0);
    g.line("cgroups /kp/pod1\t/kp/burstable/pod2", t0);
    assert_eq!(g.tick(at(t0, 4_999)), GuardAction::Wait);
    g.line("ok", at(t0, 4_000));
    assert_eq!(g.tick(at(t0, 8_999)), GuardAction::Wait);
    assert_eq!(
        g.tick(at(t0, 9_000)),
        GuardAction::Kill(vec!["/kp/burstable/pod2".into(), "/kp/pod1".into()])
    );
    // An ok resets the clock.
    g.line("ok", at(t0, 9_100));
    assert_eq!(g.tick(at(t0, 9_200)), GuardAction::Wait);
}

#[test]
fn nothing_to_guard_means_no_kill_and_an_exit_at_eof() {
    let t0 = Instant::now();
    let mut g = GuardState::new(T, t0);
    assert_eq!(g.tick(at(t0, 60_000)), GuardAction::Wait);
    g.line("cgroups /kp/pod1", t0);
    g.line("cgroups", t0);
    assert_eq!(g.tick(at(t0, 60_000)), GuardAction::Wait);
    g.eof();
    assert_eq!(g.tick(at(t0, 1)), GuardAction::KillAndExit(vec![]));
}

#[test]
fn at_eof_the_guard_waits_out_the_timeout_then_kills_and_exits() {
    let t0 = Instant::now();
    let mut g = GuardState::new(T, t0);
    g.line("cgroups /kp/pod1", t0);
    g.line("ok", at(t0, 1_000));
    g.eof();
    assert_eq!(g.tick(at(t0, 5_999)), GuardAction::Wait);
    assert_eq!(
        g.tick(at(t0, 6_000)),
        GuardAction::KillAndExit(vec!["/kp/pod1".into()])
    );
}

#[test]
fn unsafe_or_unknown_input_is_ignored() {
    let t0 = Instant::now();
    let mut g = GuardState::new(T, t0);
    g.line("cgroups /\t../etc\t/a/../b\trelative\t/a//b\t/ok/pod", t0);
    g.line("reboot now", t0);
    assert_eq!(
        g.tick(at(t0, 5_000)),
        GuardAction::Kill(vec!["/ok/pod".into()])
    );
    for (p, ok) in [
        ("/kubepods/pod1", true),
        ("/", false),
        ("", false),
        ("/a/./b", false),
        ("/a/..", false),
        ("a/b", false),
    ] {
        assert_eq!(is_safe_cgroup_path(p), ok, "{p}");
    }
}

/// A real process in a real (v1 `pids`) cgroup is found and killed; one outside is not.
#[test]
fn kill_cgroups_kills_the_processes_of_the_cgroup_and_below() {
    let name = format!("/drover-guard-test-{}", std::process::id());
    let dir = std::path::Path::new("/sys/fs/cgroup/pids").join(&name[1..]);
    let child_dir = dir.join("c1");
    if std::fs::create_dir_all(&child_dir).is_err() {
        panic!("cannot create {} (tests run as root)", child_dir.display());
    }
    let mut inside = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let mut outside = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    std::fs::write(child_dir.join("cgroup.procs"), inside.id().to_string()).unwrap();
    let root = std::path::Path::new("/sys/fs/cgroup");
    assert!(super::pids_in(root, &name).contains(&(inside.id() as i32)));
    let killed = super::kill_cgroups(root, std::slice::from_ref(&name));
    let status = inside.wait().unwrap();
    let outside_alive = outside.try_wait().unwrap().is_none();
    let _ = outside.kill();
    let _ = outside.wait();
    let _ = std::fs::remove_dir(&child_dir);
    let _ = std::fs::remove_dir(&dir);
    assert!(killed >= 1);
    assert!(!status.success(), "the process in the cgroup was killed");
    assert!(outside_alive, "a process outside the cgroup is left alone");
}
