package etcdinit_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
	"github.com/meshrelay/meshrelay/relay/etcdinit"
)

var passwords = etcdinit.Options{RootPassword: "root-pw", RelayPassword: "relay-pw", AgentPassword: "agent-pw"}

type secureEtcd struct {
	t         *testing.T
	ca        *testpki.CA
	endpoints []string
	caFile    string
}

func startSecure(t *testing.T, clientCertAuth bool) *secureEtcd {
	ca := testpki.NewCA(t, "etcd-ca")
	srv := testenv.StartTLSEtcd(t, ca, clientCertAuth, embedetcd.Options{})
	caFile := ca.Write(t, t.TempDir(), ca.Client(t, "unused")).CA
	return &secureEtcd{t: t, ca: ca, endpoints: srv.Endpoints(), caFile: caFile}
}

// client dials as user with password, or (cn != "") with a client
// certificate of common name cn, or anonymously.
func (s *secureEtcd) client(cn, user, password string) *clientv3.Client {
	s.t.Helper()
	opts := etcddial.Options{Endpoints: s.endpoints, CAFile: s.caFile, Username: user, Password: password}
	if cn != "" {
		f := s.ca.Write(s.t, s.t.TempDir(), s.ca.Client(s.t, cn))
		opts.CertFile, opts.KeyFile = f.Cert, f.Key
	}
	c, err := etcddial.Dial(opts)
	if err != nil {
		s.t.Fatalf("dial as %q/%q: %v", cn, user, err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func initOnce(t *testing.T, a etcdinit.Auth, opts etcdinit.Options) []string {
	t.Helper()
	opts.Logger = testenv.Logger(t)
	changed, err := etcdinit.Init(ctx(t), a, opts)
	if err != nil {
		t.Fatalf("etcd-init: %v", err)
	}
	return changed
}

// checkAccess asserts what each identity may do after Init.
func checkAccess(t *testing.T, anon, relayC, agentC *clientv3.Client) {
	t.Helper()
	key := "/meshrelay/v1/Kubernetes/specs/00/ns/svc"
	if _, err := relayC.Put(ctx(t), key, "spec"); err != nil {
		t.Fatalf("relay writes under /meshrelay/v1/: %v", err)
	}
	for _, k := range []string{"/other", "/meshrelay/v2/x", "/meshrelay/v1"} {
		if _, err := relayC.Put(ctx(t), k, "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("relay writes %s: err = %v, want permission denied", k, err)
		}
	}
	if _, err := relayC.Delete(ctx(t), "/", clientv3.WithPrefix()); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("relay deletes everything: err = %v, want permission denied", err)
	}
	r, err := agentC.Get(ctx(t), "/meshrelay/v1/", clientv3.WithPrefix())
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "spec" {
		t.Fatalf("agent reads under /meshrelay/v1/: %v %v", r, err)
	}
	if _, err := agentC.Put(ctx(t), key, "forged"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("agent writes: err = %v, want permission denied", err)
	}
	if _, err := agentC.Delete(ctx(t), key); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("agent deletes: err = %v, want permission denied", err)
	}
	if _, err := agentC.Get(ctx(t), "/other"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("agent reads outside /meshrelay/v1/: err = %v, want permission denied", err)
	}
	if _, err := anon.Get(ctx(t), key); err == nil {
		t.Error("anonymous client reads")
	}
	if _, err := anon.Put(ctx(t), key, "forged"); err == nil {
		t.Error("anonymous client writes")
	}
	if r, err := agentC.Get(ctx(t), key); err != nil || string(r.Kvs[0].Value) != "spec" {
		t.Fatalf("value after refused writes: %v %v", r, err)
	}
}

// TestInitPasswordAuth: after Init, over TLS with passwords, the anonymous
// client can neither read nor write, the relay's user writes only under
// /meshrelay/v1/, the agent's user only reads. A second run, as root,
// changes nothing; a changed password is set and works.
func TestInitPasswordAuth(t *testing.T) {
	s := startSecure(t, false)
	admin := s.client("", "", "")
	if changed := initOnce(t, admin.Auth, passwords); len(changed) == 0 {
		t.Fatal("first run changed nothing")
	}
	checkAccess(t, s.client("", "", ""),
		s.client("", etcdinit.Relay, passwords.RelayPassword),
		s.client("", etcdinit.Agent, passwords.AgentPassword))

	root := s.client("", etcdinit.Root, passwords.RootPassword)
	if changed := initOnce(t, root.Auth, passwords); len(changed) != 0 {
		t.Fatalf("second run changed %q", changed)
	}
	if _, err := etcdinit.Init(ctx(t), s.client("", etcdinit.Agent, passwords.AgentPassword).Auth, passwords); err == nil {
		t.Error("etcd-init as the agent succeeded")
	}

	rotated := passwords
	rotated.AgentPassword = "agent-pw-2"
	if changed := initOnce(t, root.Auth, rotated); !slices.Equal(changed, []string{"set the password of user meshrelay-agent"}) {
		t.Fatalf("rotation changed %q", changed)
	}
	if _, err := s.client("", etcdinit.Agent, rotated.AgentPassword).Get(ctx(t), "/meshrelay/v1/x"); err != nil {
		t.Fatalf("new agent password: %v", err)
	}
}

// TestInitCertAuth: with --client-cert-auth, the user is the certificate's
// common name: the same rules hold for certificates with CN
// meshrelay-relay and meshrelay-agent, and a certificate of another name
// gets nothing. A second run with the root certificate changes nothing.
func TestInitCertAuth(t *testing.T) {
	s := startSecure(t, true)
	root := s.client(etcdinit.Root, "", "")
	if changed := initOnce(t, root.Auth, passwords); len(changed) == 0 {
		t.Fatal("first run changed nothing")
	}
	checkAccess(t, s.client("nobody", "", ""), s.client(etcdinit.Relay, "", ""), s.client(etcdinit.Agent, "", ""))
	if changed := initOnce(t, root.Auth, passwords); len(changed) != 0 {
		t.Fatalf("second run changed %q", changed)
	}
}

// TestInitConcurrent: three runs at once (one per member in the chart)
// all succeed, and the result is the same state.
func TestInitConcurrent(t *testing.T) {
	s := startSecure(t, true)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		c := s.client(etcdinit.Root, "", "")
		wg.Go(func() { _, errs[i] = etcdinit.Init(ctx(t), c.Auth, passwords) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v", i, err)
		}
	}
	if changed := initOnce(t, s.client(etcdinit.Root, "", "").Auth, passwords); len(changed) != 0 {
		t.Fatalf("run after the concurrent ones changed %q", changed)
	}
	checkAccess(t, s.client("nobody", "", ""), s.client(etcdinit.Relay, "", ""), s.client(etcdinit.Agent, "", ""))
}

// TestInitRevokesExtraPermission: a role given more than it should have
// loses it.
func TestInitRevokesExtraPermission(t *testing.T) {
	s := startSecure(t, false)
	admin := s.client("", "", "")
	if _, err := admin.RoleAdd(ctx(t), etcdinit.Agent); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RoleGrantPermission(ctx(t), etcdinit.Agent, "/", "\x00", clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
		t.Fatal(err)
	}
	initOnce(t, admin.Auth, passwords)
	agentC := s.client("", etcdinit.Agent, passwords.AgentPassword)
	if _, err := agentC.Put(ctx(t), "/meshrelay/v1/x", "y"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("agent writes after Init: %v", err)
	}
}

func TestInitRefusesEmptyPassword(t *testing.T) {
	opts := passwords
	opts.RelayPassword = ""
	if _, err := etcdinit.Init(context.Background(), nil, opts); err == nil {
		t.Fatal("empty password accepted")
	}
}

func TestMemberEndpoints(t *testing.T) {
	s := startSecure(t, false)
	eps, err := etcdinit.MemberEndpoints(ctx(t), s.client("", "", "").Cluster)
	if err != nil || !slices.Equal(eps, s.endpoints) {
		t.Fatalf("member endpoints %q (%v), want %q", eps, err, s.endpoints)
	}
}
