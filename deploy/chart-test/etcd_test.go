package charttest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// makeCerts runs `make certs`' script into a temporary directory for the
// test release and renders the chart with what it wrote (one etcd member).
func makeCerts(t *testing.T) (dir string, objs []Decoded) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("make certs needs openssl, not installed")
	}
	dir = t.TempDir()
	cmd := exec.Command("sh", "../certs/gen.sh")
	cmd.Env = append(os.Environ(), "OUT="+dir, "RELEASE="+release, "NAMESPACE="+namespace)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, out)
	}
	ms, err := Render(RenderOptions{ChartDir: chartDir, ReleaseName: release, Namespace: namespace,
		ValueFiles: []string{filepath.Join(dir, "tls-values.yaml")}, Set: []string{"etcd.replicas=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if objs, err = Decode(ms); err != nil {
		t.Fatal(err)
	}
	return dir, objs
}

func secretData(t *testing.T, objs []Decoded, name string) map[string][]byte {
	t.Helper()
	for _, o := range objs {
		if s, ok := o.Obj.(*corev1.Secret); ok && s.Name == name {
			return s.Data
		}
	}
	t.Fatalf("no Secret %s rendered", name)
	return nil
}

func parseCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMakeCerts: the certificates `make certs` issues, carried into the
// chart's Secrets, chain to the CA, name the etcd users by CN, and let
// relays (member DNS names) and agents (the service name, dialling pod IPs)
// verify every member.
func TestMakeCerts(t *testing.T) {
	_, objs := makeCerts(t)
	prefix := release + "-meshrelay-etcd-"
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secretData(t, objs, prefix+"server")["ca.crt"]) {
		t.Fatal("ca.crt holds no certificate")
	}
	for role, want := range map[string]struct {
		cn  string
		eku x509.ExtKeyUsage
	}{
		"server": {release + "-meshrelay-etcd", x509.ExtKeyUsageServerAuth},
		"peer":   {release + "-meshrelay-etcd-peer", x509.ExtKeyUsageClientAuth},
		"relay":  {"meshrelay-relay", x509.ExtKeyUsageClientAuth},
		"agent":  {"meshrelay-agent", x509.ExtKeyUsageClientAuth},
		"root":   {"root", x509.ExtKeyUsageClientAuth},
	} {
		data := secretData(t, objs, prefix+role)
		c := parseCert(t, data["tls.crt"])
		if c.Subject.CommonName != want.cn {
			t.Errorf("%s: CN %q, want %q", role, c.Subject.CommonName, want.cn)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{want.eku}}); err != nil {
			t.Errorf("%s: does not verify for %v: %v", role, want.eku, err)
		}
		if _, err := tls.X509KeyPair(data["tls.crt"], data["tls.key"]); err != nil {
			t.Errorf("%s: key does not match: %v", role, err)
		}
	}
	server := parseCert(t, secretData(t, objs, prefix+"server")["tls.crt"])
	names := []string{release + "-meshrelay-etcd." + namespace + ".svc", "127.0.0.1"}
	for _, o := range objs {
		if d, ok := o.Obj.(*appsv1.Deployment); ok {
			for _, a := range d.Spec.Template.Spec.Containers[0].Args {
				if v, ok := strings.CutPrefix(a, "--etcd-endpoints="); ok {
					for _, u := range strings.Split(v, ",") {
						host, _, err := net.SplitHostPort(strings.TrimPrefix(u, "https://"))
						if err != nil {
							t.Fatal(err)
						}
						names = append(names, host)
					}
				}
			}
		}
	}
	if len(names) < 3 {
		t.Fatalf("no relay etcd endpoints found: %v", names)
	}
	for _, n := range names {
		if err := server.VerifyHostname(n); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	// The agent's client certificate must not serve.
	agent := parseCert(t, secretData(t, objs, prefix+"agent")["tls.crt"])
	if _, err := agent.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the agent's certificate verifies as a server certificate")
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// TestEtcdCommandLine runs the chart's etcd start script and flags with a
// real etcd, on loopback, with `make certs`' material: it must start, serve
// its health endpoints, refuse clients without a certificate, plaintext
// and TLS 1.2, and accept the agent's certificate verified by the service
// name. MESHRELAY_ETCD_BIN names the etcd binary (make chart-etcd-test
// builds one from the main module's etcd version).
func TestEtcdCommandLine(t *testing.T) {
	bin := os.Getenv("MESHRELAY_ETCD_BIN")
	if bin == "" {
		t.Skip("MESHRELAY_ETCD_BIN is not set (make chart-etcd-test builds etcd and sets it)")
	}
	if testing.Short() {
		t.Skip("starts etcd; skipped with -short")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	_, objs := makeCerts(t)
	var sts *appsv1.StatefulSet
	for _, o := range objs {
		if s, ok := o.Obj.(*appsv1.StatefulSet); ok {
			sts = s
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet")
	}
	root := t.TempDir()
	prefix := release + "-meshrelay-etcd-"
	for _, role := range []string{"server", "peer", "root"} {
		d := filepath.Join(root, "etc/etcd", role)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for k, v := range secretData(t, objs, prefix+role) {
			if err := os.WriteFile(filepath.Join(d, k), v, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	binDir := filepath.Join(root, "bin")
	if err := os.MkdirAll(binDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(binDir, "etcd")); err != nil {
		t.Fatal(err)
	}

	// The script as rendered, moved onto loopback ports and temporary paths.
	c := container(t, sts.Spec.Template.Spec, "etcd")
	script := c.Args[0]
	client, peer, metrics := freePort(t), freePort(t), freePort(t)
	member := release + "-meshrelay-etcd-0"
	peerHost := "." + release + "-meshrelay-etcd." + namespace + ".svc:2380"
	script = strings.NewReplacer(
		"${POD_NAME}"+peerHost, "127.0.0.1:"+peer,
		member+peerHost, "127.0.0.1:"+peer,
		"0.0.0.0:2379", "127.0.0.1:"+client,
		"${POD_IP}:2379", "127.0.0.1:"+client,
		"0.0.0.0:2380", "127.0.0.1:"+peer,
		"0.0.0.0:2381", "127.0.0.1:"+metrics,
		"/etc/etcd/", root+"/etc/etcd/",
		"/var/run/etcd", root+"/data",
	).Replace(script)
	// With one member the script skips the re-join branch (member DNS
	// names); what etcd itself gets must be all loopback and temporary.
	_, etcdLine, _ := strings.Cut(script, "exec etcd")
	for _, leftover := range []string{"0.0.0.0", ".svc:", "/var/run/", "/etc/etcd/server"} {
		if strings.Contains(strings.ReplaceAll(etcdLine, root+"/etc/etcd/", ""), leftover) {
			t.Fatalf("script still has %q after moving it to loopback:\n%s", leftover, script)
		}
	}
	cmd := exec.Command(c.Command[0], append(c.Command[1:], script)...)
	cmd.Env = []string{"PATH=" + binDir + ":/usr/bin:/bin", "POD_NAME=" + member, "POD_IP=127.0.0.1"}
	logs, err := os.Create(filepath.Join(root, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	fail := func(format string, args ...any) {
		t.Helper()
		out, _ := os.ReadFile(logs.Name())
		t.Fatalf(format+"\netcd log:\n%s", append(args, out)...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, path := range []string{"/livez", "/readyz"} {
		for {
			resp, err := http.Get("http://127.0.0.1:" + metrics + path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case err := <-exited:
				fail("etcd exited: %v", err)
			case <-ctx.Done():
				fail("%s never answered 200 (last error %v)", path, err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}

	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(secretData(t, objs, prefix+"agent")["ca.crt"])
	agentData := secretData(t, objs, prefix+"agent")
	agent, err := tls.X509KeyPair(agentData["tls.crt"], agentData["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	get := func(scheme string, cfg *tls.Config) error {
		cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := cl.Get(scheme + "://127.0.0.1:" + client + "/version")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	// The agent dials a pod IP and verifies the service name, as
	// --etcd-server-name does.
	serverName := release + "-meshrelay-etcd." + namespace + ".svc"
	if err := get("https", &tls.Config{RootCAs: ca, ServerName: serverName, Certificates: []tls.Certificate{agent}}); err != nil {
		fail("agent certificate, server name %s: %v", serverName, err)
	}
	for _, tc := range []struct {
		name, wantErr string
		cfg           *tls.Config
	}{
		{"no client certificate", "certificate required", &tls.Config{RootCAs: ca, ServerName: serverName}},
		{"TLS 1.2", "protocol version", &tls.Config{RootCAs: ca, ServerName: serverName, Certificates: []tls.Certificate{agent}, MaxVersion: tls.VersionTLS12}},
		{"wrong server name", "x509", &tls.Config{RootCAs: ca, ServerName: "etcd.example.com", Certificates: []tls.Certificate{agent}}},
	} {
		if err := get("https", tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: got error %v, want one saying %q", tc.name, err, tc.wantErr)
		}
	}
	if err := get("http", nil); err == nil {
		t.Error("plaintext: etcd answered")
	}
}
