package nodeagent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// maxHostileRSS is the stated bound of the test process's peak RSS
// (VmHWM: etcd, the agent and the test) while the agent reads hostile
// values; a spec whose endpoint_slices sizes an allocation would need
// 32 GiB.
const maxHostileRSS = 256 << 20

// With hostile values for two declared services, an agent loads the good
// declared services, applies later changes to them, keeps its memory
// bounded, and counts each hostile value.
func TestHostileValues(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testHostileValues(t, newMemory()) })
	t.Run("bpf", func(t *testing.T) { testHostileValues(t, openTestBPF(t)) })
}

func testHostileValues(t *testing.T, dp datapath.Datapath) {
	e := newEnv(t)
	good1, good2 := testService("ns", 1, 3, 0), testService("ns", 2, 4, 0)
	e.write(good1, 1)
	e.write(good2, 1)
	huge, garbage := keyspace.Service{Namespace: "ns", Name: "huge"}, keyspace.Service{Namespace: "ns", Name: "garbage"}

	// huge: a spec counting 4294967295 slices, and a slice claiming to be
	// another slice; garbage: a VIP outside the service CIDRs, then bytes
	// that are no ServiceSpec.
	spec := func(svc keyspace.Service, vip string, slices uint32) string {
		b, err := model.Marshal(&v1.ServiceSpec{Namespace: svc.Namespace, Name: svc.Name, Vips: []string{vip},
			Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080}}, EndpointSlices: slices})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sl, err := model.Marshal(&v1.EndpointSlice{Slice: 7, Endpoints: []*v1.Endpoint{{Address: "127.0.9.1", Port: 8080}}})
	if err != nil {
		t.Fatal(err)
	}
	e.put(space.Spec(huge), spec(huge, "127.77.9.1", 4294967295))
	e.put(space.Slice(huge, 0), string(sl))
	e.put(space.Spec(garbage), spec(garbage, "127.0.0.1", 0))
	e.markSynced()

	ag := start(t, e.client, e.client, dp, Options{
		Services:     []keyspace.Service{good1.Key, good2.Key, huge, garbage},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")},
		OnDemand:     false,
	})
	holds(t, dp, expected(good1, good2))
	testenv.Eventually(t, "ready with the hostile services held", func() error {
		if ok, why := ag.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
	e.put(space.Spec(garbage), "\x0a\xff\xff\xff\xff\x0f garbage")

	// Later changes to the good services are applied.
	good1b := testService("ns", 1, 5, 20)
	e.write(good1b, 2)
	holds(t, dp, expected(good1b, good2))

	want := map[string]int64{
		etcdsource.ReasonSliceCount: 1, etcdsource.ReasonKeyMismatch: 1,
		etcdsource.ReasonVIPOutside: 1, etcdsource.ReasonDecode: 1,
	}
	testenv.Eventually(t, "each hostile value counted once", func() error {
		got := ag.Stats().Source.Invalid
		for r, n := range want {
			if got[r] != n {
				return fmt.Errorf("invalid values %v, want %v", got, want)
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("invalid values %v, want %v", got, want)
		}
		return nil
	})

	runtime.GC()
	rss, err := peakRSS()
	if err != nil {
		t.Logf("peak RSS unknown: %v", err)
		return
	}
	t.Logf("peak RSS of the test process: %d MiB (bound %d MiB)", rss>>20, maxHostileRSS>>20)
	if rss > maxHostileRSS {
		t.Errorf("peak RSS %d MiB, past the %d MiB bound", rss>>20, maxHostileRSS>>20)
	}
}

// peakRSS returns the process's peak resident set size (VmHWM).
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// openTestBPF opens the bpf datapath with fresh pins and a child cgroup to
// attach to, removed by the test; it skips where that is not possible.
func openTestBPF(t *testing.T) *datapath.BPF {
	t.Helper()
	b, _ := openTestBPFCgroup(t)
	return b
}

// openTestBPFCgroup is openTestBPF, also returning the child cgroup the
// programs attach to, for clients (cgroupclient.Start) to run in.
func openTestBPFCgroup(t *testing.T) (*datapath.BPF, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping BPF test: needs root (CAP_BPF, CAP_SYS_ADMIN) for maps, pins and cgroup programs")
	}
	if err := cgroupclient.CheckCgroup2(datapath.DefaultCgroupPath); err != nil {
		t.Skipf("skipping BPF test: %v", err)
	}
	pin, err := os.MkdirTemp(datapath.BPFFSMount, "meshrelay-hostile-")
	if err != nil {
		t.Skipf("skipping BPF test: no bpf filesystem at %s: %v", datapath.BPFFSMount, err)
	}
	cg, err := cgroupclient.NewCgroup(datapath.DefaultCgroupPath, "meshrelay-hostile-")
	if err != nil {
		os.RemoveAll(pin)
		t.Skipf("skipping BPF test: cannot create a child cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := cgroupclient.RemoveCgroup(cg); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() {
		if err := datapath.Uninstall(pin); err != nil {
			t.Errorf("uninstall: %v", err)
		}
		os.RemoveAll(pin)
	})
	b, err := datapath.OpenBPF(datapath.BPFOptions{PinPath: pin, Logger: slog.New(slog.DiscardHandler),
		Programs: datapath.ProgramsOptions{CgroupPath: cg, MissInterval: 50 * time.Millisecond}})
	if err != nil {
		t.Skipf("skipping BPF test: cannot open BPF maps: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, cg
}
