package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
)

// sseRetry is the reconnection delay suggested to EventSource clients.
const sseRetry = time.Second

// sseTransport carries HAIP server→client as Server-Sent Events: each
// envelope is one default "message" event whose id is its seq, so a
// browser EventSource resumes by itself (Last-Event-ID). Keep-alives are
// comments. The client→server half is POST (messages.go).
type sseTransport struct {
	name   string
	w      http.ResponseWriter
	rc     *http.ResponseController
	hello  *helloSource
	mu     sync.Mutex // held while writing
	buf    []byte
	closed atomic.Bool
	cancel context.CancelFunc // ends read
	ctx    context.Context
}

var _ transport = (*sseTransport)(nil)

func newSSETransport(name string, w http.ResponseWriter, hello *helloSource) *sseTransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &sseTransport{name: name, w: w, rc: http.NewResponseController(w), hello: hello, ctx: ctx, cancel: cancel}
}

func (t *sseTransport) kind() string { return t.name }

func (t *sseTransport) read(ctx context.Context) (frame, error) {
	ctx, cancel := mergeDone(ctx, t.ctx)
	defer cancel()
	return t.hello.next(ctx)
}

func (t *sseTransport) write(ctx context.Context, seq uint64, data []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = sse.AppendEvent(t.buf[:0], strconv.FormatUint(seq, 10), "", data)
	return t.flush(ctx, t.buf)
}

func (t *sseTransport) keepalive(ctx context.Context) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = sse.AppendComment(t.buf[:0], "ping")
	return true, t.flush(ctx, t.buf)
}

// The client cannot send on an SSE stream: a quiet client is not dead.
func (t *sseTransport) peerCanSend() bool { return false }

func (t *sseTransport) tellsCloseReason() bool { return true }

func (t *sseTransport) postedFlow() bool { return true }

func (t *sseTransport) flush(ctx context.Context, b []byte) error {
	if t.closed.Load() {
		return errors.New("sse: closed")
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = t.rc.SetWriteDeadline(dl)
	}
	if _, err := t.w.Write(b); err != nil {
		return err
	}
	return t.rc.Flush()
}

func (t *sseTransport) close(code CloseCode, reason string) {
	if !t.closed.CompareAndSwap(false, true) {
		return
	}
	if t.mu.TryLock() { // not in a write: say why, briefly
		_ = t.rc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = t.w.Write(sse.AppendComment(nil, fmt.Sprintf("close %d %s", code, reason)))
		_ = t.rc.Flush()
		t.mu.Unlock()
	}
	_ = t.rc.SetWriteDeadline(time.Now()) // unblock a stuck write
	t.cancel()
}

// abort: close never waits for the peer.
func (t *sseTransport) abort() { t.close(CloseGoingAway, "edge shutting down") }

// serveSSE serves GET /haip/sse, and GET /haip/stream (the official SDK's
// HTTP-streaming transport reads the same data: lines).
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	kind := "sse"
	if r.URL.Path == "/haip/stream" {
		kind = "stream"
	}
	a, ok := s.admit(w, r, kind)
	if !ok {
		return
	}
	defer a.slot.free()
	hello, err := s.newHelloSource(r, a, true)
	if err != nil {
		writeHTTPError(w, http.StatusBadRequest, "bad_request", haip.CodeProtocolViolation, err.Error(), nil)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer
	w.WriteHeader(http.StatusOK)
	t := newSSETransport(kind, w, hello)
	if err := t.flush(r.Context(), sse.AppendRetry(nil, sseRetry)); err != nil {
		hello.stop()
		return
	}
	s.newConn(t, a).serve()
}

// mergeDone returns a context cancelled when either a or b is done.
func mergeDone(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}
