// SPDX-License-Identifier: GPL-2.0
// NodePort from outside the node: a TC (tcx) program pair on the node's external
// interfaces. Ingress rewrites a packet to <node address>:<nodePort> into one to a
// backend (DNAT) and remembers the flow; egress rewrites the backend's replies to that
// client back to <node address>:<nodePort>. Included by lb.bpf.c: the services, slots,
// members and affinity maps and pick() are shared with the socket load balancer, so a
// nodePort has the same backends and weights as its ClusterIP.
//
// Only the destination is rewritten (no SNAT), so a backend's replies must leave
// through this node: true for backends on this node (pods behind its bridge, or its own
// addresses), and always under externalTrafficPolicy Local (an external-only entry with
// this node's endpoints). Under Cluster a backend on another node would answer the
// client directly; SNAT for that case is not implemented. IPv4 over Ethernet only; IP
// fragments are not translated.
#include <linux/if_ether.h>
#include <linux/ip.h>

// TCX_NEXT: leave the packet to the programs after this one and then the stack.
#define TC_NEXT -1
// TCX_DROP.
#define TC_DROP 2

// One direction of a flow: the client's address and the address it talks to (the node
// address and nodePort on the forward map, the backend on the reverse map).
struct flow_key {
	__u32 client_ip;
	__u32 addr_ip;
	__u16 client_port;
	__u16 addr_port;
	__u8 proto;
	__u8 pad[3];
};

// Forward: the backend a client's flow to a nodePort was given, so every packet of one
// connection reaches the same backend.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 262144);
	__type(key, struct flow_key);
	__type(value, struct backend);
} np_fwd SEC(".maps");

// Reverse: (client, backend) -> the node address and nodePort the client addressed.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 262144);
	__type(key, struct flow_key);
	__type(value, struct backend);
} np_rev SEC(".maps");

struct pkt {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u32 proto;
	__u32 l4off;
	__u32 csum_off;
};

#define IP_OFF ETH_HLEN
#define IP_CSUM_OFF (IP_OFF + 10)
#define IP_SRC_OFF (IP_OFF + 12)
#define IP_DST_OFF (IP_OFF + 16)

// Reads the IPv4 and TCP/UDP headers; 0 for anything else (left alone).
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip;
	__u16 ports[2];

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (bpf_skb_load_bytes(skb, IP_OFF, &ip, sizeof(ip)) < 0)
		return 0;
	if (ip.version != 4 || ip.ihl < 5)
		return 0;
	// A fragment carries no ports (or not alone): not translated.
	if (ip.frag_off & bpf_htons(0x3fff))
		return 0;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return 0;
	p->l4off = IP_OFF + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, p->l4off, ports, sizeof(ports)) < 0)
		return 0;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->sport = ports[0];
	p->dport = ports[1];
	p->proto = ip.protocol;
	p->csum_off = p->l4off + (ip.protocol == IPPROTO_TCP ? 16 : 6);
	return 1;
}

// Rewrites one address and port (source: ip_off IP_SRC_OFF, port_off 0; destination:
// IP_DST_OFF, 2) and fixes the IP and TCP/UDP checksums (the address is in the L4
// pseudo-header). A UDP checksum of 0 (none) stays 0. Returns non-zero when the packet
// may be left half-rewritten (the caller drops it).
static __always_inline int rewrite(struct __sk_buff *skb, const struct pkt *p, __u32 ip_off,
				   __u32 old_ip, __u32 new_ip, __u32 port_off, __u16 old_port,
				   __u16 new_port)
{
	__u64 mangled = p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, p->csum_off, old_ip, new_ip, mangled | BPF_F_PSEUDO_HDR | 4))
		return -1;
	if (bpf_l4_csum_replace(skb, p->csum_off, old_port, new_port, mangled | 2))
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ip, new_ip, 4))
		return -1;
	if (bpf_skb_store_bytes(skb, ip_off, &new_ip, 4, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, p->l4off + port_off, &new_port, 2, 0))
		return -1;
	return 0;
}

// The backend of a flow: the one it already has while that is still a member of the
// service, else a new pick (first packet, or its backend left). 0 when there is none.
static __always_inline int flow_backend(const struct flow_key *fk, const struct svc_val *svc,
					struct backend *out)
{
	struct backend *known = bpf_map_lookup_elem(&np_fwd, fk);

	if (known) {
		struct member_key mk = { .id = svc->id, .ip = known->ip, .port = known->port };
		if (bpf_map_lookup_elem(&members, &mk)) {
			out->ip = known->ip;
			out->port = known->port;
			return 1;
		}
	}
	// Affinity by the client's address; the top bit keeps these keys apart from the
	// network namespace cookies the socket programs use.
	if (!pick((1ULL << 63) | fk->client_ip, svc, out))
		return 0;
	struct flow_key rk = {
		.client_ip = fk->client_ip,
		.client_port = fk->client_port,
		.addr_ip = out->ip,
		.addr_port = out->port,
		.proto = fk->proto,
	};
	struct backend orig = { .ip = fk->addr_ip, .port = fk->addr_port };
	// Reverse first: a reply must never find the forward entry without it.
	bpf_map_update_elem(&np_rev, &rk, &orig, BPF_ANY);
	bpf_map_update_elem(&np_fwd, fk, out, BPF_ANY);
	return 1;
}

SEC("classifier")
int drover_nodeport_ingress(struct __sk_buff *skb)
{
	struct pkt p = {};
	struct backend be = {};

	if (!parse(skb, &p))
		return TC_NEXT;
	if (!bpf_map_lookup_elem(&node_ips, &p.daddr))
		return TC_NEXT;
	// An external-only entry (VIP 255.255.255.255: externalTrafficPolicy Local, this
	// node's endpoints only) wins over the nodePort entry the sockets use too.
	struct svc_key key = { .vip = 0xffffffff, .port = p.dport, .proto = (__u8)p.proto };
	struct svc_val *svc = bpf_map_lookup_elem(&services, &key);
	if (!svc) {
		key.vip = 0;
		svc = bpf_map_lookup_elem(&services, &key);
	}
	if (!svc)
		return TC_NEXT;
	struct flow_key fk = {
		.client_ip = p.saddr,
		.client_port = p.sport,
		.addr_ip = p.daddr,
		.addr_port = p.dport,
		.proto = (__u8)p.proto,
	};
	// No ready endpoint: dropped (kube-proxy rejects; the client times out here).
	if (!flow_backend(&fk, svc, &be))
		return TC_DROP;
	if (rewrite(skb, &p, IP_DST_OFF, p.daddr, be.ip, 2, p.dport, be.port))
		return TC_DROP;
	return TC_NEXT;
}

SEC("classifier")
int drover_nodeport_egress(struct __sk_buff *skb)
{
	struct pkt p = {};

	if (!parse(skb, &p))
		return TC_NEXT;
	struct flow_key rk = {
		.client_ip = p.daddr,
		.client_port = p.dport,
		.addr_ip = p.saddr,
		.addr_port = p.sport,
		.proto = (__u8)p.proto,
	};
	struct backend *orig = bpf_map_lookup_elem(&np_rev, &rk);
	if (!orig)
		return TC_NEXT;
	__u32 ip = orig->ip;
	__u16 port = orig->port;
	if (rewrite(skb, &p, IP_SRC_OFF, p.saddr, ip, 0, p.sport, port))
		return TC_DROP;
	return TC_NEXT;
}
