// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * meshrelay.c: the node datapath's cgroup socket programs.
 *
 * connect4/6 and sendmsg4/6 translate a service VIP:port to one of its
 * backends before the kernel routes the packet (socket-level load
 * balancing); recvmsg4/6 and getpeername4/6 show the application the VIP
 * again. A connect to an unknown address inside the service CIDRs is
 * reported to the node agent through a ring buffer (on-demand discovery).
 * Every program allows the operation (returns 1): on any miss the socket
 * simply keeps the address the application gave.
 *
 * Map layouts live in meshrelay.h. The node agent creates and pins the maps
 * before it loads these programs (package nodeagent/datapath).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "meshrelay.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* One report per address per interval; the loader may override it. */
const volatile __u64 miss_interval_ns = 10ULL * 1000 * 1000 * 1000;

#define USAGE_REFRESH_NS (1000ULL * 1000 * 1000)

/*
 * The agent-written maps are resizable: each is an inner hash map held in
 * slot 0 of a one-entry BPF_MAP_TYPE_ARRAY_OF_MAPS. The agent grows or
 * shrinks one by creating a new inner map, copying the entries into it and
 * replacing slot 0 in one update, so a program run sees either the old map
 * or the complete new one (see nodeagent/datapath/resize.go). The inner
 * max_entries below are the default limits a map grows to; the agent
 * creates every inner map itself, at the size it needs.
 */
/*
 * clang writes only a forward declaration into BTF for a struct reached
 * through the inner map templates below; this never-read constant makes
 * the full layouts part of the object's BTF (the loader and bpf2go need
 * them).
 */
const volatile struct {
	struct frontend_value fv;
	struct slot_key sk;
	struct slot_value sv;
	struct backend_key bk;
	struct backend_value bv;
	struct revnat_key rk;
	struct revnat_value rv;
	struct usage_key uk;
	struct usage_value uv;
} layout_anchor;

struct frontends_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1048576);
	__type(key, struct frontend_key);
	__type(value, struct frontend_value);
};

struct slots_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16777216);
	__type(key, struct slot_key);
	__type(value, struct slot_value);
};

struct backends_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4194304);
	__type(key, struct backend_key);
	__type(value, struct backend_value);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct frontends_inner);
} frontends_outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct slots_inner);
} slots_outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct backends_inner);
} backends_outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 64);
	__type(key, struct cidr_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} service_cidrs SEC(".maps");

/*
 * rev_nat is kernel-written and resizable too: slot 0 of rev_nat_outer is
 * the map the programs write, slot 1 (empty but during a resize) the map it
 * replaces, which they still read. The agent installs a larger (smaller)
 * map in slot 0 after moving the old one to slot 1, copies the old
 * entries into it without overwriting newer ones, and empties slot 1 at its
 * next check (see nodeagent/datapath/lru.go): an open connection finds its
 * entry in one of the two throughout.
 */
struct rev_nat_inner {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1048576);
	__type(key, struct revnat_key);
	__type(value, struct revnat_value);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct rev_nat_inner);
} rev_nat_outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, struct miss_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} miss_limit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} miss_reports SEC(".maps");

/* miss_drops[0] counts the miss reports lost because miss_reports was
 * full: user space adds it to the misses it dropped itself. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} miss_drops SEC(".maps");

/* usage is resizable like rev_nat: slot 0 written and read, slot 1 read. */
struct usage_inner {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1048576);
	__type(key, struct usage_key);
	__type(value, struct usage_value);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct usage_inner);
} usage_outer SEC(".maps");


static __always_inline void addr_from_ip4(__u8 addr[16], __u32 ip4)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip4, 4);
}

static __always_inline __u32 ip4_from_addr(const __u8 addr[16])
{
	__u32 ip4;

	__builtin_memcpy(&ip4, &addr[12], 4);
	return ip4;
}

static __always_inline int addr_is_v4mapped(const __u8 addr[16])
{
	__u64 hi;
	__u32 mid;

	__builtin_memcpy(&hi, &addr[0], 8);
	__builtin_memcpy(&mid, &addr[8], 4);
	return hi == 0 && mid == bpf_htonl(0x0000ffff);
}

static __always_inline void addr_from_ctx6(__u8 addr[16], struct bpf_sock_addr *ctx)
{
	__u32 w;

	w = ctx->user_ip6[0];
	__builtin_memcpy(&addr[0], &w, 4);
	w = ctx->user_ip6[1];
	__builtin_memcpy(&addr[4], &w, 4);
	w = ctx->user_ip6[2];
	__builtin_memcpy(&addr[8], &w, 4);
	w = ctx->user_ip6[3];
	__builtin_memcpy(&addr[12], &w, 4);
}

