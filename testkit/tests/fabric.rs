//! The test fabric: nodes reach each other and the test process, partition and loss cut
//! a node off, heal and zero loss bring it back, and drop removes everything.

use drover_testkit::fabric::{BRIDGE, Fabric, HOST_IP};

/// One ping from node `from` (or the test process) to `to`; whether it was answered.
/// busybox's ping waits at most a second for the answer.
fn ping(fabric: &Fabric, from: Option<usize>, to: std::net::Ipv4Addr) -> bool {
    let args = ["ping", "-c", "1", "-W", "1", &to.to_string()].map(String::from);
    let status = match from {
        Some(i) => fabric.node(i).command("/bin/busybox").args(&args).output(),
        None => std::process::Command::new("/bin/busybox")
            .args(&args)
            .output(),
    }
    .expect("running busybox ping");
    status.status.success()
}

/// A ping answered within a few tries: ARP and a first lost packet are no failure.
fn reachable(fabric: &Fabric, from: Option<usize>, to: std::net::Ipv4Addr) -> bool {
    (0..5).any(|_| ping(fabric, from, to))
}

#[test]
fn fabric_connects_cuts_and_cleans_up() {
    if !drover_testkit::netns::enter("fabric_connects_cuts_and_cleans_up") {
        return;
    }
    let fabric = Fabric::new(3);
    let names: Vec<String> = fabric
        .nodes()
        .iter()
        .map(|n| n.netns().to_string())
        .collect();
    let (n0, n1, n2) = (
        fabric.node(0).ip(),
        fabric.node(1).ip(),
        fabric.node(2).ip(),
    );
    assert_eq!(n0.to_string(), "192.168.200.11");
    assert_eq!(n2.to_string(), "192.168.200.13");

    // Everyone reaches everyone; a node has no default route.
    assert!(reachable(&fabric, None, n0));
    assert!(reachable(&fabric, Some(0), n1));
    assert!(reachable(&fabric, Some(2), HOST_IP));
    let routes = fabric.node(1).run("ip", &["-4", "route", "show"]);
    assert!(!routes.contains("default"), "{routes}");

    // A partitioned node reaches no one and no one reaches it; the others still talk.
    fabric.partition(1);
    fabric.partition(1);
    assert!(!reachable(&fabric, Some(0), n1));
    assert!(!reachable(&fabric, Some(1), HOST_IP));
    assert!(reachable(&fabric, Some(0), n2));
    fabric.heal(1);
    fabric.heal(1);
    assert!(reachable(&fabric, Some(0), n1));

    // 100% loss is a cut too (whichever way it is injected); 0% removes it.
    let method = fabric.set_loss(2, 100.0);
    eprintln!("loss injected with {method:?}");
    assert!(!reachable(&fabric, Some(0), n2));
    fabric.set_loss(2, 5.0);
    fabric.set_loss(2, 0.0);
    assert!(reachable(&fabric, Some(0), n2));

    drop(fabric);
    let left = drover_testkit::netns::run("ip", &["netns", "list"]);
    for name in &names {
        assert!(!left.contains(name.as_str()), "{name} left: {left}");
    }
    let bridge = std::process::Command::new("ip")
        .args(["link", "show", BRIDGE])
        .output()
        .unwrap();
    assert!(!bridge.status.success(), "the bridge is left");
}
