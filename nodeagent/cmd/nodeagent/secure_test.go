package main

import (
	"context"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
)

// TestAgentTLSEndpointsFile runs the agent against a TLS etcd that
// requires client certificates, its endpoints in a file that first names
// a closed port: the agent is not ready until the file names etcd, which
// it dials by IP while verifying the certificate's DNS name
// (--etcd-server-name). /debug/pprof/ is off without --pprof.
func TestAgentTLSEndpointsFile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd and the agent")
	}
	ca := testpki.NewCA(t, "etcd-ca")
	srv := testenv.StartTLSEtcd(t, ca, true, embedetcd.Options{})
	f := ca.Write(t, t.TempDir(), ca.Client(t, "meshrelay-agent"))
	writer, err := etcddial.Dial(etcddial.Options{Endpoints: srv.Endpoints(), CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
	if err != nil {
		t.Fatal(err)
	}
	writeServiceTo(t, writer)
	writer.Close()
	epFile := filepath.Join(t.TempDir(), "endpoints")
	testpki.WriteFile(t, epFile, []byte("https://"+freeAddr(t)))
	metrics := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := run(ctx, "--etcd-endpoints-file="+epFile, "--etcd-server-name="+testenv.ServerName,
			"--etcd-ca="+f.CA, "--etcd-cert="+f.Cert, "--etcd-key="+f.Key,
			"--datapath=memory", "--metrics-listen="+metrics, "--cluster=test", "--services=ns/web")
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop")
		}
	})
	testenv.EventuallyTrue(t, "agent serving", func() bool { code, _ := get("http://" + metrics + "/healthz"); return code != 0 })
	if code, _ := get("http://" + metrics + "/readyz"); code == http.StatusOK {
		t.Fatal("ready without a reachable etcd")
	}
	testpki.WriteFile(t, epFile, []byte(srv.Endpoints()[0]+"\n"))
	testenv.EventuallyTrue(t, "ready after the endpoints file changed", func() bool {
		code, _ := get("http://" + metrics + "/readyz")
		return code == http.StatusOK
	})
	if code, _ := get("http://" + metrics + "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: %d", code)
	}
}

// TestAgentRefusesPlaintextWithTLS: TLS flags with an http:// endpoint, or
// an endpoints file naming one, are refused.
func TestAgentRefusesPlaintextWithTLS(t *testing.T) {
	_, _, err := run(context.Background(), "--etcd-endpoints=http://127.0.0.1:2379", "--etcd-ca=ca.crt", "--datapath=memory")
	if cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), "want https://") {
		t.Fatalf("http endpoint with TLS: %v", err)
	}
	ca := testpki.NewCA(t, "ca")
	f := ca.Write(t, t.TempDir(), ca.Client(t, "meshrelay-agent"))
	epFile := filepath.Join(t.TempDir(), "endpoints")
	testpki.WriteFile(t, epFile, []byte("http://127.0.0.1:2379"))
	_, _, err = run(context.Background(), "--etcd-endpoints-file="+epFile, "--etcd-ca="+f.CA, "--datapath=memory", "--metrics-listen=")
	if cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), "--etcd-endpoints-file") {
		t.Fatalf("http endpoint in the file with TLS: %v", err)
	}
}

func TestMissingCaps(t *testing.T) {
	all := uint64(1)<<unix.CAP_BPF | 1<<unix.CAP_NET_ADMIN
	for _, tc := range []struct {
		eff  uint64
		want []string
	}{
		{all, nil},
		{1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_NET_ADMIN, nil}, // kernels before CAP_BPF
		{1 << unix.CAP_BPF, []string{"CAP_NET_ADMIN"}},
		{1 << unix.CAP_NET_ADMIN, []string{"CAP_BPF"}},
		{1 << unix.CAP_PERFMON, []string{"CAP_BPF", "CAP_NET_ADMIN"}},
	} {
		if got := missingCaps(tc.eff); !slices.Equal(got, tc.want) {
			t.Errorf("missingCaps(%#x) = %q, want %q", tc.eff, got, tc.want)
		}
	}
}

// TestCheckCapabilitiesDropped: on a thread whose effective set lost
// CAP_NET_ADMIN, the check fails naming it (the thread is never returned
// to the scheduler: it ends with its goroutine). Needs the capability to
// begin with (root).
func TestCheckCapabilitiesDropped(t *testing.T) {
	if err := checkCapabilities(); err != nil {
		t.Skipf("skipping: this process lacks the capabilities already: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
		data[0].Effective &^= 1 << unix.CAP_SYS_ADMIN
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		errc <- checkCapabilities()
	}()
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Fatalf("check without CAP_NET_ADMIN: %v", err)
	}
}
