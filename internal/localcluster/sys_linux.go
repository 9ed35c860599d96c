package localcluster

import "syscall"

// sysProcAttr puts a child in its own process group, so that a Ctrl-C in
// a terminal reaches only this process (which then stops the children in
// order), and makes the kernel SIGKILL the child when this process dies,
// so that a crashed or timed-out test binary leaves no servers behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
