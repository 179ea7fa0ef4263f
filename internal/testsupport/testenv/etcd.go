package testenv

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
)

// StartEtcd starts an embedded etcd on loopback that the test's cleanup
// stops. The zero Options pick a free port and a temporary directory.
func StartEtcd(tb testing.TB, opts embedetcd.Options) *embedetcd.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	srv, err := embedetcd.Start(ctx, opts)
	if err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

// Client dials endpoints; the test's cleanup closes the client.
func Client(tb testing.TB, endpoints []string) *clientv3.Client {
	tb.Helper()
	c, err := embedetcd.NewClient(endpoints)
	if err != nil {
		tb.Fatalf("dial etcd %v: %v", endpoints, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
