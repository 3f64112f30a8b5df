// SPDX-License-Identifier: GPL-2.0
// drover's socket-level service load balancer: cgroup sock_addr programs that rewrite a
// Service VIP:port to a backend when a socket connects (TCP, connected UDP) or sends
// (unconnected UDP), and show the VIP back to the application on recvmsg/getpeername.
// Translating at the socket means no per-packet NAT and no conntrack.
//
// NodePort: a services entry with VIP 0.0.0.0 is a nodePort, reached at any address in
// `node_ips` (and 127.0.0.0/8 from the host's own network namespace). Sockets on the
// node (and in pods) are translated here like a VIP; packets from outside the node are
// translated by the TC programs in nodeport.bpf.h, included at the end of this file so
// both share the maps and pick().
//
// Byte order: addresses and ports are stored in network byte order, exactly as the
// kernel hands them in struct bpf_sock_addr, so the programs copy them without swaps.
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ECONNREFUSED 111
#define MAX_SLOTS 1024

// Key of the services map: a VIP, port and IP protocol (IPPROTO_TCP/UDP).
struct svc_key {
	__u32 vip;
	__u16 port;
	__u8 proto;
	__u8 pad;
};

// A service: its id (keys its slots), how many slots it has (0: no ready backend, so
// connect fails with ECONNREFUSED), and the ClientIP affinity timeout (0: none).
struct svc_val {
	__u32 id;
	__u32 slots;
	__u32 affinity_secs;
	__u32 pad;
};

struct slot_key {
	__u32 id;
	__u32 slot;
};

struct backend {
	__u32 ip;
	__u16 port;
	__u16 pad;
};

// Affinity is keyed by the client's network namespace cookie: at connect() the source
// address is not chosen yet, and one pod (one client IP) is one network namespace.
struct aff_key {
	__u64 client;
	__u32 id;
	__u32 pad;
};

struct aff_val {
	__u32 ip;
	__u16 port;
	__u16 pad;
	__u64 ts_ns;
};

// Reverse translation: this socket talked to this backend on behalf of that VIP.
struct rev_key {
	__u64 cookie;
	__u32 ip;
	__u16 port;
	__u16 pad;
};

struct rev_val {
	__u32 vip;
	__u16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 65536);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 262144);
	__type(key, struct slot_key);
	__type(value, struct backend);
} slots SEC(".maps");

// Which backends a service has now, so an affinity entry naming a removed backend is ignored.
struct member_key {
	__u32 id;
	__u32 ip;
	__u16 port;
	__u16 pad;
	__u32 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 262144);
	__type(key, struct member_key);
	__type(value, __u32);
} members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 65536);
	__type(key, struct aff_key);
	__type(value, struct aff_val);
} affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 262144);
	__type(key, struct rev_key);
	__type(value, struct rev_val);
} rev_nat SEC(".maps");

// What the pinned maps were made by: [0] a hash of the object that loaded the programs,
// [1] the map layout version (MAPS_LAYOUT in lib.rs; bump both when a map's key, value
// or type changes). The loader swaps programs in place when only [0] differs.
// [2] the network namespace cookie of the host (the loader's), where 127.0.0.1:nodePort
// reaches a NodePort as under kube-proxy; in a pod, localhost stays the pod's own.
#define META_HOST_NETNS 2
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} meta SEC(".maps");

// The node's own IPv4 addresses: a nodePort is reached at any of them.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} node_ips SEC(".maps");

// Picks a backend for the service; returns 0 when there is none. `client` keys ClientIP
// affinity: a network namespace cookie at the socket, the source address at TC.
static __always_inline int pick(__u64 client, const struct svc_val *svc, struct backend *out)
{
	struct aff_key ak = {};
	struct slot_key sk = {};
	struct backend *be;
	__u64 now = 0;

	if (svc->affinity_secs) {
		ak.client = client;
		ak.id = svc->id;
		now = bpf_ktime_get_ns();
		struct aff_val *av = bpf_map_lookup_elem(&affinity, &ak);
		if (av && now - av->ts_ns < (__u64)svc->affinity_secs * 1000000000ULL) {
			struct member_key mk = { .id = svc->id, .ip = av->ip, .port = av->port };
			if (bpf_map_lookup_elem(&members, &mk)) {
				out->ip = av->ip;
				out->port = av->port;
				av->ts_ns = now;
				return 1;
			}
		}
	}
	if (svc->slots == 0 || svc->slots > MAX_SLOTS)
		return 0;
	sk.id = svc->id;
	sk.slot = bpf_get_prandom_u32() % svc->slots;
	be = bpf_map_lookup_elem(&slots, &sk);
	if (!be)
		return 0;
	out->ip = be->ip;
	out->port = be->port;
	if (svc->affinity_secs) {
		struct aff_val nv = { .ip = be->ip, .port = be->port, .ts_ns = now };
		bpf_map_update_elem(&affinity, &ak, &nv, BPF_ANY);
	}
	return 1;
}

