//go:build !linux

package launch

import "syscall"

// childProcAttr: without Pdeathsig, children notice the harness is gone
// when their stdin reaches EOF.
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
