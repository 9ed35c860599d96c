//go:build !linux

package localcluster

import "syscall"

// sysProcAttr is the default: children outlive a parent that dies without
// calling Close.
func sysProcAttr() *syscall.SysProcAttr { return nil }