// Whether `ip` is this node to the socket: one of its addresses, or (from the host's
// network namespace only) 0.0.0.0 or 127.0.0.0/8.
static __always_inline int node_addr(struct bpf_sock_addr *ctx, __u32 ip)
{
	__u32 k = META_HOST_NETNS;
	__u64 *host;

	if (bpf_map_lookup_elem(&node_ips, &ip))
		return 1;
	if (ip != 0 && (ip & bpf_htonl(0xff000000)) != bpf_htonl(0x7f000000))
		return 0;
	host = bpf_map_lookup_elem(&meta, &k);
	return host && *host && *host == bpf_get_netns_cookie(ctx);
}

// Translates a destination: returns -1 when it is no service (leave it), 0 when the
// service has no backend (the call fails with ECONNREFUSED at once, as a service without
// endpoints does under kube-proxy, never a hang), 1 with the backend in *out.
static __always_inline int translate(struct bpf_sock_addr *ctx, __u32 ip, __u32 port,
				     struct backend *out)
{
	struct svc_key key = {
		.vip = ip,
		.port = (__u16)port,
		.proto = (__u8)ctx->protocol,
	};
	struct svc_val *svc = 0;

	// 0.0.0.0 and 255.255.255.255 key nodePort entries, never a VIP.
	if (ip != 0 && ip != 0xffffffff)
		svc = bpf_map_lookup_elem(&services, &key);
	if (!svc && node_addr(ctx, ip)) {
		key.vip = 0;
		svc = bpf_map_lookup_elem(&services, &key);
	}
	if (!svc)
		return -1;
	if (!pick(bpf_get_netns_cookie(ctx), svc, out)) {
		bpf_set_retval(-ECONNREFUSED);
		return 0;
	}
	struct rev_key rk = { .cookie = bpf_get_socket_cookie(ctx), .ip = out->ip, .port = out->port };
	struct rev_val rv = { .vip = ip, .port = key.port };
	bpf_map_update_elem(&rev_nat, &rk, &rv, BPF_ANY);
	return 1;
}

// The VIP a translated socket's backend stands for, if any.
static __always_inline struct rev_val *reverse(struct bpf_sock_addr *ctx, __u32 ip, __u32 port)
{
	struct rev_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.ip = ip,
		.port = (__u16)port,
	};
	return bpf_map_lookup_elem(&rev_nat, &rk);
}

static __always_inline int forward4(struct bpf_sock_addr *ctx)
{
	struct backend be = {};
	int r = translate(ctx, ctx->user_ip4, ctx->user_port, &be);

	if (r == 0)
		return 0;
	if (r == 1) {
		ctx->user_ip4 = be.ip;
		ctx->user_port = be.port;
	}
	return 1;
}

static __always_inline void restore4(struct bpf_sock_addr *ctx)
{
	struct rev_val *rv = reverse(ctx, ctx->user_ip4, ctx->user_port);

	if (rv) {
		ctx->user_ip4 = rv->vip;
		ctx->user_port = rv->port;
	}
}

// IPv6 sockets reach IPv4 services through v4-mapped addresses (::ffff:a.b.c.d), as
// dual-stack runtimes (the JVM, for one) open AF_INET6 sockets for everything.
static __always_inline int v4mapped(struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
	       ctx->user_ip6[2] == bpf_htonl(0xffff);
}

static __always_inline int forward6(struct bpf_sock_addr *ctx)
{
	struct backend be = {};
	int r;

	if (!v4mapped(ctx))
		return 1;
	r = translate(ctx, ctx->user_ip6[3], ctx->user_port, &be);
	if (r == 0)
		return 0;
	if (r == 1) {
		ctx->user_ip6[3] = be.ip;
		ctx->user_port = be.port;
	}
	return 1;
}

static __always_inline void restore6(struct bpf_sock_addr *ctx)
{
	if (!v4mapped(ctx))
		return;
	struct rev_val *rv = reverse(ctx, ctx->user_ip6[3], ctx->user_port);

	if (rv) {
		ctx->user_ip6[3] = rv->vip;
		ctx->user_port = rv->port;
	}
}

SEC("cgroup/connect4")
int drover_connect4(struct bpf_sock_addr *ctx)
{
	return forward4(ctx);
}

SEC("cgroup/sendmsg4")
int drover_sendmsg4(struct bpf_sock_addr *ctx)
{
	return forward4(ctx);
}

SEC("cgroup/recvmsg4")
int drover_recvmsg4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int drover_getpeername4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return 1;
}

SEC("cgroup/connect6")
int drover_connect6(struct bpf_sock_addr *ctx)
{
	return forward6(ctx);
}

SEC("cgroup/sendmsg6")
int drover_sendmsg6(struct bpf_sock_addr *ctx)
{
	return forward6(ctx);
}

SEC("cgroup/recvmsg6")
int drover_recvmsg6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int drover_getpeername6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return 1;
}

#include "nodeport.bpf.h"

char LICENSE[] SEC("license") = "GPL";
