//! A fresh cgroup v2 for one test: the BPF tests attach their programs to it (never to
//! the host's cgroup2 root) and, when the test's own sockets must be translated, move
//! the test process into it.
//!
//! ```ignore
//! let cg = drover_testkit::cgroup::TestCgroup::new("drover-proxy-test-mine", true);
//! // attach to cg.path(); this process's connect() calls now run the programs
//! ```
//!
//! Dropping it moves the process back to the cgroup it came from and removes the test
//! cgroup and everything below it (children first; only empty cgroups can go). Whoever
//! attached programs detaches them first (drop that before this).

use std::path::{Path, PathBuf};

/// Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid
/// host); panics without one (the BPF tests need it).
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("reading /proc/self/mounts");
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
        .expect("a cgroup2 mount (the BPF tests need cgroup v2)")
}

/// A test's cgroup v2 (see the module doc).
pub struct TestCgroup {
    path: PathBuf,
    /// The cgroup this process left, when it joined.
    old: Option<PathBuf>,
}

impl TestCgroup {
    /// Creates `<cgroup2 root>/<name>` (make `name` unique: include the pid) and, with
    /// `join`, moves this process into it.
    pub fn new(name: &str, join: bool) -> TestCgroup {
        let root = cgroup2_root();
        let path = root.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let old = join.then(|| {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            let rel = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a cgroup v2 line in /proc/self/cgroup");
            root.join(rel.trim_start_matches('/'))
        });
        let cg = TestCgroup { path, old };
        if join {
            move_self(&cg.path);
        }
        cg
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup this process came from (set when it joined).
    pub fn previous(&self) -> Option<&Path> {
        self.old.as_deref()
    }
}

fn move_self(cgroup: &Path) {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
        .unwrap_or_else(|e| panic!("joining {}: {e}", cgroup.display()));
}

/// Removes the empty cgroup `dir` and its descendants, children first (what is still in
/// use stays).
pub fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            let _ = std::fs::write(old.join("cgroup.procs"), std::process::id().to_string());
        }
        remove_tree(&self.path);
    }
}
