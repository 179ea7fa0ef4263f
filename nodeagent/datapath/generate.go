package datapath

// The programs and map layouts are compiled from ../../bpf with clang 14;
// the outputs (meshrelay_bpfel.go, meshrelay_bpfel.o) are committed so a
// build needs no clang. The include paths name Debian's multiarch
// directories for <asm/types.h>; a missing one is ignored by clang.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package datapath -type frontend_key -type frontend_value -type slot_key -type slot_value -type backend_key -type backend_value -type revnat_key -type revnat_value -type cidr_key -type miss_key -type miss_report -type usage_key -type usage_value meshrelay ../../bpf/meshrelay.c -- -I../../bpf -I/usr/include -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu
