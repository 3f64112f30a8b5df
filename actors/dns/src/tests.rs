use std::net::SocketAddr;

use super::is_self;

#[track_caller]
fn check(upstream: &str, listen: &str, expected: bool) {
    let (u, l): (SocketAddr, SocketAddr) = (upstream.parse().unwrap(), listen.parse().unwrap());
    assert_eq!(is_self(u, l), expected, "{upstream} vs {listen}");
}

#[test]
fn an_upstream_that_is_this_server_is_recognised() {
    check("127.0.0.1:53", "127.0.0.1:53", true);
    check("127.0.0.1:53", "0.0.0.0:53", true);
    check("[::1]:53", "[::]:53", true);
    check("127.0.0.53:53", "127.0.0.1:53", false);
    check("127.0.0.1:5353", "127.0.0.1:53", false);
    check("10.0.0.2:53", "0.0.0.0:53", false);
}
