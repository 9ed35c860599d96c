package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes the kernel kill a child if haipbench dies without
// running its clean-up (SIGKILL, a crash).
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
