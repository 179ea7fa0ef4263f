package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// syncBuffer is a bytes.Buffer safe to read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func execute(ctx context.Context, stdin string, args ...string) (stdout, stderr *syncBuffer, err error) {
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	cmd := newRootCommand(strings.NewReader(stdin), stdout, stderr)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(ctx)
	return stdout, stderr, err
}

func TestBadValuesExit2(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"mode":         {args: []string{"--mode", "both"}, want: `invalid --mode "both": want one of sotw, workload`},
		"shards":       {args: []string{"--shards", "0"}, want: `invalid --shards "0": want 1..4096`},
		"istiod":       {args: []string{"--istiod", "istiod-without-port"}, want: `invalid --istiod "istiod-without-port": want host:port`},
		"unknown flag": {args: []string{"--no-such-flag"}, want: "unknown flag: --no-such-flag"},
		"flag type":    {args: []string{"--shards", "many"}, want: `invalid argument "many" for "--shards"`},
		"env":          {env: map[string]string{"MESHRELAY_COALESCE_WINDOW": "soon"}, want: `invalid --coalesce-window "soon"`},
		"log level":    {args: []string{"--log-level", "loud"}, want: `invalid --log-level "loud"`},

		// Unsafe TLS combinations.
		"etcd tls with http": {args: []string{"--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-ca", "/ca.pem"},
			want: `want https:// endpoints, plaintext is refused`},
		"etcd tls with embedded": {args: []string{"--etcd-ca", "/ca.pem"}, want: `invalid --etcd-ca`},
		"etcd mixed schemes": {args: []string{"--etcd-endpoints", "http://127.0.0.1:2379,https://127.0.0.2:2379"},
			want: `endpoints mix schemes`},
		"etcd scheme and none": {args: []string{"--etcd-endpoints", "127.0.0.1:2379,https://127.0.0.2:2379"},
			want: `endpoints mix schemes`},
		"etcd key alone": {args: []string{"--etcd-endpoints", "https://127.0.0.1:2379", "--etcd-key", "/key.pem"},
			want: `--etcd-cert and --etcd-key go together`},
		"etcd cert alone": {args: []string{"--etcd-endpoints", "https://127.0.0.1:2379", "--etcd-cert", "/cert.pem", "--etcd-ca", "/ca.pem"},
			want: `--etcd-cert and --etcd-key go together`},
		"etcd odd scheme":  {args: []string{"--etcd-endpoints", "ftp://127.0.0.1:2379"}, want: `invalid --etcd-endpoints`},
		"istiod key alone": {args: []string{"--istiod-key", "/key.pem"}, want: `--istiod-cert and --istiod-key go together`},
		"istiod cert alone": {args: []string{"--istiod-cert", "/cert.pem", "--istiod-ca", "/ca.pem"},
			want: `--istiod-cert and --istiod-key go together`},
		"istiod server name alone": {args: []string{"--istiod-server-name", "istiod.istio-system.svc"}, want: `needs --istiod-ca`},
		"istiod cert without ca":   {args: []string{"--istiod-cert", "/cert.pem", "--istiod-key", "/key.pem"}, want: `needs --istiod-ca`},
		"delete fraction":          {args: []string{"--max-delete-fraction", "0"}, want: `invalid --max-delete-fraction "0"`},
		"lease ttl":                {args: []string{"--lease-ttl", "500ms"}, want: `invalid --lease-ttl "500ms": want >= 1s`},
		"status etcd":              {args: []string{"status"}, want: "status: --etcd-endpoints is required"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, _, err := execute(context.Background(), "", tc.args...)
			if cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 and %q", err, cliconfig.ExitCode(err), tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestDecodeCommand(t *testing.T) {
	s := model.NewService(&v1.ServiceSpec{Namespace: "ns-0", Name: "svc-0", Hostname: "svc-0.ns-0.svc.cluster.local"},
		[]*v1.Endpoint{{Address: "127.0.0.9", Port: 8080, Weight: 1}})
	spec, _ := model.Marshal(s.Spec)
	out, _, err := execute(context.Background(), string(spec)+"\n", "decode")
	if err != nil || !strings.Contains(out.String(), `"svc-0.ns-0.svc.cluster.local"`) {
		t.Fatalf("decode spec: %v\n%s", err, out)
	}
	slice, _ := model.Marshal(s.Slices[0])
	out, _, err = execute(context.Background(), string(slice), "decode", "--key", "/meshrelay/v1/Kubernetes/services/ns-0/svc-0/endpoints/0")
	if err != nil || !strings.Contains(out.String(), `"127.0.0.9"`) {
		t.Fatalf("decode slice: %v\n%s", err, out)
	}
	if _, _, err := execute(context.Background(), "", "decode"); cliconfig.ExitCode(err) != 2 {
		t.Fatalf("empty stdin: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRelayCommandEndToEnd runs `relay` on the embedded default against
// the simulator, waits for /readyz, then reads a service back with
// `relay inspect`.
func TestRelayCommandEndToEnd(t *testing.T) {
	for _, mode := range []string{modeSotW, modeWorkload} {
		t.Run(mode, func(t *testing.T) { testRelayCommand(t, mode) })
	}
}

// testRelayCommand runs the relay command in mode against the simulator
// until /readyz is ready, then inspects what it wrote.
func testRelayCommand(t *testing.T, mode string) {
	sim, err := istiodsim.New(istiodsim.Options{Services: 5, EndpointsPerService: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	metrics := freeAddr(t)
	stdout, _ := runRelayUntilReady(t, metrics, "--istiod", sim.Addr(), "--mode", mode)
	m := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("relay did not print the embedded etcd address:\n%s", stdout)
	}
	truth := sim.Truth()[2]
	out, _, err := execute(context.Background(), "", "inspect", "--etcd-endpoints", m[1], truth.Namespace+"/"+truth.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{truth.Hostname, truth.VIPs[0], truth.Endpoints[0].Address} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	wantMetrics := []string{"meshrelay_relay_etcd_txns_total", fmt.Sprintf("meshrelay_relay_services %d", len(sim.Truth())),
		"meshrelay_relay_shard_held 16", "meshrelay_relay_shard_members 1", "meshrelay_relay_etcd_fenced_ops_total 0", "meshrelay_relay_etcd_takeover_seconds_count 16"}
	if mode == modeSotW {
		wantMetrics = append(wantMetrics, "meshrelay_relay_xds_acks_total")
	}
	for _, want := range wantMetrics {
		if !strings.Contains(body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	out, _, err = execute(context.Background(), "", "status", "--etcd-endpoints", m[1])
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Members []struct {
			ID     string `json:"id"`
			Shards []int  `json:"shards"`
			Ready  bool   `json:"ready"`
		} `json:"members"`
		Shards []struct {
			Leader string `json:"leader"`
			Marker *struct {
				Relay string `json:"relay"`
			} `json:"marker"`
		} `json:"shards"`
		Vacant []int `json:"vacant"`
	}
	if err := json.Unmarshal([]byte(out.String()), &st); err != nil {
		t.Fatalf("status output: %v\n%s", err, out)
	}
	if len(st.Members) != 1 || st.Members[0].ID != "cmd-test" || !st.Members[0].Ready || len(st.Members[0].Shards) != 16 || len(st.Shards) != 16 || len(st.Vacant) != 0 {
		t.Errorf("status: %s", out)
	}
	for i, s := range st.Shards {
		if s.Leader != "cmd-test" || s.Marker == nil || s.Marker.Relay != "cmd-test" {
			t.Errorf("status of shard %d: %+v", i, s)
		}
	}
	if _, _, err := execute(context.Background(), "", "inspect", "--etcd-endpoints", m[1], "ns-0/no-such-service"); err == nil {
		t.Error("inspect of a missing service succeeded")
	}
}

// TestConfigSources checks flag > environment > file > default through the
// values each source gives --shards (all out of range, so the command stops
// at validation and names the winning value).
func TestConfigSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(file, []byte("shards: 9000\ncluster: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		env  string
		args []string
		want string
	}{
		"file":          {args: []string{"--config", file}, want: `invalid --shards "9000"`},
		"env over file": {env: "0", args: []string{"--config", file}, want: `invalid --shards "0"`},
		"flag over env": {env: "0", args: []string{"--config", file, "--shards", "5000"}, want: `invalid --shards "5000"`},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("MESHRELAY_SHARDS", tc.env)
			}
			_, _, err := execute(context.Background(), "", tc.args...)
			if cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want exit 2 and %q", err, tc.want)
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("shards: 4\nsharts: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execute(context.Background(), "", "--config", bad); cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), `unknown key "sharts"`) {
		t.Fatalf("unknown file key: %v", err)
	}
}
