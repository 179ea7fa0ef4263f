package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
)

// secureEtcd is a TLS etcd on loopback with a password file per user and
// client certificates with CN root, meshrelay-relay and meshrelay-agent.
type secureEtcd struct {
	endpoint  string
	dir       string
	certs     map[string]testpki.Files
	passwords map[string]string // user → password file
}

func startSecureEtcd(t *testing.T, clientCertAuth bool) *secureEtcd {
	ca := testpki.NewCA(t, "etcd-ca")
	srv := testenv.StartTLSEtcd(t, ca, clientCertAuth, embedetcd.Options{})
	s := &secureEtcd{endpoint: srv.Endpoints()[0], dir: t.TempDir(), certs: map[string]testpki.Files{}, passwords: map[string]string{}}
	for _, user := range []string{"root", "meshrelay-relay", "meshrelay-agent"} {
		s.certs[user] = ca.Write(t, t.TempDir(), ca.Client(t, user))
		s.passwords[user] = filepath.Join(s.dir, user)
		testpki.WriteFile(t, s.passwords[user], []byte(user+"-secret\n"))
	}
	return s
}

// certArgs are the TLS flags of user's certificate.
func (s *secureEtcd) certArgs(user string) []string {
	f := s.certs[user]
	return []string{"--etcd-endpoints", s.endpoint, "--etcd-ca", f.CA, "--etcd-cert", f.Cert, "--etcd-key", f.Key}
}

// passwordArgs are the flags of user with its password (CA only, no
// client certificate).
func (s *secureEtcd) passwordArgs(user string) []string {
	return []string{"--etcd-endpoints", s.endpoint, "--etcd-ca", s.certs[user].CA, "--etcd-username", user, "--etcd-password-file", s.passwords[user]}
}

func (s *secureEtcd) initArgs(identity []string) []string {
	return append(append([]string{"etcd-init"}, identity...),
		"--root-password-file", s.passwords["root"], "--relay-password-file", s.passwords["meshrelay-relay"], "--agent-password-file", s.passwords["meshrelay-agent"])
}

// TestEtcdInitCommand: etcd-init with the root certificate sets auth up;
// a second run changes nothing. Without a root certificate (password auth)
// the second run finds auth on and continues as user root.
func TestEtcdInitCommand(t *testing.T) {
	for name, certAuth := range map[string]bool{"cert": true, "password": false} {
		t.Run(name, func(t *testing.T) {
			s := startSecureEtcd(t, certAuth)
			identity := s.certArgs("root")
			if !certAuth {
				identity = []string{"--etcd-endpoints", s.endpoint, "--etcd-ca", s.certs["root"].CA}
			}
			_, stderr, err := execute(context.Background(), "", s.initArgs(identity)...)
			if err != nil || !strings.Contains(stderr.String(), "enabled auth") {
				t.Fatalf("first run: %v\n%s", err, stderr)
			}
			_, stderr, err = execute(context.Background(), "", s.initArgs(identity)...)
			if err != nil {
				t.Fatalf("second run: %v\n%s", err, stderr)
			}
			for _, changed := range []string{"added", "granted", "set the password", "enabled"} {
				if strings.Contains(stderr.String(), "etcd-init: "+changed) {
					t.Errorf("second run changed something:\n%s", stderr)
				}
			}
		})
	}
	_, _, err := execute(context.Background(), "", "etcd-init", "--etcd-endpoints", "https://127.0.0.1:1", "--root-password-file", "r")
	if cliconfig.ExitCode(err) != 2 {
		t.Errorf("missing password files: %v", err)
	}
}

// tlsIstiod serves the simulator over TLS and accepts a stream only with
// "authorization: Bearer <token>", the token being the file's current
// contents.
func tlsIstiod(t *testing.T, token *atomic.Value) (*istiodsim.Sim, string) {
	ca := testpki.NewCA(t, "istio-ca")
	pair := ca.Server(t, "istiod", "127.0.0.1", "istiod.istio-system.svc")
	cert, err := tls.X509KeyPair(pair.Cert, pair.Key)
	if err != nil {
		t.Fatal(err)
	}
	check := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+token.Load().(string) {
			return status.Errorf(codes.Unauthenticated, "authorization %q", got)
		}
		return h(srv, ss)
	}
	sim, err := istiodsim.New(istiodsim.Options{Services: 3, EndpointsPerService: 2, ServerOptions: []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})),
		grpc.ChainStreamInterceptor(check),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	caFile := filepath.Join(t.TempDir(), "root-cert.pem")
	testpki.WriteFile(t, caFile, ca.PEM())
	return sim, caFile
}

// runRelayUntilReady runs the relay command with args and waits for
// /readyz; the test's cleanup stops it.
func runRelayUntilReady(t *testing.T, metrics string, args ...string) (stdout, stderr *syncBuffer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	go func() {
		cmd := newRootCommand(strings.NewReader(""), stdout, stderr)
		cmd.SetArgs(append(args, "--metrics-listen", metrics, "--relay-id", "cmd-test"))
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay: %v\n%s", err, stderr)
			}
		case <-time.After(20 * time.Second):
			t.Error("relay did not stop")
		}
	})
	testenv.Eventually(t, "relay ready", func() error {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("relay exited: %v\n%s", err, stderr)
		default:
		}
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return &httpStatusError{resp.StatusCode}
		}
		return nil
	})
	return stdout, stderr
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return http.StatusText(e.code) }

