package cgroupclient

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// CheckCgroup2 returns an error unless path is a cgroup v2 directory.
func CheckCgroup2(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%s is not a cgroup v2 hierarchy", path)
	}
	return nil
}

// NewCgroup creates a child cgroup of parent named prefix<random>.
func NewCgroup(parent, prefix string) (string, error) {
	if err := CheckCgroup2(parent); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", fmt.Errorf("create cgroup under %s: %w", parent, err)
	}
	return filepath.Clean(dir), nil
}

// RemoveCgroup removes a cgroup made by NewCgroup once its processes have
// left (rmdir fails while they are still exiting, so it retries for 5 s).
func RemoveCgroup(dir string) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}
