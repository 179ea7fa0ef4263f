package dpfake

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// PinDir returns a fresh directory named prefix+random under
// datapath.BPFFSMount for a bpf datapath's pins, removed (unpinning what
// is in it) when the test ends. It skips the test, saying why, unless the
// process is root and can create the directory.
func PinDir(tb testing.TB, prefix string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping BPF test: pinned BPF maps need root (CAP_BPF, CAP_SYS_ADMIN)")
	}
	if err := os.MkdirAll(datapath.BPFFSMount, 0o755); err != nil {
		tb.Skipf("skipping BPF test: no %s: %v", datapath.BPFFSMount, err)
	}
	dir, err := os.MkdirTemp(datapath.BPFFSMount, prefix)
	if err != nil {
		tb.Skipf("skipping BPF test: cannot create a pin directory in %s: %v", datapath.BPFFSMount, err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Clean(dir)
}
