package relay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
)

// rssChildEnv selects TestRSSChild's helper mode: "<etcd endpoint> <istiod
// address>".
const rssChildEnv = "MESHRELAY_RSS_CHILD"

// rssChildSynced is the line the helper prints once its first complete sync
// is in etcd and its writer is idle.
const rssChildSynced = "meshrelay-rss-child-synced"

// rssSlack is the absolute slack on top of the 10 % the peak RSS of a start
// with stray keys may exceed a clean start's: the Go runtime's heap growth
// and GC timing move a process's high-water mark by a few MiB between
// identical runs. A slice table sized by index 2·10⁹ would be gigabytes.
const rssSlack = 8 << 20

// TestStrayKeysPeakRSS: a relay started (as its own process) against an
// etcd holding non-canonical keys — slice index 2·10⁹, aliased
// endpoints/010, extra segments — on every tenth service peaks within 10 % (plus
// rssSlack) of the resident memory of a start against the same etcd without
// them, and the stray keys are gone afterwards.
func TestStrayKeysPeakRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two relay processes against 1,000 services (-short)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads the child's VmHWM from /proc (Linux only)")
	}
	const services = 1000
	w := newWorld(t, istiodsim.Options{Services: services, EndpointsPerService: 20, Namespaces: 10}, true)
	w.syncOnce()

	clean := w.childPeakRSS(nil)

	var stray []string
	for i, s := range w.sim.Truth() {
		if i%10 != 0 { // stray keys on every tenth service
			continue
		}
		prefix := w.space.ServicePrefix(keyspace.Service{Namespace: s.Namespace, Name: s.Name})
		stray = append(stray, prefix+"endpoints/2000000000", prefix+"endpoints/010", prefix+"endpoints/0/1", prefix+"spec/extra")
	}
	stray = append(stray, w.space.SyncedPrefix()+"07")
	for _, k := range stray {
		if _, err := w.client.Put(context.Background(), k, "stray"); err != nil {
			t.Fatal(err)
		}
	}
	withStray := w.childPeakRSS(stray)

	t.Logf("peak RSS of a relay start against %d services: clean %.1f MiB, with %d stray keys %.1f MiB (%+.1f %%)",
		services, mib(clean), len(stray), mib(withStray), 100*(float64(withStray)/float64(clean)-1))
	if limit := clean + clean/10 + rssSlack; withStray > limit {
		t.Fatalf("peak RSS with %d stray keys %.1f MiB > 1.1 × clean %.1f MiB + %.0f MiB",
			len(stray), mib(withStray), mib(clean), mib(rssSlack))
	}
	if err := w.matchTruth(); err != nil {
		t.Fatal(err)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// childPeakRSS starts TestRSSChild as a process against the world's etcd
// and simulator, waits until it has synced and every key of stray is gone
// from etcd, and returns its peak resident set size (VmHWM). The child is
// killed by its PID before childPeakRSS returns.
func (w *world) childPeakRSS(stray []string) uint64 {
	w.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRSSChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), rssChildEnv+"="+w.etcd.Endpoints()[0]+" "+w.sim.Addr())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe() // closed on return: the child exits
	if err != nil {
		w.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Process.Kill() // by PID: only the child this test started
		_ = cmd.Wait()
	}()

	synced := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == rssChildSynced {
				synced <- nil
				for sc.Scan() { // drain, so the child never blocks on stdout
				}
				return
			}
		}
		synced <- fmt.Errorf("child exited before syncing: %v", sc.Err())
	}()
	select {
	case err := <-synced:
		if err != nil {
			w.t.Fatalf("%v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(2 * testenv.Timeout):
		w.t.Fatalf("child not synced after %v", 2*testenv.Timeout)
	}
	testenv.Eventually(w.t, "stray keys deleted", func() error {
		keys := w.keys()
		for _, k := range stray {
			if _, ok := keys[k]; ok {
				return fmt.Errorf("%s still in etcd", k)
			}
		}
		return nil
	})
	hwm, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		w.t.Fatal(err)
	}
	return hwm
}

// peakRSS reads a process's VmHWM from /proc/<pid>/status, in bytes.
func peakRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmHWM %q: %w", v, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// TestRSSChild is TestStrayKeysPeakRSS's relay process: with rssChildEnv
// set, it runs a relay against the given etcd and Istiod, prints
// rssChildSynced once synced with its writer idle, and runs until its stdin
// closes or it is killed. Without rssChildEnv it is skipped.
func TestRSSChild(t *testing.T) {
	spec := os.Getenv(rssChildEnv)
	if spec == "" {
		t.Skip("helper process of TestStrayKeysPeakRSS")
	}
	etcdURL, istiod, ok := strings.Cut(spec, " ")
	if !ok {
		t.Fatalf("%s=%q: want \"<etcd endpoint> <istiod address>\"", rssChildEnv, spec)
	}
	r, err := New(testenv.Client(t, []string{etcdURL}), Options{
		Istiod:      istiod,
		RelayID:     "relay-test",
		SyncTimeout: 2 * time.Second,
		Sink:        etcdsink.Options{Window: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond, RequestTimeout: time.Second},
		Logger:      testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, r.Run)
	select {
	case <-r.Synced():
	case <-time.After(2 * testenv.Timeout):
		t.Fatalf("not synced; ready: %v", fmt.Sprint(r.Ready()))
	}
	testenv.EventuallyTrue(t, "writer idle", func() bool { return r.Stats().QueueDepth == 0 })
	fmt.Println(rssChildSynced)
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until the parent closes stdin
}
