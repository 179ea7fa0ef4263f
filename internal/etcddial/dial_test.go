package etcddial_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
)

func dial(t *testing.T, opts etcddial.Options) *clientv3.Client {
	t.Helper()
	opts.Logger = testenv.Logger(t)
	c, err := etcddial.Dial(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// put writes one key with a short deadline: a handshake that fails keeps
// gRPC retrying, and the deadline turns that into an error.
func put(c *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "/meshrelay/v1/test", "x")
	return err
}

// TestTLSClientCertificate: a client with the CA and a client certificate
// reaches an etcd that requires one; the same etcd refuses a client with
// the CA but without a certificate.
func TestTLSClientCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	srv := testenv.StartTLSEtcd(t, ca, true, embedetcd.Options{})
	f := ca.Write(t, t.TempDir(), ca.Client(t, "meshrelay-relay"))
	c := dial(t, etcddial.Options{Endpoints: srv.Endpoints(), CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
	if err := put(c); err != nil {
		t.Fatalf("put with client certificate: %v", err)
	}
	anon := dial(t, etcddial.Options{Endpoints: srv.Endpoints(), CAFile: f.CA})
	if err := put(anon); err == nil {
		t.Fatal("put without a client certificate succeeded against --client-cert-auth")
	}
}

// TestTLSRefusesPlaintextEndpoint: with TLS configured, an http:// (or
// scheme-less) endpoint is refused before anything is dialed.
func TestTLSRefusesPlaintextEndpoint(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	f := ca.Write(t, t.TempDir(), ca.Client(t, "meshrelay-relay"))
	for _, ep := range []string{"http://127.0.0.1:2379", "127.0.0.1:2379"} {
		_, err := etcddial.Dial(etcddial.Options{Endpoints: []string{"https://127.0.0.1:2379", ep}, CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
		if err == nil || !strings.Contains(err.Error(), "refusing plaintext") {
			t.Errorf("endpoint %s with TLS: err = %v, want a refusal", ep, err)
		}
	}
}

// TestTLSVerifiesPeer: a server whose certificate another CA signed, or
// whose certificate does not hold the verified name, is not talked to; the
// DNS name of the certificate verifies when dialing its IP with ServerName.
func TestTLSVerifiesPeer(t *testing.T) {
	ca, other := testpki.NewCA(t, "ca"), testpki.NewCA(t, "other")
	srv := testenv.StartTLSEtcd(t, ca, false, embedetcd.Options{})
	good := ca.Write(t, t.TempDir(), ca.Client(t, "c"))
	otherCA := other.Write(t, t.TempDir(), other.Client(t, "c")).CA
	opts := func(caFile, serverName string) etcddial.Options {
		return etcddial.Options{Endpoints: srv.Endpoints(), CAFile: caFile, CertFile: good.Cert, KeyFile: good.Key, ServerName: serverName}
	}
	if err := put(dial(t, opts(otherCA, ""))); err == nil {
		t.Error("a server certificate of an untrusted CA was accepted")
	}
	if err := put(dial(t, opts(good.CA, "other.meshrelay.test"))); err == nil {
		t.Error("a server certificate without the verified name was accepted")
	}
	if err := put(dial(t, opts(good.CA, testenv.ServerName))); err != nil {
		t.Errorf("server name %s: %v", testenv.ServerName, err)
	}
	if err := put(dial(t, opts(good.CA, ""))); err != nil {
		t.Errorf("IP address of the endpoint: %v", err)
	}
}

// TestTLSFilesReplacedWithoutRestart: the CA and the client certificate
// are replaced on disk (a new CA: the old files cannot reach the new
// server, nor the new files the old one) and etcd restarts on the same
// address with a server certificate of the new CA; the same client keeps
// working, reading the new files for its new connection.
func TestTLSFilesReplacedWithoutRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	ca1, ca2 := testpki.NewCA(t, "ca-1"), testpki.NewCA(t, "ca-2")
	dir := t.TempDir()
	srv := testenv.StartTLSEtcd(t, ca1, true, embedetcd.Options{Dir: t.TempDir()})
	f := ca1.Write(t, dir, ca1.Client(t, "meshrelay-agent"))
	c := dial(t, etcddial.Options{Endpoints: srv.Endpoints(), CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
	if err := put(c); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	ca2.Write(t, dir, ca2.Client(t, "meshrelay-agent"))
	u := srv.Endpoints()[0]
	testenv.StartTLSEtcd(t, ca2, true, embedetcd.Options{Dir: srv.Dir(), ClientURL: u})
	testenv.Eventually(t, "put after the files were replaced", func() error { return put(c) })

	// Control: the old files are refused by the new server.
	old := ca1.Write(t, t.TempDir(), ca1.Client(t, "meshrelay-agent"))
	if err := put(dial(t, etcddial.Options{Endpoints: []string{u}, CAFile: old.CA, CertFile: old.Cert, KeyFile: old.Key})); err == nil {
		t.Fatal("the old CA's files reached the new server")
	}
}

// TestTLSBrokenFileKeepsLastGood: a certificate file replaced by garbage
// does not break new connections: the last good material stays in use.
func TestTLSBrokenFileKeepsLastGood(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	ca := testpki.NewCA(t, "ca")
	srv := testenv.StartTLSEtcd(t, ca, true, embedetcd.Options{Dir: t.TempDir()})
	f := ca.Write(t, t.TempDir(), ca.Client(t, "c"))
	c := dial(t, etcddial.Options{Endpoints: srv.Endpoints(), CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
	if err := put(c); err != nil {
		t.Fatal(err)
	}
	testpki.WriteFile(t, f.Cert, []byte("not a certificate"))
	srv.Close() // the next request needs a new connection
	testenv.StartTLSEtcd(t, ca, true, embedetcd.Options{Dir: srv.Dir(), ClientURL: srv.Endpoints()[0]})
	testenv.Eventually(t, "put with the last good certificate", func() error { return put(c) })
}

// TestPasswordAuth: Username and Password reach etcd: a wrong password is
// refused once auth is on.
func TestPasswordAuth(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	root := testenv.Client(t, srv.Endpoints())
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(dial(t, etcddial.Options{Endpoints: srv.Endpoints(), Username: "root", Password: "rootpw"})); err != nil {
		t.Fatalf("right password: %v", err)
	}
	c, err := etcddial.Dial(etcddial.Options{Endpoints: srv.Endpoints(), Username: "root", Password: "wrong"})
	if err == nil {
		defer c.Close()
		err = put(c)
	}
	if err == nil { // clientv3 authenticates while dialing; either way no request passes
		t.Fatal("wrong password accepted")
	}
}

type recordSetter struct {
	mu  sync.Mutex
	got [][]string
}

func (r *recordSetter) SetEndpoints(eps ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, eps)
}

func (r *recordSetter) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		return nil
	}
	return r.got[len(r.got)-1]
}

func (r *recordSetter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// TestFollowEndpointsFile: a changed file is given to the client; an empty
// file or a plaintext endpoint (with TLS) keeps the current endpoints.
func TestFollowEndpointsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints")
	testpki.WriteFile(t, path, []byte("https://127.0.0.1:1,https://127.0.0.2:1\n"))
	eps, err := etcddial.ReadEndpointsFile(path)
	if err != nil || !slices.Equal(eps, []string{"https://127.0.0.1:1", "https://127.0.0.2:1"}) {
		t.Fatalf("read: %q %v", eps, err)
	}
	var r recordSetter
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		etcddial.FollowEndpointsFile(ctx, &r, path, eps, true, 5*time.Millisecond, testenv.Logger(t))
	}()
	t.Cleanup(func() { cancel(); <-done })

	testpki.WriteFile(t, path, []byte("https://127.0.0.3:1"))
	testenv.EventuallyTrue(t, "new endpoints", func() bool { return slices.Equal(r.last(), []string{"https://127.0.0.3:1"}) })
	for i, body := range []string{"", "http://127.0.0.4:1", " ,\n"} {
		before := r.last()
		testpki.WriteFile(t, path, []byte(body))
		time.Sleep(50 * time.Millisecond) // about ten reads of the refused file
		if got := r.last(); !slices.Equal(got, before) {
			t.Errorf("file %q: endpoints %q given to the client", body, got)
		}
		good := fmt.Sprintf("https://127.0.0.%d:1", 10+i)
		testpki.WriteFile(t, path, []byte(good))
		testenv.EventuallyTrue(t, "good endpoints after "+body, func() bool { return slices.Equal(r.last(), []string{good}) })
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := etcddial.ReadEndpointsFile(path); err == nil {
		t.Error("a missing file read as endpoints")
	}
}
