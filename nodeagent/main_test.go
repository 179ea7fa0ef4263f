package nodeagent

import (
	"os"
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
)

// The bpf tests run their socket clients in a child cgroup, where the
// programs attach: the test binary re-executed by
// internal/testsupport/cgroupclient. The fan-out benchmark's etcd runs in
// a child too (fanout_bench_test.go).
func TestMain(m *testing.M) {
	cgroupclient.RunIfChild()
	if os.Getenv(benchEtcdEnv) != "" {
		serveBenchEtcd()
		return
	}
	os.Exit(m.Run())
}
