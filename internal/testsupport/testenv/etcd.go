package testenv

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
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

// StartTLSEtcd is StartEtcd serving clients over TLS only, with a server
// certificate of ca for 127.0.0.1 and the DNS name ServerName; with
// clientCertAuth, clients need a certificate of ca (etcd's user is its
// common name once auth is on).
func StartTLSEtcd(tb testing.TB, ca *testpki.CA, clientCertAuth bool, opts embedetcd.Options) *embedetcd.Server {
	tb.Helper()
	f := ca.Write(tb, tb.TempDir(), ca.Server(tb, "etcd", "127.0.0.1", ServerName))
	opts.ClientTLS = &embedetcd.TLS{CertFile: f.Cert, KeyFile: f.Key}
	if clientCertAuth { // etcd asks for client certificates whenever it has a CA for them
		opts.ClientTLS.CAFile, opts.ClientTLS.ClientCertAuth = f.CA, true
	}
	return StartEtcd(tb, opts)
}

// ServerName is the DNS name in StartTLSEtcd's server certificates.
const ServerName = "etcd.meshrelay.test"
