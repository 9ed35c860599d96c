package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/ndjson"
)

// streamTransport carries HAIP as NDJSON both ways on one HTTP request
// (POST /haip/stream): one envelope per line, the request body read while
// the response is written. HTTP/1.1 needs full duplex enabled; HTTP/2 is
// duplex by nature.
//
// Half duplex: a client that cannot stream its request body sends what it
// has (at least its HAI, or nothing with ?session=) and ends the body;
// the response keeps streaming, and further envelopes go by POST
// (messages.go). After the body ends, a quiet client is not dead.
type streamTransport struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	body  *ndjson.Reader
	hello *helloSource
	lines int // records read from the body (reader only)
	eof   atomic.Bool
	mu    sync.Mutex // held while writing
	buf   []byte

	closed atomic.Bool
	ctx    context.Context
	cancel context.CancelFunc
}

var _ transport = (*streamTransport)(nil)

func (t *streamTransport) kind() string { return "stream" }

func (t *streamTransport) read(ctx context.Context) (frame, error) {
	if !t.eof.Load() {
		line, err := t.body.Next()
		var tooLong *ndjson.LineTooLongError
		switch {
		case err == nil:
			t.lines++
			return frame{data: append([]byte(nil), line...)}, nil
		case errors.As(err, &tooLong):
			t.lines++
			return frame{tooLarge: true}, nil
		case errors.Is(err, io.EOF):
			t.eof.Store(true)
		default:
			return frame{}, err // the peer went, or the connection ended
		}
	}
	ctx, cancel := mergeDone(ctx, t.ctx)
	defer cancel()
	if t.lines > 0 {
		// The body carried the handshake and has ended: the client sends
		// by POST now, and nothing more is read here. The request ends
		// when the client goes (the server reads the socket past the
		// body and cancels the request): then the connection ends at
		// once, not when writes to the dead socket finally fail.
		select {
		case <-ctx.Done():
		case <-t.hello.done:
		}
		return frame{}, context.Canceled
	}
	return t.hello.next(ctx)
}

func (t *streamTransport) write(ctx context.Context, _ uint64, data []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	if t.buf, err = ndjson.Append(t.buf[:0], data); err != nil {
		return err
	}
	if t.closed.Load() {
		return errors.New("stream: closed")
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = t.rc.SetWriteDeadline(dl)
	}
	if _, err := t.w.Write(t.buf); err != nil {
		return err
	}
	return t.rc.Flush()
}

// keepalive: NDJSON has no comments; the writer sends HAIP PINGs.
func (t *streamTransport) keepalive(context.Context) (bool, error) { return false, nil }

func (t *streamTransport) peerCanSend() bool { return !t.eof.Load() }

func (t *streamTransport) tellsCloseReason() bool { return false }

func (t *streamTransport) postedFlow() bool { return true }

func (t *streamTransport) close(CloseCode, string) {
	if !t.closed.CompareAndSwap(false, true) {
		return
	}
	// NDJSON cannot carry a close reason; the ERROR before it, if any, did.
	_ = t.rc.SetWriteDeadline(time.Now())
	_ = t.rc.SetReadDeadline(time.Now()) // unblock the body reader
	t.cancel()
}

// abort: close never waits for the peer.
func (t *streamTransport) abort() { t.close(CloseGoingAway, "") }

// serveStream serves POST /haip/stream: full-duplex NDJSON, or, with
// X-HAIP-Message: true (the official SDK's upstream), one POSTed message.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	if isMessagePost(r) {
		s.serveMessages(w, r)
		return
	}
	// A refusal ends the connection: the server would otherwise read the
	// rest of the request body before answering, and a stream's body
	// does not end (HTTP/1.1; HTTP/2 ignores the header).
	w.Header().Set("Connection", "close")
	if !requireJSONBody(w, r, false) {
		return
	}
	a, ok := s.admit(w, r, "stream")
	if !ok {
		return
	}
	w.Header().Del("Connection")
	defer a.slot.free()
	hello, err := s.newHelloSource(r, a, false)
	if err != nil {
		writeHTTPError(w, http.StatusBadRequest, "bad_request", haip.CodeProtocolViolation, err.Error(), nil)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // HTTP/1.1; HTTP/2 needs nothing
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache, no-transform")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		hello.stop()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &streamTransport{w: w, rc: rc, body: ndjson.NewReader(r.Body, int(s.cfg.MaxMessageBytes)), hello: hello, ctx: ctx, cancel: cancel}
	s.newConn(t, a).serve()
}
