package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent/cmd/nodeagent/dumpview"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// run executes the command line args and returns its output and error.
func run(ctx context.Context, args ...string) (string, string, error) {
	var stdout, stderr syncBuffer
	cmd := newRootCommand(&stdout, &stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return stdout.String(), stderr.String(), err
}

// syncBuffer is a bytes.Buffer safe for the agent's goroutines.
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

func TestBadValuesExitTwoWithOneLine(t *testing.T) {
	etcd := "--etcd-endpoints=http://127.0.0.1:1"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{etcd, "--datapath=ebpf"}, `invalid --datapath "ebpf"`},
		{[]string{etcd, "--services=ns-only"}, `invalid --services "ns-only"`},
		{[]string{etcd, "--namespaces=a/b"}, `invalid --namespaces "a/b"`},
		{[]string{etcd, "--service-cidrs=10.96.0.0/33"}, `invalid --service-cidrs "10.96.0.0/33"`},
		{[]string{etcd, "--shards=0"}, `invalid --shards "0"`},
		{[]string{etcd, "--flush-window=-1s"}, `invalid --flush-window "-1s"`},
		{[]string{etcd, "--idle-timeout=soon"}, `invalid argument "soon" for "--idle-timeout"`},
		{[]string{etcd, "--max-map-ops-per-second=0"}, `invalid --max-map-ops-per-second "0"`},
		{[]string{etcd, "--map-ops-burst=0"}, `invalid --map-ops-burst "0"`},
		{[]string{etcd, "--max-services=0"}, `invalid --max-services "0"`},
		{[]string{etcd, "--log-level=loud"}, `invalid --log-level "loud"`},
		{[]string{"--datapath=memory"}, `invalid --etcd-endpoints ""`},
		{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
		// dump and uninstall are bpf only: they have no --datapath.
		{[]string{"dump", "--datapath=memory"}, `unknown flag: --datapath`},
		{[]string{"uninstall", "--datapath=memory"}, `unknown flag: --datapath`},
		{[]string{"dump", "--log-format=xml"}, `invalid --log-format "xml"`},
		{[]string{etcd, "--shards=4097"}, `invalid --shards "4097"`},
		{[]string{etcd, "--cluster=a/b"}, `invalid --cluster "a/b"`},
	} {
		_, _, err := run(context.Background(), c.args...)
		if cliconfig.ExitCode(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", c.args, cliconfig.ExitCode(err), err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: %q, want one line starting %q", c.args, msg, c.want)
		}
	}
	t.Setenv("MESHRELAY_SHARDS", "many")
	if _, _, err := run(context.Background(), etcd, "--datapath=memory"); cliconfig.ExitCode(err) != 2 || !strings.Contains(err.Error(), "--shards") {
		t.Errorf("bad environment value: %v", err)
	}
}

