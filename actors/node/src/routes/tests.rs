use super::*;
use drover_membership::NodeMetadata;

fn local() -> Local {
    Local {
        name: "n0".into(),
        addr: "192.168.200.11".parse().unwrap(),
        cluster: "10.244.0.0/16".parse().unwrap(),
        pod_cidr: "10.244.0.0/24".parse().unwrap(),
    }
}

fn member(name: &str, addr: &str, pod_cidr: &str, state: MemberState) -> Member {
    Member {
        name: name.into(),
        addr: addr.parse().unwrap(),
        metadata: NodeMetadata {
            pod_cidr: pod_cidr.into(),
            ..Default::default()
        }
        .into(),
        state,
    }
}

fn up(name: &str, addr: &str, pod_cidr: &str) -> Member {
    member(name, addr, pod_cidr, MemberState::Alive)
}

fn set(routes: &[(&str, &str)]) -> RouteSet {
    routes
        .iter()
        .map(|(c, v)| (c.parse().unwrap(), v.parse().unwrap()))
        .collect()
}

fn check(members: &[Member], expected: &[(&str, &str)]) {
    assert_eq!(desired(&local(), members), set(expected), "{members:#?}");
}

#[test]
fn routes_follow_peers_pod_cidrs() {
    let me = up("n0", "192.168.200.11:7946", "10.244.0.0/24");
    // Alone: nothing.
    check(std::slice::from_ref(&me), &[]);
    // Two peers: one route each, via their node address.
    check(
        &[
            me.clone(),
            up("n1", "192.168.200.12:7946", "10.244.1.0/24"),
            up("n2", "192.168.200.13:7000", "10.244.2.0/24"),
        ],
        &[
            ("10.244.1.0/24", "192.168.200.12"),
            ("10.244.2.0/24", "192.168.200.13"),
        ],
    );
    // Suspect and Down members keep their route: their pods may still run.
    check(
        &[
            member(
                "n1",
                "192.168.200.12:7946",
                "10.244.1.0/24",
                MemberState::Suspect,
            ),
            member(
                "n2",
                "192.168.200.13:7946",
                "10.244.2.0/24",
                MemberState::Down,
            ),
        ],
        &[
            ("10.244.1.0/24", "192.168.200.12"),
            ("10.244.2.0/24", "192.168.200.13"),
        ],
    );
    // A control-plane member advertises no pod CIDR.
    check(&[up("cp", "192.168.200.1:7946", "")], &[]);
}

#[test]
fn input_from_the_network_is_checked() {
    for bad in [
        // Outside the cluster CIDR, or all of it, or overlapping this node's own.
        up("x", "192.168.200.20:7946", "10.245.1.0/24"),
        up("x", "192.168.200.20:7946", "0.0.0.0/0"),
        up("x", "192.168.200.20:7946", "10.244.0.0/16"),
        up("x", "192.168.200.20:7946", "10.244.0.0/24"),
        up("x", "192.168.200.20:7946", "10.244.0.128/25"),
        // Not canonical, or not a CIDR.
        up("x", "192.168.200.20:7946", "10.244.1.7/24"),
        up("x", "192.168.200.20:7946", "10.244.1.0"),
        up("x", "192.168.200.20:7946", "10.244.1.0/24; reboot"),
        up("x", "192.168.200.20:7946", "fd00::/64"),
        // Next hops that are not another node.
        up("x", "127.0.0.1:7946", "10.244.1.0/24"),
        up("x", "0.0.0.0:7946", "10.244.1.0/24"),
        up("x", "224.0.0.1:7946", "10.244.1.0/24"),
        up("x", "169.254.1.1:7946", "10.244.1.0/24"),
        up("x", "10.244.3.5:7946", "10.244.1.0/24"),
        up("x", "[fd00::1]:7946", "10.244.1.0/24"),
        // This node under its own name or at its own address.
        up("n0", "192.168.200.99:7946", "10.244.1.0/24"),
        up("other", "192.168.200.11:7000", "10.244.1.0/24"),
    ] {
        check(std::slice::from_ref(&bad), &[]);
    }
}

