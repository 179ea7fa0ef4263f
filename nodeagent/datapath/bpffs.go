package datapath

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// BPFFSMount is where the bpf filesystem is mounted when absent.
const BPFFSMount = "/sys/fs/bpf"

var mountMu sync.Mutex

// ensureBPFFS makes sure dir exists on a bpf filesystem, mounting one at
// BPFFSMount first if dir is below it and nothing is mounted there.
func ensureBPFFS(dir string) error {
	dir = filepath.Clean(dir)
	if dir == BPFFSMount || strings.HasPrefix(dir, BPFFSMount+"/") {
		mountMu.Lock()
		ok, err := isBPFFS(BPFFSMount)
		if err == nil && !ok {
			err = unix.Mount("bpf", BPFFSMount, "bpf", 0, "mode=0700")
			if err != nil {
				err = fmt.Errorf("mount bpffs at %s: %w", BPFFSMount, err)
			}
		}
		mountMu.Unlock()
		if err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	ok, err := isBPFFS(dir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("pin path %s is not on a bpf filesystem", dir)
	}
	return nil
}

func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}
