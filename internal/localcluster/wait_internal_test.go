package localcluster

import (
	"net"
	"strings"
	"testing"
)

// Fixed edge ports are consecutive and must be free; 0 picks free ones.
func TestEdgePorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if _, err := edgePorts(busy, 1); err == nil || !strings.Contains(err.Error(), "not free") {
		t.Fatalf("busy port %d: %v", busy, err)
	}
	if _, err := edgePorts(65535, 2); err == nil {
		t.Fatal("ports past 65535 accepted")
	}
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := edgePorts(free[0], 1)
	if err != nil || len(got) != 1 || got[0] != free[0] {
		t.Fatalf("edgePorts(%d, 1) = %v, %v", free[0], got, err)
	}
	got, err = edgePorts(0, 3)
	if err != nil || len(got) != 3 || got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
		t.Fatalf("edgePorts(0, 3) = %v, %v", got, err)
	}
}
