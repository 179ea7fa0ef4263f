package charttest

import (
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
// test release and renders the chart with what it wrote and set.
func makeCerts(t *testing.T, set ...string) (dir string, objs []Decoded) {
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
		ValueFiles: []string{filepath.Join(dir, "tls-values.yaml")}, Set: set})
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

// etcdBin returns the etcd binary of MESHRELAY_ETCD_BIN, or skips.
func etcdBin(t *testing.T) string {
	t.Helper()
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
	return bin
}

// loopback runs the chart's etcd members as processes on loopback: the
// rendered start script with the members' names and ports moved to
// 127.0.0.1 and the pod's paths moved under a temporary directory.
type loopback struct {
	t       *testing.T
	root    string
	binDir  string
	script  []string // command and args of the etcd container
	members []*member
}

type member struct {
	name, client, peer, metrics string
	data                        string
	log                         string
	cmd                         *exec.Cmd
	exited                      chan error
}

func newLoopback(t *testing.T, bin string, objs []Decoded) *loopback {
	t.Helper()
	var sts *appsv1.StatefulSet
	for _, o := range objs {
		if s, ok := o.Obj.(*appsv1.StatefulSet); ok {
			sts = s
		}
	}
	if sts == nil {
		t.Fatal("no StatefulSet")
	}
	l := &loopback{t: t, root: t.TempDir()}
	prefix := release + "-meshrelay-etcd-"
	for _, role := range []string{"server", "peer", "root"} {
		d := filepath.Join(l.root, "etc/etcd", role)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for k, v := range secretData(t, objs, prefix+role) {
			if err := os.WriteFile(filepath.Join(d, k), v, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.binDir = filepath.Join(l.root, "bin")
	if err := os.MkdirAll(l.binDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etcd", "etcdctl"} {
		if err := os.Symlink(bin, filepath.Join(l.binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	c := container(t, sts.Spec.Template.Spec, "etcd")
	l.script = append(append([]string{}, c.Command...), c.Args...)
	for i := range int(*sts.Spec.Replicas) {
		l.members = append(l.members, &member{
			name: fmt.Sprintf("%s%d", prefix, i), client: freePort(t), peer: freePort(t), metrics: freePort(t),
			data: filepath.Join(l.root, fmt.Sprintf("data-%d", i)), log: filepath.Join(l.root, fmt.Sprintf("etcd-%d.log", i)),
		})
	}
	t.Cleanup(func() {
		for _, m := range l.members {
			l.stop(m)
		}
	})
	return l
}

// scriptFor is the start script of m on loopback.
func (l *loopback) scriptFor(m *member) []string {
	svc := "." + release + "-meshrelay-etcd." + namespace + ".svc"
	pairs := []string{
		"${POD_NAME}" + svc + ":2380", "127.0.0.1:" + m.peer,
		"0.0.0.0:2379", "127.0.0.1:" + m.client,
		"${POD_IP}:2379", "127.0.0.1:" + m.client,
		"0.0.0.0:2380", "127.0.0.1:" + m.peer,
		"0.0.0.0:2381", "127.0.0.1:" + m.metrics,
		"/etc/etcd/", l.root + "/etc/etcd/",
		"/var/run/etcd", m.data,
	}
	for _, o := range l.members {
		pairs = append(pairs, o.name+svc+":2380", "127.0.0.1:"+o.peer, o.name+svc+":2379", "127.0.0.1:"+o.client)
	}
	out := append([]string{}, l.script...)
	last := strings.NewReplacer(pairs...).Replace(out[len(out)-1])
	// What etcd and etcdctl get must be all loopback and temporary.
	for _, leftover := range []string{"0.0.0.0", ".svc:", "/var/run/", " /etc/etcd/", "=/etc/etcd/"} {
		if strings.Contains(last, leftover) {
			l.t.Fatalf("script still has %q after moving it to loopback:\n%s", leftover, last)
		}
	}
	out[len(out)-1] = last
	return out
}

func (l *loopback) start(m *member) {
	l.t.Helper()
	script := l.scriptFor(m)
	m.cmd = exec.Command(script[0], script[1:]...)
	m.cmd.Env = []string{"PATH=" + l.binDir + ":/usr/bin:/bin", "POD_NAME=" + m.name, "POD_IP=127.0.0.1"}
	logs, err := os.OpenFile(m.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logs.Close()
	m.cmd.Stdout, m.cmd.Stderr = logs, logs
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	m.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan error) { exited <- cmd.Wait() }(m.cmd, m.exited)
}

// stop ends m's process group (the script and etcd it started).
func (l *loopback) stop(m *member) {
	if m.cmd == nil {
		return
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.exited
	}
	m.cmd = nil
}

func (l *loopback) fail(format string, args ...any) {
	l.t.Helper()
	var logs strings.Builder
	for _, m := range l.members {
		b, _ := os.ReadFile(m.log)
		lines := strings.Split(string(b), "\n")
		lines = lines[max(0, len(lines)-15):]
		fmt.Fprintf(&logs, "--- %s (last lines):\n%s\n", m.name, strings.Join(lines, "\n"))
	}
	l.t.Fatalf(format+"\netcd logs:\n%s", append(args, logs.String())...)
}

// ready waits until m answers 200 on path of its metrics listener.
func (l *loopback) ready(m *member, path string) {
	l.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + m.metrics + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-m.exited:
			l.fail("%s exited: %v", m.name, err)
		case <-deadline:
			l.fail("%s: %s never answered 200 (last error %v)", m.name, path, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ctl runs etcdctl as root against every member.
func (l *loopback) ctl(args ...string) (string, error) {
	var eps []string
	for _, m := range l.members {
		eps = append(eps, "https://127.0.0.1:"+m.client)
	}
	d := filepath.Join(l.root, "etc/etcd/root")
	cmd := exec.Command(filepath.Join(l.binDir, "etcdctl"), append([]string{"--endpoints=" + strings.Join(eps, ","),
		"--cacert=" + d + "/ca.crt", "--cert=" + d + "/tls.crt", "--key=" + d + "/tls.key", "--command-timeout=10s"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestEtcdCommandLine runs the chart's etcd start script and flags with a
// real etcd, on loopback, with `make certs`' material: it must start, serve
// its health endpoints, refuse clients without a certificate, plaintext
// and TLS 1.2, and accept the agent's certificate verified by the service
// name. MESHRELAY_ETCD_BIN names the etcd binary (make chart-etcd-test
// builds one from the main module's etcd version).
func TestEtcdCommandLine(t *testing.T) {
	bin := etcdBin(t)
	_, objs := makeCerts(t, "etcd.replicas=1")
	l := newLoopback(t, bin, objs)
	m := l.members[0]
	l.start(m)
	l.ready(m, "/livez")
	l.ready(m, "/readyz")
	client := m.client
	prefix := release + "-meshrelay-etcd-"
	fail := l.fail

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

// TestEtcdMembersRejoin runs the chart's three members and restarts one
// twice: with its data kept (a container restart: it must come back as the
// same member) and with its data gone (a new pod: the start script must
// replace its old entry and join again), and the cluster must end with
// three started members.
func TestEtcdMembersRejoin(t *testing.T) {
	bin := etcdBin(t)
	_, objs := makeCerts(t)
	l := newLoopback(t, bin, objs)
	if len(l.members) != 3 {
		t.Fatalf("%d members rendered, want 3", len(l.members))
	}
	for _, m := range l.members {
		l.start(m)
	}
	for _, m := range l.members {
		l.ready(m, "/readyz")
	}
	if out, err := l.ctl("put", "/meshrelay/v1/probe", "before"); err != nil {
		l.fail("put: %v\n%s", err, out)
	}
	restarted := l.members[1]
	for _, wipe := range []bool{false, true} {
		l.stop(restarted)
		if wipe {
			if err := os.RemoveAll(restarted.data); err != nil {
				t.Fatal(err)
			}
		}
		l.start(restarted)
		l.ready(restarted, "/readyz")
		out, err := l.ctl("member", "list")
		if err != nil {
			l.fail("member list: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		started := 0
		for _, line := range lines {
			if strings.Contains(line, ", started, ") {
				started++
			}
		}
		if len(lines) != 3 || started != 3 {
			l.fail("wipe %v: member list has %d members, %d started, want 3 and 3:\n%s", wipe, len(lines), started, out)
		}
		// The re-joined member serves the cluster's data.
		d := filepath.Join(l.root, "etc/etcd/root")
		get := exec.Command(filepath.Join(l.binDir, "etcdctl"), "--endpoints=https://127.0.0.1:"+restarted.client,
			"--cacert="+d+"/ca.crt", "--cert="+d+"/tls.crt", "--key="+d+"/tls.key", "get", "/meshrelay/v1/probe", "--print-value-only")
		if out, err := get.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "before" {
			l.fail("wipe %v: get from the restarted member: %q %v", wipe, out, err)
		}
	}
}
