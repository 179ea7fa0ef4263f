package etcdinit

import (
	"context"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster is the part of clientv3.Cluster that MemberEndpoints uses.
type Cluster interface {
	MemberList(ctx context.Context, opts ...clientv3.OpOption) (*clientv3.MemberListResponse, error)
}

// MemberEndpoints returns the client URLs the members advertise (the
// chart's members advertise https://<pod IP>:2379), sorted. A member that
// has not started yet advertises none; a cluster where none does is an
// error, never an empty list.
func MemberEndpoints(ctx context.Context, c Cluster) ([]string, error) {
	r, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	var eps []string
	for _, m := range r.Members {
		eps = append(eps, m.ClientURLs...)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("list etcd members: no member advertises a client URL")
	}
	slices.Sort(eps)
	return slices.Compact(eps), nil
}
