package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Corked writes wait for uncork and leave in one write; a peer that does
// not read makes uncork fail at its deadline; uncorked writes pass through.
func TestCorkConn(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &corkConn{Conn: a}
	c.corkWrites()
	for _, p := range []string{"one ", "two ", "three"} {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := b.Read(buf) // one read: one write on the other side
		got <- buf[:n]
	}()
	if err := c.uncork(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if g := <-got; !bytes.Equal(g, []byte("one two three")) {
		t.Fatalf("peer read %q in one read", g)
	}
	if c.buf != nil {
		t.Fatal("uncorked connection still holds a buffer")
	}

	// Uncorked: straight through.
	go func() { _, _ = c.Write([]byte("direct")) }()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "direct" {
		t.Fatalf("%q %v", buf, err)
	}

	// A peer that does not read: uncork gives up at the deadline.
	c.corkWrites()
	_, _ = c.Write([]byte("stuck"))
	if err := c.uncork(time.Now().Add(50 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("uncork to a stuck peer: %v", err)
	}
}
