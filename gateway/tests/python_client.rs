//! The official Python Kubernetes client (PyPI `kubernetes`, pinned and installed into
//! /opt/drover/venv by scripts/setup) against the gateway: `python/client_check.py` runs
//! its checks against a fresh cluster and must exit 0.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Cluster;

/// Where scripts/setup puts the interpreter that has the `kubernetes` package.
const VENV_PYTHON: &str = "/opt/drover/venv/bin/python3";

/// `$DROVER_PYTHON` when set, else the setup venv's interpreter; a clear failure (never a
/// skip) when neither exists.
fn python() -> PathBuf {
    let python = std::env::var_os("DROVER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(VENV_PYTHON));
    assert!(
        python.exists(),
        "no Python interpreter at {}: run scripts/setup (it installs the pinned `kubernetes` \
         client into /opt/drover/venv), or set DROVER_PYTHON to one that has it",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client() {
    let python = python();
    let c = Cluster::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_check.py");
    // The script blocks on HTTP; the gateway keeps serving on the runtime's workers.
    let out = tokio::task::spawn_blocking({
        let kubeconfig = c.kubeconfig.clone();
        move || {
            Command::new(&python)
                .arg(&script)
                .arg(&kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", python.display()))
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Captured by the test harness; shown with `--nocapture`.
    print!("{stdout}");
    assert!(
        out.status.success(),
        "client_check.py failed ({}); if `kubernetes` is missing, run scripts/setup\n\
         --- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");
}
