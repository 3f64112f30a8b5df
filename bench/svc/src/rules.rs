//! kube-proxy-style iptables rules for the benchmark's services, as `iptables-restore`
//! input. I/O-free, so the text is tested on its own.
//!
//! The layout follows kube-proxy's iptables proxier (pkg/proxy/iptables/proxier.go) for
//! ClusterIP services whose endpoints are all ready and remote-or-local pods:
//! `KUBE-SERVICES` holds one rule per service port (matched linearly, in order) jumping to
//! `KUBE-SVC-<hash>`; that chain marks off-cluster sources for masquerade and picks an
//! endpoint with `-m statistic --mode random --probability 1/(n-i)`, jumping to
//! `KUBE-SEP-<hash>`, which DNATs to the endpoint. `KUBE-POSTROUTING` masquerades marked
//! packets. Every sync is `iptables-restore --noflush`: a chain declared in the input is
//! flushed and rewritten, stale chains are deleted with `-X`. A full sync declares every
//! chain; a partial sync (kube-proxy's MinimizeIPTablesRestore, the default since 1.27)
//! rewrites the top-level chains in full and only the service and endpoint chains that
//! changed.
//!
//! kube-proxy names chains with base32(sha256(...)) truncated to 16 characters; here the
//! hash is two FNV-1a rounds, base32-encoded the same way: the names have the same shape
//! and length, which is what the kernel and iptables-restore see.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The masquerade mark kube-proxy uses (`--masquerade-bit 14`).
const MASQ_MARK: &str = "0x4000";

/// One ClusterIP service port of the benchmark, as both proxies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svc {
    /// `namespace/name:port`, kube-proxy's ServicePortName.
    pub name: String,
    /// The cluster IP.
    pub vip: Ipv4Addr,
    /// The service port (TCP).
    pub port: u16,
    /// The ready endpoints, in the order the rules list them.
    pub endpoints: Vec<SocketAddrV4>,
}

impl Svc {
    /// `KUBE-SVC-<hash of name and protocol>`.
    pub fn chain(&self) -> String {
        format!("KUBE-SVC-{}", chain_hash(&format!("{}tcp", self.name)))
    }

    /// `KUBE-SEP-<hash of name, protocol and endpoint>`.
    pub fn sep_chain(&self, ep: &SocketAddrV4) -> String {
        format!("KUBE-SEP-{}", chain_hash(&format!("{}tcp{ep}", self.name)))
    }
}

/// 16 base32 characters (RFC 4648 alphabet) of a 80-bit hash of `s`.
pub fn chain_hash(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let fnv = |seed: u64| {
        s.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let bits = (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x8422_2325));
    (0..16)
        .map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]))
        .collect()
}

/// The `--probability` of the `i`-th of `n` endpoint rules: each rule takes 1/(remaining)
/// of what reaches it, so every endpoint gets 1/n; the last rule has none (it takes the
/// rest). kube-proxy formats it with `%0.10f`.
pub fn probability(i: usize, n: usize) -> Option<String> {
    let remaining = n - i;
    (remaining > 1).then(|| format!("{:.10}", 1.0 / remaining as f64))
}

/// What one `iptables-restore --noflush` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync<'a> {
    /// The first sync: every chain, plus the jumps from the built-in chains (kube-proxy
    /// ensures those with `iptables -I` once; here they are appended in the same
    /// restore, since the built-in chains are not declared and so not flushed).
    Initial,
    /// Every chain rewritten, the given stale chains deleted.
    Full {
        /// Chains no longer used (an endpoint's `KUBE-SEP-*` after it went away).
        deleted: &'a [String],
    },
    /// The top-level chains and the chains of the services at `changed` rewritten, the
    /// given stale chains deleted.
    Partial {
        /// Indices into the services of the ones that changed.
        changed: &'a [usize],
        /// Chains no longer used.
        deleted: &'a [String],
    },
}