#[test]
fn one_cidr_two_members_picks_the_live_one() {
    // A node that came back under another address: the old identity is Down.
    check(
        &[
            member(
                "n1",
                "192.168.200.12:7946",
                "10.244.1.0/24",
                MemberState::Down,
            ),
            up("n1b", "192.168.200.22:7946", "10.244.1.0/24"),
        ],
        &[("10.244.1.0/24", "192.168.200.22")],
    );
    // Both alive: the smaller name, whatever the order of the list.
    let a = up("n1", "192.168.200.12:7946", "10.244.1.0/24");
    let b = up("n9", "192.168.200.19:7946", "10.244.1.0/24");
    check(
        &[a.clone(), b.clone()],
        &[("10.244.1.0/24", "192.168.200.12")],
    );
    check(&[b, a], &[("10.244.1.0/24", "192.168.200.12")]);
}

fn check_diff(programmed: &[(&str, &str)], want: &[(&str, &str)], expected: &[RouteOp]) {
    assert_eq!(diff(&set(programmed), &set(want)), expected);
}

fn replace(cidr: &str, via: &str) -> RouteOp {
    RouteOp::Replace {
        cidr: cidr.parse().unwrap(),
        via: via.parse().unwrap(),
    }
}

fn delete(cidr: &str) -> RouteOp {
    RouteOp::Delete {
        cidr: cidr.parse().unwrap(),
    }
}

#[test]
fn diff_touches_only_what_changed() {
    let a = ("10.244.1.0/24", "192.168.200.12");
    let b = ("10.244.2.0/24", "192.168.200.13");
    check_diff(&[], &[], &[]);
    check_diff(&[a, b], &[a, b], &[]);
    check_diff(&[], &[a, b], &[replace(a.0, a.1), replace(b.0, b.1)]);
    check_diff(&[a, b], &[b], &[delete(a.0)]);
    // A moved next hop is one replace, not a delete and an add.
    check_diff(
        &[a, b],
        &[a, ("10.244.2.0/24", "192.168.200.23")],
        &[replace("10.244.2.0/24", "192.168.200.23")],
    );
    // Deletions go first.
    check_diff(&[a], &[b], &[delete(a.0), replace(b.0, b.1)]);
}

#[test]
fn a_member_that_leaves_keeps_its_route_until_forgotten() {
    let me = up("n0", "192.168.200.11:7946", "10.244.0.0/24");
    let n1 = up("n1", "192.168.200.12:7946", "10.244.1.0/24");
    let programmed = desired(&local(), &[me.clone(), n1.clone()]);
    // n1 left: Down in the view, the route is unchanged (its pods keep running).
    let left = Member {
        state: MemberState::Down,
        ..n1
    };
    assert_eq!(
        diff(&programmed, &desired(&local(), &[me.clone(), left])),
        []
    );
    // Forgotten: removed.
    assert_eq!(
        diff(&programmed, &desired(&local(), &[me])),
        [delete("10.244.1.0/24")]
    );
}

fn check_parse(output: &str, expected: &[(&str, &str)]) {
    assert_eq!(parse_routes(output), set(expected), "{output}");
}

#[test]
fn parses_ip_route_show() {
    check_parse("", &[]);
    check_parse(
        "10.244.1.0/24 via 192.168.200.12 dev eth0 \n10.244.2.0/24 via 192.168.200.13 dev eth0 onlink \n",
        &[
            ("10.244.1.0/24", "192.168.200.12"),
            ("10.244.2.0/24", "192.168.200.13"),
        ],
    );
    check_parse(
        "10.244.7.9 via 192.168.200.12 dev eth0\n",
        &[("10.244.7.9/32", "192.168.200.12")],
    );
    // No gateway, or garbage: skipped.
    check_parse(
        "10.244.1.0/24 dev drover0 scope link\nnonsense via here\n",
        &[],
    );
}

#[test]
fn ip_arguments_carry_the_protocol() {
    assert_eq!(
        ip_args(&replace("10.244.1.0/24", "192.168.200.12")).join(" "),
        "-4 route replace 10.244.1.0/24 via 192.168.200.12 proto 157"
    );
    assert_eq!(
        ip_args(&delete("10.244.1.0/24")).join(" "),
        "-4 route del 10.244.1.0/24 proto 157"
    );
}

#[test]
fn ops_print_like_ip_route() {
    assert_eq!(
        replace("10.244.1.0/24", "192.168.200.12").to_string(),
        "replace 10.244.1.0/24 via 192.168.200.12"
    );
    assert_eq!(delete("10.244.1.0/24").to_string(), "delete 10.244.1.0/24");
}
