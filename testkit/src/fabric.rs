//! A test network of nodes: named network namespaces on one bridge, for tests that run
//! several node agents (pod routes across nodes, failover, partitions, loss).
//!
//! Only inside a test that already runs in fresh namespaces ([`crate::netns::enter`]):
//! the bridge `fab0` (192.168.200.1/24, the test process's own address on the fabric) is
//! created in the test's network namespace, and node `i` is the namespace `drv<pid>n<i>`
//! with `eth0` (a veth whose peer is on `fab0`) at `192.168.200.(11 + i)/24`, `lo` up and
//! no default route: a node reaches the test process and the other nodes, nothing else.
//!
//! Processes run in a node with [`FabricNode::command`], which enters only the node's
//! network namespace (`nsenter --net`), not `ip netns exec`: that one also remounts
//! `/sys`, which hides the cgroup2 mount runc needs.
//!
//! Faults: [`Fabric::set_loss`] drops a share of a node's outgoing packets (tc netem when
//! the kernel has `sch_netem`, else iptables' `statistic` match), [`Fabric::partition`] cuts
//! a node off (iptables DROP on `eth0`, both ways) and [`Fabric::heal`] undoes it. Dropping
//! the fabric deletes the namespaces and the bridge; stop the processes inside first.

use std::net::Ipv4Addr;
use std::process::Command;

/// The bridge the nodes' veths are attached to.
pub const BRIDGE: &str = "fab0";
/// The test process's address on the fabric.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 1);
/// The node-side interface in every node.
pub const NODE_IFACE: &str = "eth0";
/// Node `i` is at `192.168.200.(FIRST_NODE_OCTET + i)`.
const FIRST_NODE_OCTET: u8 = 11;
/// Most nodes one fabric holds (addresses up to .254).
pub const MAX_NODES: usize = 200;
/// Marks the fabric's iptables rules so heal and loss changes remove exactly them.
const PARTITION_TAG: &str = "drover-fabric-partition";
const LOSS_TAG: &str = "drover-fabric-loss";

/// One node of a [`Fabric`].
#[derive(Clone, Debug)]
pub struct FabricNode {
    netns: String,
    ip: Ipv4Addr,
}

impl FabricNode {
    /// The node's address on the fabric.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The network namespace's name (`ip -n <name> ...`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `program` to be run inside the node's network namespace (the mount namespace and
    /// everything else are the test's).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        cmd
    }

    /// The same for tokio (`kill_on_drop` and async waits).
    pub fn tokio_command(&self, program: &str) -> tokio::process::Command {
        tokio::process::Command::from(self.command(program))
    }

    /// Runs `program args` in the node; its stdout, or a panic saying what failed.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.netns));
        assert!(
            out.status.success(),
            "{program} {args:?} in {}: {out:?}",
            self.netns
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// How a node's loss is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossMethod {
    /// `tc qdisc ... netem loss P%` on the node's `eth0`.
    Netem,
    /// `iptables -m statistic --mode random --probability p -j DROP` on its output.
    Iptables,
}

/// The bridge and the node namespaces; removed on drop.
pub struct Fabric {
    nodes: Vec<FabricNode>,
}

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn must(program: &str, args: &[&str]) {
    let out = sh(program, args);
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
}