/// The `iptables-restore --noflush` input for `services` (in KUBE-SERVICES order) whose
/// pod network is `cluster_cidr`.
pub fn restore_input(services: &[Svc], cluster_cidr: &str, sync: Sync<'_>) -> String {
    let mut out = String::with_capacity(services.len() * 900 + 2048);
    filter_table(&mut out, sync == Sync::Initial);
    out.push_str("*nat\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let rewritten = |i: usize| match sync {
        Sync::Initial | Sync::Full { .. } => true,
        Sync::Partial { changed, .. } => changed.contains(&i),
    };
    let deleted: &[String] = match sync {
        Sync::Initial => &[],
        Sync::Full { deleted } | Sync::Partial { deleted, .. } => deleted,
    };
    // A stale chain is declared (so flushed: -X refuses a chain with rules) and deleted
    // after the rules, as kube-proxy does.
    for chain in deleted {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let written: Vec<&Svc> = services
        .iter()
        .enumerate()
        .filter_map(|(i, s)| rewritten(i).then_some(s))
        .collect();
    for s in &written {
        let _ = writeln!(out, ":{} - [0:0]", s.chain());
        for ep in &s.endpoints {
            let _ = writeln!(out, ":{} - [0:0]", s.sep_chain(ep));
        }
    }
    if sync == Sync::Initial {
        out.push_str(
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
        );
    }
    for s in services {
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{} cluster IP\" -m tcp --dport {} -j {}",
            s.vip,
            s.name,
            s.port,
            s.chain()
        );
    }
    out.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    let _ = writeln!(out, "-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}");
    let _ = writeln!(
        out,
        "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
    );
    let _ = writeln!(out, "-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}");
    out.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n");
    for s in written {
        service_chains(&mut out, s, cluster_cidr);
    }
    for chain in deleted {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    out
}

/// The `KUBE-SVC-*` chain of one service and its `KUBE-SEP-*` chains.
fn service_chains(out: &mut String, s: &Svc, cluster_cidr: &str) {
    let svc_chain = s.chain();
    let _ = writeln!(
        out,
        "-A {svc_chain} ! -s {cluster_cidr} -d {}/32 -p tcp -m comment --comment \"{} cluster IP\" -m tcp --dport {} -j KUBE-MARK-MASQ",
        s.vip, s.name, s.port
    );
    let n = s.endpoints.len();
    for (i, ep) in s.endpoints.iter().enumerate() {
        let stat = probability(i, n)
            .map(|p| format!(" -m statistic --mode random --probability {p}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "-A {svc_chain} -m comment --comment \"{} -> {ep}\"{stat} -j {}",
            s.name,
            s.sep_chain(ep)
        );
    }
    for ep in &s.endpoints {
        let sep = s.sep_chain(ep);
        let _ = writeln!(
            out,
            "-A {sep} -s {}/32 -m comment --comment {} -j KUBE-MARK-MASQ",
            ep.ip(),
            s.name
        );
        let _ = writeln!(
            out,
            "-A {sep} -p tcp -m comment --comment {} -m tcp -j DNAT --to-destination {ep}",
            s.name
        );
    }
}

/// kube-proxy's filter-table chains: written on every sync, small and constant when
/// every service has endpoints (no REJECT rules), with the jumps on the first sync.
fn filter_table(out: &mut String, initial: bool) {
    out.push_str(
        "*filter\n\
         :KUBE-NODEPORTS - [0:0]\n\
         :KUBE-SERVICES - [0:0]\n\
         :KUBE-EXTERNAL-SERVICES - [0:0]\n\
         :KUBE-FORWARD - [0:0]\n\
         :KUBE-PROXY-FIREWALL - [0:0]\n",
    );
    if initial {
        out.push_str(
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
             -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
             -A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
             -A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
             -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
             -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
             -A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        );
    }
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         COMMIT"
    );
}

#[cfg(test)]
mod tests;
