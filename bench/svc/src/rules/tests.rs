use super::*;

fn svc(i: u8, endpoints: &[u8]) -> Svc {
    Svc {
        name: format!("bench/svc-{i}:http"),
        vip: Ipv4Addr::new(10, 96, 0, 10 + i),
        port: 80,
        endpoints: endpoints
            .iter()
            .map(|e| SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, *e), 8080))
            .collect(),
    }
}

#[test]
fn probabilities_give_each_endpoint_an_equal_share() {
    fn check(i: usize, n: usize, expected: Option<&str>) {
        assert_eq!(probability(i, n).as_deref(), expected, "rule {i} of {n}");
    }
    check(0, 1, None);
    check(0, 2, Some("0.5000000000"));
    check(1, 2, None);
    check(0, 3, Some("0.3333333333"));
    check(1, 3, Some("0.5000000000"));
    check(2, 3, None);
    check(0, 4, Some("0.2500000000"));
}

#[test]
fn chain_names_have_kube_proxy_shape_and_differ() {
    fn check(s: &Svc, ep: u8) {
        let svc = s.chain();
        let sep = s.sep_chain(&SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, ep), 8080));
        for (name, prefix) in [(&svc, "KUBE-SVC-"), (&sep, "KUBE-SEP-")] {
            let hash = name.strip_prefix(prefix).unwrap();
            assert_eq!(hash.len(), 16, "{name}");
            assert!(
                hash.bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
                "{name}"
            );
        }
        // iptables limits chain names to 28 characters.
        assert!(svc.len() <= 28 && sep.len() <= 28);
    }
    check(&svc(1, &[]), 1);
    check(&svc(2, &[]), 2);
    assert_ne!(svc(1, &[]).chain(), svc(2, &[]).chain());
    let a = svc(1, &[]);
    assert_ne!(
        a.sep_chain(&SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 1), 8080)),
        a.sep_chain(&SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 2), 8080))
    );
}

/// Counts of (chain declarations, KUBE-SERVICES rules, KUBE-SVC rules, KUBE-SEP rules,
/// built-in chain jumps, -X deletions) in the nat table of a restore input.
fn shape(text: &str) -> [usize; 6] {
    let nat = text.split("*nat\n").nth(1).unwrap();
    let count = |p: &dyn Fn(&str) -> bool| nat.lines().filter(|l| p(l)).count();
    [
        count(&|l| l.starts_with(':')),
        count(&|l| l.starts_with("-A KUBE-SERVICES ")),
        count(&|l| l.starts_with("-A KUBE-SVC-")),
        count(&|l| l.starts_with("-A KUBE-SEP-")),
        count(&|l| {
            l.starts_with("-A PREROUTING")
                || l.starts_with("-A OUTPUT")
                || l.starts_with("-A POSTROUTING")
        }),
        count(&|l| l.starts_with("-X ")),
    ]
}

#[test]
fn syncs_write_the_chains_kube_proxy_writes() {
    let services = [svc(0, &[1, 2, 3]), svc(1, &[4, 5]), svc(2, &[6])];
    let deleted = ["KUBE-SEP-AAAAAAAAAAAAAAAA".to_string()];
    fn check(services: &[Svc], sync: Sync<'_>, expected: [usize; 6]) {
        let text = restore_input(services, "10.244.0.0/14", sync);
        assert_eq!(shape(&text), expected, "{sync:?}:\n{text}");
        assert!(text.ends_with("COMMIT\n"));
        assert_eq!(text.matches("COMMIT\n").count(), 2, "filter and nat");
    }
    // 4 top-level chains + 3 SVC + 6 SEP; one rule per service in KUBE-SERVICES plus
    // the nodeports rule; per service one masquerade rule and one per endpoint; two
    // rules per endpoint chain.
    check(&services, Sync::Initial, [13, 4, 3 + 6, 12, 3, 0]);
    check(
        &services,
        Sync::Full { deleted: &deleted },
        [14, 4, 9, 12, 0, 1],
    );
    // A partial sync rewrites KUBE-SERVICES in full but only service 1's own chains.
    check(
        &services,
        Sync::Partial {
            changed: &[1],
            deleted: &deleted,
        },
        [4 + 1 + 1 + 2, 4, 1 + 2, 4, 0, 1],
    );
    check(
        &services,
        Sync::Partial {
            changed: &[],
            deleted: &[],
        },
        [4, 4, 0, 0, 0, 0],
    );
}

#[test]
fn rules_match_kube_proxy_text() {
    let s = svc(0, &[1, 2]);
    let text = restore_input(
        std::slice::from_ref(&s),
        "10.244.0.0/14",
        Sync::Full { deleted: &[] },
    );
    let (svc_chain, sep1) = (
        s.chain(),
        s.sep_chain(&SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 1), 8080)),
    );
    for line in [
        format!(
            "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"bench/svc-0:http cluster IP\" -m tcp --dport 80 -j {svc_chain}"
        ),
        format!(
            "-A {svc_chain} ! -s 10.244.0.0/14 -d 10.96.0.10/32 -p tcp -m comment --comment \"bench/svc-0:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ"
        ),
        format!(
            "-A {svc_chain} -m comment --comment \"bench/svc-0:http -> 10.244.0.1:8080\" -m statistic --mode random --probability 0.5000000000 -j {sep1}"
        ),
        format!(
            "-A {sep1} -s 10.244.0.1/32 -m comment --comment bench/svc-0:http -j KUBE-MARK-MASQ"
        ),
        format!(
            "-A {sep1} -p tcp -m comment --comment bench/svc-0:http -m tcp -j DNAT --to-destination 10.244.0.1:8080"
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line}\nin:\n{text}"
        );
    }
    // The nodeports rule is the last of KUBE-SERVICES, as kube-proxy requires.
    let last = text
        .lines()
        .rfind(|l| l.starts_with("-A KUBE-SERVICES "))
        .unwrap();
    assert!(last.ends_with("-j KUBE-NODEPORTS"), "{last}");
}
