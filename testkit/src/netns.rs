//! Running one test inside fresh network and mount namespaces, so that what containerd
//! and CNI create (the `drover0` bridge, pod IPs in 10.244.0.0/16, overlay and netns
//! mounts) exists only there and dies with the test.
//!
//! Use it as the first line of a `#[test]` (not `#[tokio::test]`: the namespaces must
//! exist before any runtime thread starts):
//!
//! ```ignore
//! #[test]
//! fn my_scenario() {
//!     if !drover_testkit::netns::enter("my_scenario") {
//!         return; // the parent: the child ran the scenario and passed
//!     }
//!     // The child, inside the fresh namespaces: loopback up, no routes out.
//! }
//! ```
//!
//! The parent re-executes the test binary for exactly that test under `unshare --net
//! --mount --propagation private` and fails if the child fails. The child brings `lo`
//! up and asserts that its network namespace has no route, so nothing it starts can
//! reach beyond it.

use std::process::Command;

/// Set in the re-executed child that runs inside the fresh namespaces.
pub const IN_FRESH_NETNS: &str = "DROVER_TEST_IN_FRESH_NETNS";

/// Whether this process is a child started by [`enter`].
pub fn inside() -> bool {
    std::env::var_os(IN_FRESH_NETNS).is_some()
}

/// In the parent: re-runs `test_name` (the test function's name; matched exactly) in
/// fresh namespaces, panics if it fails, and returns `false`. In the child: prepares the
/// namespace (loopback up, no routes checked) and returns `true`.
pub fn enter(test_name: &str) -> bool {
    if !inside() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let status = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--"])
            .arg(exe)
            .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env(IN_FRESH_NETNS, "1")
            .status()
            .expect("running unshare (util-linux; the test needs root)");
        assert!(
            status.success(),
            "the scenario in the fresh netns failed: {status}"
        );
        return false;
    }
    run("ip", &["link", "set", "lo", "up"]);
    assert_eq!(
        run("ip", &["-4", "route", "show"]).trim(),
        "",
        "the fresh network namespace has routes"
    );
    true
}

/// Runs a command, panics unless it succeeds, returns its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
