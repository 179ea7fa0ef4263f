package dpfake

import (
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// CgroupEnv returns a fresh pin directory (PinDir) and a child cgroup of
// datapath.DefaultCgroupPath, both named from prefix, for a bpf datapath
// whose programs attach to that cgroup. When the test ends it uninstalls
// what was pinned (detaching the programs), then removes the cgroup. It
// skips the test, saying why, where BPF maps, pins or cgroup v2 programs
// are not available.
func CgroupEnv(tb testing.TB, prefix string) (pin, cgroup string) {
	tb.Helper()
	pin = PinDir(tb, prefix)
	if err := cgroupclient.CheckCgroup2(datapath.DefaultCgroupPath); err != nil {
		tb.Skipf("skipping BPF test: %v", err)
	}
	cg, err := cgroupclient.NewCgroup(datapath.DefaultCgroupPath, prefix)
	if err != nil {
		tb.Skipf("skipping BPF test: cannot create a child cgroup: %v", err)
	}
	tb.Cleanup(func() {
		if err := cgroupclient.RemoveCgroup(cg); err != nil {
			tb.Error(err)
		}
	})
	// Runs before the cgroup is removed (cleanups run last-in first-out).
	tb.Cleanup(func() {
		if err := datapath.Uninstall(pin); err != nil {
			tb.Errorf("uninstall: %v", err)
		}
	})
	return pin, cg
}
