//! A local OCI registry for image-pull tests: Debian's `docker-registry` on a loopback
//! address (inside a test's own network namespace, see [`crate::netns`]), plus `skopeo`
//! to push OCI archives into it. Killed by PID on drop.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long [`TestRegistry::start`] waits for the registry to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `docker-registry serve` owned by a test.
pub struct TestRegistry {
    addr: String,
    child: Child,
}

impl TestRegistry {
    /// Starts the registry on `addr` (`127.0.0.1:5000`) with its storage and config
    /// under `work_dir`; returns once it accepts connections.
    pub fn start(work_dir: &Path, addr: &str) -> TestRegistry {
        let config = work_dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                work_dir.join("registry").display()
            ),
        )
        .expect("writing the registry config");
        let log = std::fs::File::create(work_dir.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry; run scripts/setup)");
        let registry = TestRegistry {
            addr: addr.to_string(),
            child,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "the registry did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Pushes an OCI archive as `<addr>/<name>:<tag>` with skopeo; returns that
    /// reference.
    pub fn push(&self, archive: &Path, name: &str, tag: &str) -> String {
        let reference = format!("{}/{name}:{tag}", self.addr);
        crate::netns::run(
            "skopeo",
            &[
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                &format!("oci-archive:{}", archive.display()),
                &format!("docker://{reference}"),
            ],
        );
        reference
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