// TestRelaySecureEndToEnd: after etcd-init, the relay writes with its user
// (password auth, then its client certificate) over TLS, reading Istiod
// over TLS with a bearer token; inspect reads back with the agent's
// read-only identity. /debug/pprof/ answers only with --pprof.
func TestRelaySecureEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd, the simulator and the relay")
	}
	for name, certAuth := range map[string]bool{"password": false, "cert": true} {
		t.Run(name, func(t *testing.T) {
			s := startSecureEtcd(t, certAuth)
			initIdentity := s.certArgs("root")
			if !certAuth {
				initIdentity = s.passwordArgs("root")[:4]
			}
			if _, stderr, err := execute(context.Background(), "", s.initArgs(initIdentity)...); err != nil {
				t.Fatalf("etcd-init: %v\n%s", err, stderr)
			}
			var token atomic.Value
			token.Store("token-1")
			sim, istioCA := tlsIstiod(t, &token)
			tokenFile := filepath.Join(t.TempDir(), "istio-token")
			testpki.WriteFile(t, tokenFile, []byte("token-1\n"))

			relayID, agentID := s.passwordArgs("meshrelay-relay"), s.passwordArgs("meshrelay-agent")
			if certAuth {
				relayID, agentID = s.certArgs("meshrelay-relay"), s.certArgs("meshrelay-agent")
			}
			metrics := freeAddr(t)
			args := append([]string{"--istiod", sim.Addr(), "--istiod-ca", istioCA, "--istiod-token-file", tokenFile}, relayID...)
			if certAuth {
				args = append(args, "--pprof")
			}
			runRelayUntilReady(t, metrics, args...)

			truth := sim.Truth()[1]
			out, _, err := execute(context.Background(), "", append([]string{"inspect", truth.Namespace + "/" + truth.Name}, agentID...)...)
			if err != nil || !strings.Contains(out.String(), truth.Hostname) {
				t.Fatalf("inspect as the agent: %v\n%s", err, out)
			}
			resp, err := http.Get("http://" + metrics + "/debug/pprof/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[bool]int{true: 200, false: 404}[certAuth]; resp.StatusCode != want {
				t.Errorf("/debug/pprof/ (pprof %v): %d, want %d", certAuth, resp.StatusCode, want)
			}
		})
	}
}

// TestRelayRefusesPlaintextEtcdWithTLS: TLS flags with an http:// endpoint
// exit 2 before anything is dialed.
func TestRelayRefusesPlaintextEtcdWithTLS(t *testing.T) {
	_, _, err := execute(context.Background(), "", "--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-ca", "ca.crt")
	if cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), "want https://") {
		t.Fatalf("err = %v", err)
	}
	_, _, err = execute(context.Background(), "", "--istiod-token-file", "tok")
	if cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), "--istiod-token-file") {
		t.Fatalf("token without TLS: %v", err)
	}
}

// TestIstiodTokenRotation: a rewritten token file is sent from the next
// RPC on; a file that went empty keeps the last token.
func TestIstiodTokenRotation(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	testpki.WriteFile(t, p, []byte("one\n"))
	tok, err := newTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	get := func() string {
		md, err := tok.GetRequestMetadata(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return md["authorization"]
	}
	if got := get(); got != "Bearer one" {
		t.Fatalf("got %q", got)
	}
	testpki.WriteFile(t, p, []byte("two-longer"))
	if got := get(); got != "Bearer two-longer" {
		t.Fatalf("after rotation: %q", got)
	}
	testpki.WriteFile(t, p, nil)
	if got := get(); got != "Bearer two-longer" {
		t.Fatalf("after emptying: %q", got)
	}
	if !tok.RequireTransportSecurity() {
		t.Error("token sent without TLS")
	}
	if _, err := newTokenFile(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing token file accepted")
	}
}

// TestNodeMetadataClusterID: $CLUSTER_ID reaches the xDS node metadata
// unless --node-metadata sets it.
func TestNodeMetadataClusterID(t *testing.T) {
	t.Setenv("CLUSTER_ID", "east")
	c := &config{}
	if got := c.nodeMetadata()["CLUSTER_ID"]; got != "east" {
		t.Errorf("from the environment: %v", got)
	}
	c.NodeMetadata = map[string]string{"CLUSTER_ID": "west", "ISTIO_VERSION": "1.28.0"}
	if m := c.nodeMetadata(); m["CLUSTER_ID"] != "west" || m["ISTIO_VERSION"] != "1.28.0" {
		t.Errorf("flag over environment: %v", m)
	}
	t.Setenv("CLUSTER_ID", "")
	if m := (&config{}).nodeMetadata(); m != nil {
		t.Errorf("nothing set: %v", m)
	}
}
