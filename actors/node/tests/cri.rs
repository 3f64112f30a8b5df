//! End to end with the real parts: containerd (started by us, own root/state/socket under
//! a temp dir), runc, CNI bridge + host-local, images built by `drover_node::image`.
//!
//! Isolation: [`drover_testkit::netns::enter`] re-executes this one test in fresh network
//! and mount namespaces, so the bridge, the pod IPs (10.244.0.0/24) and every mount
//! containerd makes die with the test. On failure a guard kills what we started, by PID
//! ([`drover_node::host::purge`]: shims and container processes from containerd's state
//! dir), and lazily unmounts whatever is still mounted under the temp dir.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_node::cni::{self, PodCidr};
use drover_node::containerd::{self, Containerd, ContainerdPaths, READY_TIMEOUT};
use drover_node::cri::{self, ContainerState, CriClient, CriError, PodSandboxState, SandboxSpec};
use drover_node::image;
use drover_testkit::registry::TestRegistry;

const POD_CIDR: &str = "10.244.0.0/24";
/// The test's registry, on the loopback of the test's own network namespace.
const REGISTRY: &str = "127.0.0.1:5000";
const BUSYBOX_IMAGE: &str = "localhost/busybox:latest";
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "wget", "nc", "ls", "mkdir", "httpd",
];

#[test]
fn cri_pod_end_to_end() {
    if !drover_testkit::netns::enter("cri_pod_end_to_end") {
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario());
}

/// Kills and unmounts what the scenario started if it did not get to clean up itself.
struct Guard {
    dir: tempfile::TempDir,
    paths: ContainerdPaths,
    containerd: Option<Containerd>,
    registry: Option<TestRegistry>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.registry.take();
        if let Some(containerd) = self.containerd.take() {
            containerd.kill_now();
        }
        drover_node::host::purge(&self.paths);
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    drover_testkit::netns::run(cmd, args)
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ContainerdPaths::new(dir.path().join("data"));
    let mut guard = Guard {
        paths: paths.clone(),
        dir,
        containerd: None,
        registry: None,
    };
    let work = guard.dir.path().to_path_buf();

    let pod_cidr = PodCidr::parse(POD_CIDR).unwrap();
    cni::write_conflist(&paths.cni_conf_dir(), pod_cidr, &paths.cni_ipam_dir()).unwrap();

    // Images: the pause program compiled now, busybox from Debian's busybox-static.
    let pause = image::build_pause(Path::new("cc"), &work).unwrap();
    let pause_tar = work.join("pause.tar");
    image::write_oci_archive(&image::pause_image(&pause).unwrap(), &pause_tar).unwrap();
    let busybox_tar = work.join("busybox.tar");
    let busybox =
        image::busybox_image(BUSYBOX_IMAGE, Path::new("/bin/busybox"), BUSYBOX_APPLETS).unwrap();
    image::write_oci_archive(&busybox, &busybox_tar).unwrap();

    let containerd = Containerd::start(Path::new("containerd"), paths.clone(), READY_TIMEOUT)
        .await
        .unwrap();
    let containerd_pid = containerd.pid();
    guard.containerd = Some(containerd);
    let socket = paths.socket();

    let client = CriClient::connect(&socket).await.unwrap();
    let version = wait_for("CRI to answer", Duration::from_secs(20), || async {
        client.version().await.ok()
    })
    .await;
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");

    for tar in [&pause_tar, &busybox_tar] {
        image::import(Path::new("ctr"), &socket, tar).await.unwrap();
    }
    for reference in [drover_node::containerd::SANDBOX_IMAGE, BUSYBOX_IMAGE] {
        let img = wait_for(
            "CRI to see the imported image",
            Duration::from_secs(10),
            || async { client.image_status(reference).await.unwrap() },
        )
        .await;
        assert!(img.repo_tags.iter().any(|t| t == reference), "{img:?}");
    }
    assert!(
        client
            .image_status("localhost/absent:latest")
            .await
            .unwrap()
            .is_none()
    );

    // A pull through CRI from a plain-HTTP registry on this netns's loopback.
    let registry = guard.registry.insert(TestRegistry::start(&work, REGISTRY));
    let pushed = registry.push(&busybox_tar, "busybox", "pulled");
    containerd::allow_plain_http_registry(&paths, REGISTRY).unwrap();
    let image_ref = client.pull_image(&pushed, None).await.unwrap();
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let pulled = client.image_status(&pushed).await.unwrap().unwrap();
    assert!(pulled.repo_tags.contains(&pushed), "{pulled:?}");
    // No registry listens in this netns: a pull fails with a CRI error, not a panic.
    let pull = client.pull_image("localhost/absent:latest", None).await;
    assert!(matches!(pull, Err(CriError::Call { .. })), "{pull:?}");

