package e2e

import (
	"os"
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
)

// TestMain lets the bpf tests re-execute this binary as a socket client
// inside a child cgroup (see internal/testsupport/cgroupclient).
func TestMain(m *testing.M) {
	cgroupclient.RunIfChild()
	os.Exit(m.Run())
}
