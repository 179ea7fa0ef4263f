//go:build !linux

package main

import "syscall"

// childProcAttr: without Pdeathsig, children notice the harness is gone
// when their stdin reaches EOF.
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
