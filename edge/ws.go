package edge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wsTransport carries HAIP over WebSocket: one envelope per text frame.
type wsTransport struct {
	c      *websocket.Conn
	raw    net.Conn  // the hijacked socket under c
	corked *corkConn // nil when the server's own writer was handed over
	once   sync.Once
}

var _ transport = (*wsTransport)(nil)

func (w *wsTransport) kind() string { return "websocket" }

// read ignores ctx: a context that can be cancelled makes the WebSocket
// library register a cancellation hook for every read, which an idle
// connection holds for its whole life. The read ends instead when the
// connection is closed, which every way out of the writer does.
func (w *wsTransport) read(context.Context) (frame, error) {
	typ, data, err := w.c.Read(context.Background())
	if err != nil {
		return frame{}, err
	}
	return frame{binary: typ == websocket.MessageBinary, data: data}, nil
}

func (w *wsTransport) write(ctx context.Context, _ uint64, data []byte) error {
	return w.c.Write(ctx, websocket.MessageText, data)
}

// keepalive: WebSocket uses HAIP PING, which the peer answers.
func (w *wsTransport) keepalive(context.Context) (bool, error) { return false, nil }

func (w *wsTransport) peerCanSend() bool { return true }

func (w *wsTransport) tellsCloseReason() bool { return true }

func (w *wsTransport) postedFlow() bool { return false }

func (w *wsTransport) close(code CloseCode, reason string) {
	w.once.Do(func() {
		if w.corked != nil {
			w.corked.release()
		}
		if len(reason) > maxCloseReason {
			reason = reason[:maxCloseReason]
		}
		// Close waits briefly for the peer's close frame; a peer that is
		// gone or stuck is dropped when that wait ends.
		_ = w.c.Close(websocket.StatusCode(code), reason)
	})
}

// abort closes the socket under the WebSocket: a close handshake waiting
// for a stuck peer ends at once.
func (w *wsTransport) abort() {
	if w.raw == nil { // not hijacked through smallBuffers
		_ = w.c.CloseNow()
		return
	}
	_ = w.raw.Close()
}

// maxCloseReason is the longest close reason a WebSocket close frame holds.
const maxCloseReason = 123

// serveWebSocket authenticates and authorises before the upgrade, so a
// bad token or a foreign session gets an HTTP status and a JSON body, not
// a socket that closes (which makes some clients reconnect in a storm).
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	a, ok := s.admit(w, r, "websocket")
	if !ok {
		return
	}
	// The edge's origin policy (Server.cors, before every handler) has
	// refused a foreign Origin already, with the edge's JSON error; the
	// library's own check (host patterns, which would glob-match the
	// brackets of an IPv6 origin) would only disagree with it.
	opts := &websocket.AcceptOptions{InsecureSkipVerify: true}
	sb := &smallBuffers{ResponseWriter: w}
	wc, err := websocket.Accept(sb, r, opts)
	if err != nil {
		a.slot.free()
		return // Accept has answered the request
	}
	wc.SetReadLimit(s.cfg.MaxMessageBytes)
	// The connection runs on goroutines of its own and the handler
	// returns: the socket is hijacked, so the HTTP server's per-request
	// state (request, headers, buffers) and the handler's deep stack are
	// not kept for the life of the connection.
	s.newConn(&wsTransport{c: wc, raw: sb.raw, corked: sb.cork}, a).start()
}

// Buffer sizes of a WebSocket connection, instead of the HTTP server's
// 4 KiB each way, which the WebSocket library would keep for the life of
// the connection. A read larger than the buffer bypasses it; a frame
// larger than the write buffer costs one more system call (typical
// envelopes are a few hundred bytes and take one).
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 1 << 10
)

// smallBuffers hands the WebSocket library a hijacked connection with
// buffers of wsReadBuffer and wsWriteBuffer bytes. Bytes the HTTP server
// has already buffered are kept: then its own buffers are handed over.
// Its writes go through a corkConn, so that a batch of frames can leave
// in one system call.
type smallBuffers struct {
	http.ResponseWriter
	raw  net.Conn
	cork *corkConn
}

// Unwrap gives http.ResponseController the wrapped writer.
func (w *smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker.
func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	w.raw = nc
	br, bw := brw.Reader, brw.Writer
	if br.Buffered() == 0 {
		br = bufio.NewReaderSize(nc, wsReadBuffer)
	}
	w.cork = &corkConn{Conn: nc}
	if bw.Buffered() == 0 {
		bw = bufio.NewWriterSize(w.cork, wsWriteBuffer)
	} else {
		w.cork = nil // the server's writer goes straight to the socket
	}
	return nc, bufio.NewReadWriter(br, bw), nil
}

// corkConn is the write side of a WebSocket connection. The WebSocket
// library flushes after every frame, one system call per message; while
// corked, those flushes collect here instead, and uncork writes them in
// one go with its own deadline. The edge corks around a catch-up batch
// (at most CATCHUP_BYTES), so a client catching up costs one system call
// per batch rather than per message. Uncorked, writes pass straight
// through.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

// maxCork bounds what a corked connection holds before it writes anyway.
const maxCork = 512 << 10

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked && len(c.buf)+len(p) <= maxCork {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *corkConn) corkWrites() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was collected, within the deadline, and passes
// later writes straight through. The buffer is dropped: an idle
// connection holds none.
func (c *corkConn) uncork(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_ = c.Conn.SetWriteDeadline(deadline)
	err := c.flushLocked()
	_ = c.Conn.SetWriteDeadline(time.Time{})
	c.buf = nil
	return err
}

// release uncorks before a close, so the close frame is not held back.
func (c *corkConn) release() { _ = c.uncork(time.Now().Add(time.Second)) }

// corker is a transport that can hold its writes and send them at once.
type corker interface {
	cork()
	uncork(deadline time.Time) error
}

var _ corker = (*wsTransport)(nil)

func (w *wsTransport) cork() {
	if w.corked != nil {
		w.corked.corkWrites()
	}
}

func (w *wsTransport) uncork(deadline time.Time) error {
	if w.corked == nil {
		return nil
	}
	return w.corked.uncork(deadline)
}

// binaryWriter is a transport that can send a binary frame after an
// envelope (HAIP two-frame mode). Only WebSocket can.
type binaryWriter interface {
	writeBinary(ctx context.Context, data []byte) error
}

var _ binaryWriter = (*wsTransport)(nil)

func (w *wsTransport) writeBinary(ctx context.Context, data []byte) error {
	return w.c.Write(ctx, websocket.MessageBinary, data)
}
