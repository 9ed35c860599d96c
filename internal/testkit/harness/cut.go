package harness

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// Cutter records the connections a handler hijacks (WebSocket upgrades),
// so that a test can cut them as a lost network would: httptest forgets
// hijacked connections. Serve an edge through its Wrap
// ([Fabric.EdgeWrapped]).
type Cutter struct {
	mu    sync.Mutex
	conns []net.Conn
	total int
}

// Wrap serves next, recording the connections it hijacks.
func (h *Cutter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&recordingWriter{ResponseWriter: w, h: h}, r)
	})
}

// Cut closes every hijacked connection from the server side.
func (h *Cutter) Cut() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.conns = nil
}

// Count is how many connections were hijacked so far.
func (h *Cutter) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

type recordingWriter struct {
	http.ResponseWriter
	h *Cutter
}

// Unwrap gives http.ResponseController the writer underneath, which the
// streaming transports flush and switch to full duplex.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recordingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.h.mu.Lock()
		w.h.conns = append(w.h.conns, c)
		w.h.total++
		w.h.mu.Unlock()
	}
	return c, rw, err
}
