package nodeagent

import (
	"os"
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
)

// The bpf tests run their socket clients in a child cgroup, where the
// programs attach: the test binary re-executed by
// internal/testsupport/cgroupclient.
func TestMain(m *testing.M) {
	cgroupclient.RunIfChild()
	os.Exit(m.Run())
}
