/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * meshrelay.h: the one definition of every map key and value the node
 * datapath shares between the kernel programs (meshrelay.c) and the node
 * agent (package nodeagent/datapath, whose Go types bpf2go generates from
 * the structs below).
 *
 * Rules for every struct in this file:
 *   - fixed size, no implicit padding: every hole is an explicit `pad`
 *     field that writers set to zero (hash map keys compare all bytes);
 *   - addresses are 16 bytes: IPv6 as is, IPv4 as the v4-mapped address
 *     ::ffff:a.b.c.d;
 *   - ports are in network byte order (__be16), exactly as the socket
 *     address the programs rewrite.
 *
 * Changing any layout changes the layout hash the agent computes, which
 * makes it create fresh maps beside the old ones (see layout.go).
 */
#ifndef MESHRELAY_H
#define MESHRELAY_H

#include <linux/types.h>

/* Address families as in <sys/socket.h> (not includable for -target bpf). */
#define MR_AF_INET 2
#define MR_AF_INET6 10

/*
 * Upper bound of slots per frontend; the agent never writes more. A
 * frontend of n backends has max(1024, 4n) slots at most (see
 * nodeagent/datapath/slots.go), so every backend of a service of up to
 * 262,144 backends has a slot.
 */
#define MR_MAX_SLOTS (1U << 20)

/*
 * frontends: (service VIP, service port, protocol) -> frontend.
 * Agent-written, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC, resizable (the
 * inner map of a one-slot BPF_MAP_TYPE_ARRAY_OF_MAPS).
 */
struct frontend_key {
	__u8 addr[16]; /* VIP, IPv4 v4-mapped */
	__be16 port;   /* service port, network order */
	__u8 proto;    /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 pad;      /* zero */
};

struct frontend_value {
	__u32 frontend_id; /* names the frontend's slots */
	__u32 slot_count;  /* slots 0..slot_count-1 exist; 0 = no backends */
};

/*
 * slots: (frontend, slot) -> backend. A backend with weight w occupies a
 * number of slots proportional to w; the programs pick one slot uniformly.
 * Agent-written, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC, resizable (the
 * inner map of a one-slot BPF_MAP_TYPE_ARRAY_OF_MAPS).
 */
struct slot_key {
	__u32 frontend_id;
	__u32 slot;
};

struct slot_value {
	__u32 backend_id;
};

/*
 * backends: backend id -> (address, target port). One id per distinct
 * (address, target port); frontends of different services may share it.
 * Agent-written, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC, resizable (the
 * inner map of a one-slot BPF_MAP_TYPE_ARRAY_OF_MAPS).
 */
struct backend_key {
	__u32 backend_id;
};

struct backend_value {
	__u8 addr[16]; /* IPv4 v4-mapped */
	__be16 port;   /* target port, network order */
	__u8 family;   /* MR_AF_INET or MR_AF_INET6 */
	__u8 pad;      /* zero */
};

/*
 * rev_nat: (socket cookie, backend address, backend port) -> the VIP and
 * port the socket asked for. Written by connect/sendmsg, read by
 * recvmsg/getpeername. Kernel-written, BPF_MAP_TYPE_LRU_HASH, resizable
 * (slot 0 of a two-slot BPF_MAP_TYPE_ARRAY_OF_MAPS; slot 1 holds the map
 * being replaced during a resize).
 */
struct revnat_key {
	__u64 cookie;
	__u8 addr[16];
	__be16 port;
	__u8 pad[6];
};

struct revnat_value {
	__u8 addr[16];
	__be16 port;
	__u8 pad[6];
	__u64 used_ns; /* ktime (CLOCK_MONOTONIC) of the write or a later use, refreshed at most once a second */
};

/*
 * service_cidrs: the ranges service VIPs are allocated from. A miss inside
 * them is reported to the agent (on-demand discovery). Agent-written,
 * BPF_MAP_TYPE_LPM_TRIE; IPv4 ranges are v4-mapped (prefixlen + 96).
 */
struct cidr_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/*
 * miss_limit: address -> ktime (ns) of its last miss report; at most one
 * report per address per interval. Kernel-written, BPF_MAP_TYPE_LRU_HASH.
 */
struct miss_key {
	__u8 addr[16];
};

/* miss_reports ring buffer record. */
struct miss_report {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/*
 * usage: frontend id -> ktime (ns, CLOCK_MONOTONIC) of its last use,
 * refreshed at most once a second. Kernel-written, BPF_MAP_TYPE_LRU_HASH,
 * resizable like rev_nat.
 */
struct usage_key {
	__u32 frontend_id;
};

struct usage_value {
	__u64 last_used_ns;
};

#endif /* MESHRELAY_H */
