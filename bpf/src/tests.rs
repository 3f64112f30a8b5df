use super::*;

/// Checks that a service key encodes to the C `struct svc_key` bytes and back.
fn check(k: ServiceKey, expected: [u8; 8]) {
    assert_eq!(svc_key(&k), expected, "{k:?}");
    assert_eq!(decode_svc_key(&expected), Some(k));
}

#[test]
fn service_keys_are_network_order_as_the_kernel_hands_them() {
    check(
        ServiceKey {
            vip: Ipv4Addr::new(10, 96, 0, 10),
            port: 80,
            proto: Protocol::Tcp,
        },
        [10, 96, 0, 10, 0, 80, 6, 0],
    );
    check(
        ServiceKey {
            vip: Ipv4Addr::new(10, 96, 1, 2),
            port: 5353,
            proto: Protocol::Udp,
        },
        [10, 96, 1, 2, 0x14, 0xe9, 17, 0],
    );
    // A nodePort: VIP 0.0.0.0, the key the C programs build for node addresses.
    check(
        ServiceKey::node_port(30080, Protocol::Tcp),
        [0, 0, 0, 0, 0x75, 0x80, 6, 0],
    );
    assert!(ServiceKey::node_port(30080, Protocol::Udp).is_node_port());
    check(
        ServiceKey::node_port_external(30080, Protocol::Udp),
        [255, 255, 255, 255, 0x75, 0x80, 17, 0],
    );
    assert!(ServiceKey::node_port_external(30080, Protocol::Tcp).is_node_port());
    // A protocol the programs never write is no service key.
    assert_eq!(decode_svc_key(&[10, 96, 0, 1, 0, 80, 132, 0]), None);
}

#[test]
fn values_round_trip() {
    let v = SvcVal {
        id: 7,
        slots: 10,
        affinity_secs: 10_800,
    };
    assert_eq!(SvcVal::decode(&v.encode()), v);
    let a = SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 5), 8080);
    assert_eq!(backend_bytes(&a), [10, 244, 0, 5, 0x1f, 0x90, 0, 0]);
    assert_eq!(decode_backend(&backend_bytes(&a)), a);
}
