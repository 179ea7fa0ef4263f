package launch

import "syscall"

// childProcAttr makes the kernel kill a child when the harness dies, even
// by SIGKILL (PR_SET_PDEATHSIG).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
