package main

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// requiredCaps are the capabilities the bpf datapath needs in the agent's
// effective set: loading programs and maps (CAP_BPF, or CAP_SYS_ADMIN on
// kernels before 5.8 that lack it) and attaching them to a cgroup
// (CAP_NET_ADMIN). The chart grants exactly these (docs/operations.md).
var requiredCaps = []struct {
	name  string
	anyOf []uint
}{
	{"CAP_BPF", []uint{unix.CAP_BPF, unix.CAP_SYS_ADMIN}},
	{"CAP_NET_ADMIN", []uint{unix.CAP_NET_ADMIN}},
}

// effectiveCaps returns the calling thread's effective capability set.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// missingCaps names the required capabilities eff lacks.
func missingCaps(eff uint64) []string {
	var missing []string
	for _, c := range requiredCaps {
		has := false
		for _, bit := range c.anyOf {
			has = has || eff&(1<<bit) != 0
		}
		if !has {
			missing = append(missing, c.name)
		}
	}
	return missing
}

// checkCapabilities fails unless the process holds the capabilities the
// bpf datapath needs: it checks capabilities, not euid 0, so the agent runs
// without privileged: true.
func checkCapabilities() error {
	eff, err := effectiveCaps()
	if err != nil {
		return err
	}
	if m := missingCaps(eff); len(m) > 0 {
		return fmt.Errorf("needs %s in the effective capability set (CAP_SYS_ADMIN stands in for CAP_BPF before Linux 5.8)", strings.Join(m, ", "))
	}
	return nil
}