// freeAddr returns a free loopback address.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunFallsBackToMemory runs the agent whose bpf datapath cannot be
// opened (the pin path is not on bpffs): without --datapath it falls back to
// memory and serves /readyz and /metrics; with --datapath=bpf it fails.
func TestRunFallsBackToMemory(t *testing.T) {
	endpoint := testenv.StartEtcd(t, embedetcd.Options{}).Endpoints()[0]
	metrics := freeAddr(t)
	pin := filepath.Join(t.TempDir(), "not-bpffs")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr string
	go func() {
		var err error
		_, stderr, err = run(ctx, "--etcd-endpoints="+endpoint, "--metrics-listen="+metrics, "--bpf-pin-path="+pin,
			"--cluster=test", "--service-cidrs=127.77.0.0/16")
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := get("http://" + metrics + "/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d after 20 s", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get("http://" + metrics + "/metrics"); code != http.StatusOK ||
		!strings.Contains(body, "meshrelay_nodeagent_ready 1") || !strings.Contains(body, `meshrelay_nodeagent_map_memlock_bytes{map="frontends"}`) {
		t.Errorf("/metrics = %d without the agent's metrics:\n%.2000s", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop")
	}
	if !strings.Contains(stderr, "using the memory datapath") {
		t.Errorf("no fallback warning in the log:\n%s", stderr)
	}

	_, _, err := run(context.Background(), "--etcd-endpoints="+endpoint, "--metrics-listen=", "--bpf-pin-path="+pin, "--datapath=bpf")
	if err == nil || cliconfig.ExitCode(err) != 1 || !strings.Contains(err.Error(), "bpf datapath") {
		t.Fatalf("explicit --datapath=bpf on a bad pin path: %v (exit %d), want a failure", err, cliconfig.ExitCode(err))
	}
}

// TestBPFRunDumpUninstall runs the agent with the bpf datapath (programs
// attached to a child cgroup), dumps the pinned maps while it runs, and
// uninstalls after it stopped.
func TestBPFRunDumpUninstall(t *testing.T) {
	pin := dpfake.PinDir(t, "meshrelay-cmd-test-")
	if err := cgroupclient.CheckCgroup2(datapath.DefaultCgroupPath); err != nil {
		t.Skipf("skipping: %v", err)
	}
	cg, err := cgroupclient.NewCgroup(datapath.DefaultCgroupPath, "meshrelay-cmd-test-")
	if err != nil {
		t.Skipf("skipping: cannot create a child cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := cgroupclient.RemoveCgroup(cg); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() { datapath.Uninstall(pin) }) // if the test failed before uninstalling

	endpoint := testenv.StartEtcd(t, embedetcd.Options{}).Endpoints()[0]
	writeService(t, endpoint)
	metrics := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := run(ctx, "--datapath=bpf", "--etcd-endpoints="+endpoint, "--metrics-listen="+metrics,
			"--bpf-pin-path="+pin, "--cgroup-path="+cg, "--cluster=test", "--services=ns/web", "--service-cidrs=127.77.0.0/16")
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := get("http://" + metrics + "/readyz"); code == http.StatusOK {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("agent exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz not ready after 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	links, err := os.ReadDir(filepath.Join(pin, "links"))
	if err != nil || len(links) == 0 {
		t.Fatalf("no program links pinned under %s: %v", pin, err)
	}

	var v dumpview.View
	eventually := time.Now().Add(20 * time.Second)
	for {
		out, _, err := run(context.Background(), "dump", "--bpf-pin-path="+pin)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("dump printed no JSON: %v\n%s", err, out)
		}
		if len(v.Frontends) > 0 || time.Now().After(eventually) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := `[{127.77.0.1:80/tcp 1 2 [{127.0.0.5:8080 1 1} {127.0.0.6:8080 2 1}]}]`
	if got := fmt.Sprint(v.Frontends); got != want || len(v.Problems) != 0 {
		t.Fatalf("dump: %s (problems %v)\nwant %s", got, v.Problems, want)
	}
	// Every pinned map's capacity and kernel memlock are in the dump; the
	// frontends map holds the one frontend and has grown no further than
	// its start size.
	maps := map[string]dumpview.MapView{}
	for _, m := range v.Maps {
		maps[m.Name] = m
		if m.MemlockBytes == 0 || m.MaxEntries <= 0 || m.Limit < m.MaxEntries {
			t.Errorf("dump: map %+v: want a memlock, a capacity and a limit ≥ capacity", m)
		}
	}
	if fe, ok := maps[datapath.MapFrontends]; !ok || fe.Entries != 1 || fe.MaxEntries >= fe.Limit {
		t.Errorf("dump: frontends map %+v (found %v), want 1 entry in a map smaller than its limit", fe, ok)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop")
	}
	if _, _, err := run(context.Background(), "dump", "--bpf-pin-path="+filepath.Join(pin, "none")); err == nil {
		t.Fatal("dump of an empty pin path succeeded")
	}

	out, _, err := run(context.Background(), "uninstall", "--bpf-pin-path="+pin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) || !strings.Contains(out, "removed every pin") {
		t.Fatalf("after uninstall: stat %v, output %q", err, out)
	}
}

// writeService stores service ns/web (VIP 127.77.0.1:80, two endpoints)
// in etcd under cluster "test".
func writeService(t *testing.T, endpoint string) {
	t.Helper()
	c, err := embedetcd.NewClient([]string{endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	writeServiceTo(t, c)
}

// writeServiceTo is writeService through c.
func writeServiceTo(t *testing.T, c *clientv3.Client) {
	t.Helper()
	space := keyspace.New("test")
	spec := &v1.ServiceSpec{Namespace: "ns", Name: "web", Vips: []string{"127.77.0.1"},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP}}}
	m := model.NewService(spec, []*v1.Endpoint{{Address: "127.0.0.5", Port: 8080, Weight: 1}, {Address: "127.0.0.6", Port: 8080, Weight: 1}})
	put := func(k string, msg proto.Message) {
		b, err := model.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(context.Background(), k, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	put(space.Spec(m.Key), m.Spec)
	put(space.Slice(m.Key, 0), m.Slices[0])
}