static __always_inline void addr_to_ctx6(struct bpf_sock_addr *ctx, const __u8 addr[16])
{
	__u32 w;

	__builtin_memcpy(&w, &addr[0], 4);
	ctx->user_ip6[0] = w;
	__builtin_memcpy(&w, &addr[4], 4);
	ctx->user_ip6[1] = w;
	__builtin_memcpy(&w, &addr[8], 4);
	ctx->user_ip6[2] = w;
	__builtin_memcpy(&w, &addr[12], 4);
	ctx->user_ip6[3] = w;
}

static __always_inline void touch_usage(__u32 frontend_id)
{
	struct usage_key key = { .frontend_id = frontend_id };
	struct usage_value fresh = { .last_used_ns = bpf_ktime_get_ns() };
	struct usage_value *last;
	__u32 current = 0;
	void *usage;

	/* An entry only in slot 1 (a resize in progress) gets a fresh one in slot 0. */
	usage = bpf_map_lookup_elem(&usage_outer, &current);
	if (!usage)
		return;
	last = bpf_map_lookup_elem(usage, &key);
	if (last) {
		if (fresh.last_used_ns - last->last_used_ns >= USAGE_REFRESH_NS)
			last->last_used_ns = fresh.last_used_ns;
		return;
	}
	bpf_map_update_elem(usage, &key, &fresh, BPF_ANY);
}

/*
 * fill_report is a real (not inlined) function so that struct miss_report,
 * which no map declares, is part of the object's BTF for bpf2go.
 */
static __noinline void fill_report(struct miss_report *r, const struct frontend_key *fk)
{
	__builtin_memcpy(r->addr, fk->addr, 16);
	r->port = fk->port;
	r->proto = fk->proto;
	r->pad = 0;
}

static __always_inline void report_miss(const struct frontend_key *fk)
{
	struct cidr_key ck = { .prefixlen = 128 };
	struct miss_key mk = {};
	struct miss_report *r;
	__u64 now, *last;

	__builtin_memcpy(ck.addr, fk->addr, 16);
	if (!bpf_map_lookup_elem(&service_cidrs, &ck))
		return;

	now = bpf_ktime_get_ns();
	__builtin_memcpy(mk.addr, fk->addr, 16);
	last = bpf_map_lookup_elem(&miss_limit, &mk);
	if (last) {
		if (now - *last < miss_interval_ns)
			return;
		*last = now;
	} else if (bpf_map_update_elem(&miss_limit, &mk, &now, BPF_NOEXIST)) {
		/* Another CPU reported this address just now. */
		return;
	}

	r = bpf_ringbuf_reserve(&miss_reports, sizeof(*r), 0);
	if (!r) {
		__u32 zero = 0;
		__u64 *drops = bpf_map_lookup_elem(&miss_drops, &zero);

		if (drops)
			__sync_fetch_and_add(drops, 1);
		return;
	}
	fill_report(r, fk);
	bpf_ringbuf_submit(r, 0);
}

/*
 * pick_backend looks the frontend up and chooses a backend. It returns
 * NULL when the address is no service (after reporting a miss inside the
 * service CIDRs), when the service has no backends, or when the backend's
 * family is not `family`.
 */
static __always_inline const struct backend_value *
pick_backend(const struct frontend_key *fk, __u8 family, __u32 *frontend_id)
{
	struct frontend_value *fe;
	struct slot_key sk = {};
	struct backend_key bk = {};
	struct slot_value *sv;
	struct backend_value *be;
	__u32 count;

	__u32 zero = 0;
	void *frontends, *slots, *backends;

	frontends = bpf_map_lookup_elem(&frontends_outer, &zero);
	slots = bpf_map_lookup_elem(&slots_outer, &zero);
	backends = bpf_map_lookup_elem(&backends_outer, &zero);
	if (!frontends || !slots || !backends)
		return NULL;

	fe = bpf_map_lookup_elem(frontends, fk);
	if (!fe) {
		report_miss(fk);
		return NULL;
	}
	count = fe->slot_count;
	if (count == 0 || count > MR_MAX_SLOTS)
		return NULL;

	sk.frontend_id = fe->frontend_id;
	sk.slot = bpf_get_prandom_u32() % count;
	sv = bpf_map_lookup_elem(slots, &sk);
	if (!sv)
		return NULL;

	bk.backend_id = sv->backend_id;
	be = bpf_map_lookup_elem(backends, &bk);
	if (!be || be->family != family)
		return NULL;

	*frontend_id = sk.frontend_id;
	return be;
}