impl Fabric {
    /// Creates the bridge and `n` nodes. Panics outside [`crate::netns::enter`]'s child
    /// (the bridge would land in the machine's own namespace) and when `n` is too large.
    pub fn new(n: usize) -> Fabric {
        assert!(
            crate::netns::inside(),
            "Fabric::new only inside drover_testkit::netns::enter"
        );
        assert!(n <= MAX_NODES, "at most {MAX_NODES} fabric nodes");
        must("ip", &["link", "add", BRIDGE, "type", "bridge"]);
        let mut fabric = Fabric { nodes: Vec::new() };
        must(
            "ip",
            &["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE],
        );
        must("ip", &["link", "set", BRIDGE, "up"]);
        let pid = std::process::id();
        for i in 0..n {
            let netns = format!("drv{pid}n{i}");
            let ip = Ipv4Addr::new(192, 168, 200, FIRST_NODE_OCTET + i as u8);
            // Pushed first, so a failure below still deletes what was made.
            must("ip", &["netns", "add", &netns]);
            fabric.nodes.push(FabricNode {
                netns: netns.clone(),
                ip,
            });
            let host_side = format!("fabv{i}");
            must(
                "ip",
                &[
                    "link", "add", &host_side, "type", "veth", "peer", "name", NODE_IFACE, "netns",
                    &netns,
                ],
            );
            must("ip", &["link", "set", &host_side, "master", BRIDGE, "up"]);
            let ipn = |args: &[&str]| {
                let mut all = vec!["-n", netns.as_str()];
                all.extend_from_slice(args);
                must("ip", &all);
            };
            ipn(&["link", "set", "lo", "up"]);
            ipn(&["addr", "add", &format!("{ip}/24"), "dev", NODE_IFACE]);
            ipn(&["link", "set", NODE_IFACE, "up"]);
        }
        fabric
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &FabricNode {
        &self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[FabricNode] {
        &self.nodes
    }

    /// Drops `percent` (0 to 100) of node `i`'s outgoing packets, replacing an earlier
    /// setting; 0 removes the loss. Returns how it was done: with netem every packet
    /// leaving `eth0` is subject to it; with the iptables fallback, packets the node
    /// itself sends (its agent's gossip and bus traffic), not those it forwards.
    pub fn set_loss(&self, i: usize, percent: f64) -> LossMethod {
        assert!(
            (0.0..=100.0).contains(&percent),
            "loss must be 0 to 100%, got {percent}"
        );
        let node = &self.nodes[i];
        // Whatever was there before, of either kind, goes first.
        let _ = sh(
            "tc",
            &["-n", &node.netns, "qdisc", "del", "dev", NODE_IFACE, "root"],
        );
        delete_tagged(node, LOSS_TAG);
        if percent == 0.0 {
            return LossMethod::Netem;
        }
        // The module may be built but not loaded; no modprobe is fine (then tc fails).
        let _ = Command::new("modprobe").arg("sch_netem").output();
        let netem = sh(
            "tc",
            &[
                "-n",
                &node.netns,
                "qdisc",
                "replace",
                "dev",
                NODE_IFACE,
                "root",
                "netem",
                "loss",
                &format!("{percent}%"),
            ],
        );
        if netem.status.success() {
            return LossMethod::Netem;
        }
        let probability = format!("{}", percent / 100.0);
        node.run(
            "iptables",
            &[
                "-w",
                "-I",
                "OUTPUT",
                "-o",
                NODE_IFACE,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-m",
                "comment",
                "--comment",
                LOSS_TAG,
                "-j",
                "DROP",
            ],
        );
        LossMethod::Iptables
    }

    /// Cuts node `i` off the fabric: every packet in or out of its `eth0` is dropped,
    /// the node's own and its pods' (INPUT, OUTPUT and FORWARD). Idempotent.
    pub fn partition(&self, i: usize) {
        let node = &self.nodes[i];
        for rule in partition_rules() {
            let check = [&["-w", "-C"][..], &rule[..]].concat();
            if node
                .command("iptables")
                .args(&check)
                .output()
                .is_ok_and(|o| o.status.success())
            {
                continue;
            }
            let insert = [&["-w", "-I"][..], &rule[..]].concat();
            node.run("iptables", &insert);
        }
    }

    /// Undoes [`Fabric::partition`]. Idempotent.
    pub fn heal(&self, i: usize) {
        delete_tagged(&self.nodes[i], PARTITION_TAG);
    }
}

/// The node's own traffic (INPUT, OUTPUT) and its pods' (FORWARD), both ways.
fn partition_rules() -> [Vec<&'static str>; 4] {
    let tail = ["-m", "comment", "--comment", PARTITION_TAG, "-j", "DROP"];
    [
        [&["INPUT", "-i", NODE_IFACE][..], &tail[..]].concat(),
        [&["OUTPUT", "-o", NODE_IFACE][..], &tail[..]].concat(),
        [&["FORWARD", "-i", NODE_IFACE][..], &tail[..]].concat(),
        [&["FORWARD", "-o", NODE_IFACE][..], &tail[..]].concat(),
    ]
}

/// Deletes every rule of the node's filter table carrying `tag`.
fn delete_tagged(node: &FabricNode, tag: &str) {
    let Ok(out) = node.command("iptables").args(["-w", "-S"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `-A OUTPUT -o eth0 ... --comment drover-fabric-loss -j DROP`
        let Some(spec) = line.strip_prefix("-A ") else {
            continue;
        };
        if !spec.contains(tag) {
            continue;
        }
        let mut args = vec!["-w", "-D"];
        args.extend(spec.split_whitespace());
        let _ = node.command("iptables").args(&args).output();
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // The namespaces' files under /run/netns are on the machine's filesystem even
        // though the test runs in its own mount namespace: they must go.
        for node in &self.nodes {
            let _ = sh("ip", &["netns", "del", &node.netns]);
        }
        let _ = sh("ip", &["link", "del", BRIDGE]);
    }
}
