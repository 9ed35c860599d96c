package localcluster

import (
	"net"
	"slices"
	"strings"
	"testing"
)

// Fixed edge ports are consecutive and must be free; 0 picks free ones.
// Every port of one reservation is distinct, NATS and edges together.
func TestReservePorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if _, _, err := reservePorts(natsPorts, busy, 1); err == nil || !strings.Contains(err.Error(), "not free") {
		t.Fatalf("busy port %d: %v", busy, err)
	}
	if _, _, err := reservePorts(natsPorts, 65535, 2); err == nil {
		t.Fatal("ports past 65535 accepted")
	}
	free, _, err := reservePorts(1, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, e, err := reservePorts(natsPorts, free[0], 1)
	if err != nil || len(n) != natsPorts || len(e) != 1 || e[0] != free[0] || slices.Contains(n, free[0]) {
		t.Fatalf("reservePorts(%d, %d, 1) = %v %v, %v", natsPorts, free[0], n, e, err)
	}
	// Many times over, so that a port handed out twice would show.
	for range 50 {
		n, e, err = reservePorts(natsPorts, 0, 3)
		if err != nil || len(n) != natsPorts || len(e) != 3 {
			t.Fatalf("reservePorts(%d, 0, 3) = %v %v, %v", natsPorts, n, e, err)
		}
		all := append(slices.Clone(n), e...)
		slices.Sort(all)
		if len(slices.Compact(all)) != natsPorts+3 {
			t.Fatalf("a port handed out twice: %v %v", n, e)
		}
	}
}
