//go:build !linux

package main

import "os/exec"

// setChildAttrs: only Linux can tie a child's life to its parent's; the
// clean-up on exit stops children elsewhere.
func setChildAttrs(*exec.Cmd) {}