static __always_inline void remember(struct bpf_sock_addr *ctx, const struct frontend_key *fk,
				     const struct backend_value *be)
{
	struct revnat_key rk = {};
	struct revnat_value rv = {};

	__u32 current = 0;
	void *rev_nat;

	rev_nat = bpf_map_lookup_elem(&rev_nat_outer, &current);
	if (!rev_nat)
		return;
	rk.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(rk.addr, be->addr, 16);
	rk.port = be->port;
	__builtin_memcpy(rv.addr, fk->addr, 16);
	rv.port = fk->port;
	rv.used_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(rev_nat, &rk, &rv, BPF_ANY);
}

/*
 * lookup_rev_nat finds rk in the current rev_nat map, else in the previous
 * one, and marks it used (the agent sizes the map by the entries used
 * recently).
 */
static __always_inline struct revnat_value *lookup_rev_nat(const struct revnat_key *rk)
{
	__u32 current = 0, previous = 1;
	struct revnat_value *rv = NULL;
	void *rev_nat;
	__u64 now;

	rev_nat = bpf_map_lookup_elem(&rev_nat_outer, &current);
	if (rev_nat)
		rv = bpf_map_lookup_elem(rev_nat, rk);
	if (!rv) {
		rev_nat = bpf_map_lookup_elem(&rev_nat_outer, &previous);
		if (!rev_nat)
			return NULL;
		rv = bpf_map_lookup_elem(rev_nat, rk);
		if (!rv)
			return NULL;
	}
	now = bpf_ktime_get_ns();
	if (now - rv->used_ns >= USAGE_REFRESH_NS)
		rv->used_ns = now;
	return rv;
}

static __always_inline int translate4(struct bpf_sock_addr *ctx)
{
	struct frontend_key fk = {};
	const struct backend_value *be;
	__u32 frontend_id = 0;

	addr_from_ip4(fk.addr, ctx->user_ip4);
	fk.port = (__be16)ctx->user_port;
	fk.proto = (__u8)ctx->protocol;

	be = pick_backend(&fk, MR_AF_INET, &frontend_id);
	if (!be)
		return 1;

	remember(ctx, &fk, be);
	ctx->user_ip4 = ip4_from_addr(be->addr);
	ctx->user_port = (__u32)be->port;
	touch_usage(frontend_id);
	return 1;
}

static __always_inline int translate6(struct bpf_sock_addr *ctx)
{
	struct frontend_key fk = {};
	const struct backend_value *be;
	__u32 frontend_id = 0;
	__u8 family;

	addr_from_ctx6(fk.addr, ctx);
	fk.port = (__be16)ctx->user_port;
	fk.proto = (__u8)ctx->protocol;

	/*
	 * A v4-mapped VIP on a dual-stack socket can only reach an IPv4
	 * backend (written back v4-mapped), a native IPv6 VIP an IPv6 one.
	 */
	family = addr_is_v4mapped(fk.addr) ? MR_AF_INET : MR_AF_INET6;
	be = pick_backend(&fk, family, &frontend_id);
	if (!be)
		return 1;

	remember(ctx, &fk, be);
	addr_to_ctx6(ctx, be->addr);
	ctx->user_port = (__u32)be->port;
	touch_usage(frontend_id);
	return 1;
}

static __always_inline void restore4(struct bpf_sock_addr *ctx)
{
	struct revnat_key rk = {};
	struct revnat_value *rv;

	rk.cookie = bpf_get_socket_cookie(ctx);
	addr_from_ip4(rk.addr, ctx->user_ip4);
	rk.port = (__be16)ctx->user_port;
	rv = lookup_rev_nat(&rk);
	if (!rv)
		return;
	ctx->user_ip4 = ip4_from_addr(rv->addr);
	ctx->user_port = (__u32)rv->port;
}

static __always_inline void restore6(struct bpf_sock_addr *ctx)
{
	struct revnat_key rk = {};
	struct revnat_value *rv;

	rk.cookie = bpf_get_socket_cookie(ctx);
	addr_from_ctx6(rk.addr, ctx);
	rk.port = (__be16)ctx->user_port;
	rv = lookup_rev_nat(&rk);
	if (!rv)
		return;
	addr_to_ctx6(ctx, rv->addr);
	ctx->user_port = (__u32)rv->port;
}

SEC("cgroup/connect4")
int mr_connect4(struct bpf_sock_addr *ctx)
{
	return translate4(ctx);
}

SEC("cgroup/connect6")
int mr_connect6(struct bpf_sock_addr *ctx)
{
	return translate6(ctx);
}

SEC("cgroup/sendmsg4")
int mr_sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate4(ctx);
}

SEC("cgroup/sendmsg6")
int mr_sendmsg6(struct bpf_sock_addr *ctx)
{
	return translate6(ctx);
}

SEC("cgroup/recvmsg4")
int mr_recvmsg4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return 1;
}

SEC("cgroup/recvmsg6")
int mr_recvmsg6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int mr_getpeername4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return 1;
}

SEC("cgroup/getpeername6")
int mr_getpeername6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return 1;
}