    // A pod sandbox with its own network namespace and an IP from the pod CIDR.
    let log_dir = work.join("pods").join("default_hello_uid-1");
    let spec = SandboxSpec {
        name: "hello".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
        attempt: 0,
        hostname: "hello".into(),
        log_directory: log_dir.clone(),
    };
    let sandbox_config = cri::sandbox_config(&spec);
    let sandbox_id = client
        .run_pod_sandbox(sandbox_config.clone())
        .await
        .unwrap();
    let status = client.pod_sandbox_status(&sandbox_id).await.unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    let ip: std::net::Ipv4Addr = status.network.unwrap().ip.parse().unwrap();
    assert!(pod_cidr.contains(ip), "pod IP {ip} outside {pod_cidr}");
    assert!(sh("ip", &["link", "show", cni::BRIDGE_NAME]).contains(cni::BRIDGE_NAME));
    let listed = client.list_pod_sandboxes().await.unwrap();
    assert!(listed.iter().any(|s| s.id == sandbox_id), "{listed:?}");

    // Two containers in it: a web server, and an app that fetches from it over the
    // pod's shared localhost and logs what it got.
    let start = |name: &'static str, script: &'static str| {
        let client = client.clone();
        let sandbox_id = sandbox_id.clone();
        let sandbox_config = sandbox_config.clone();
        let log_dir = log_dir.clone();
        async move {
            std::fs::create_dir_all(log_dir.join(name)).unwrap();
            let config = cri::container_config(
                name,
                0,
                BUSYBOX_IMAGE,
                vec!["sh".into(), "-c".into(), script.into()],
                vec![],
            );
            let id = client
                .create_container(&sandbox_id, config, sandbox_config)
                .await
                .unwrap();
            client.start_container(&id).await.unwrap();
            id
        }
    };
    let web_id = start(
        "web",
        "mkdir -p /tmp/www && echo hi-from-pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
    )
    .await;
    let app_id = start(
        "app",
        "echo hello; until wget -qO- http://127.0.0.1:8080/; do sleep 0.1; done; exec sleep 3600",
    )
    .await;
    let mut log_paths = Vec::new();
    for id in [&web_id, &app_id] {
        let status = wait_for("the container to run", Duration::from_secs(20), || async {
            let s = client.container_status(id).await.unwrap();
            (s.state == ContainerState::ContainerRunning as i32).then_some(s)
        })
        .await;
        log_paths.push(PathBuf::from(&status.log_path));
    }
    let app_log = log_paths.pop().unwrap();
    assert_eq!(app_log, log_dir.join("app/0.log"));
    wait_for(
        "hello and the page in the app's log",
        Duration::from_secs(20),
        || async {
            let text = std::fs::read_to_string(&app_log).unwrap_or_default();
            let lines: Vec<_> = text
                .lines()
                .filter_map(cri::parse_log_line)
                .filter(|l| l.stream == "stdout" && l.full)
                .map(|l| l.text)
                .collect();
            (lines == ["hello", "hi-from-pod"]).then_some(())
        },
    )
    .await;

    // The pod is reachable at its IP from the node (our netns) over the bridge.
    let page = wait_for("the pod's web server", Duration::from_secs(20), || async {
        http_get(std::net::SocketAddr::from((ip, 8080))).await.ok()
    })
    .await;
    assert!(page.ends_with("hi-from-pod\n"), "{page:?}");

    // Tear down in order, as the PodActor will.
    for id in [&app_id, &web_id] {
        client
            .stop_container(id, Duration::from_secs(1))
            .await
            .unwrap();
        let status = client.container_status(id).await.unwrap();
        assert_eq!(status.state, ContainerState::ContainerExited as i32);
        client.remove_container(id).await.unwrap();
        assert!(
            client
                .container_status(id)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }
    client.stop_pod_sandbox(&sandbox_id).await.unwrap();
    client.remove_pod_sandbox(&sandbox_id).await.unwrap();
    assert!(client.list_pod_sandboxes().await.unwrap().is_empty());

    let containerd = guard.containerd.take().unwrap();
    containerd.stop(drover_node::containerd::STOP_GRACE).await;
    // Gone: signal 0 to its PID fails (it was our child and has been reaped).
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(containerd_pid as i32), None).is_err()
    );
}

/// A plain HTTP/1.0 GET of `/`; returns the whole response.
async fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await??;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    Ok(response)
}
