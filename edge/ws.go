package edge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/coder/websocket"
)

// wsTransport carries HAIP over WebSocket: one envelope per text frame.
type wsTransport struct {
	c    *websocket.Conn
	once sync.Once
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

func (w *wsTransport) close(code CloseCode, reason string) {
	w.once.Do(func() {
		if len(reason) > maxCloseReason {
			reason = reason[:maxCloseReason]
		}
		// Close waits briefly for the peer's close frame; a peer that is
		// gone or stuck is dropped when that wait ends.
		_ = w.c.Close(websocket.StatusCode(code), reason)
	})
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
	opts := &websocket.AcceptOptions{}
	if s.cfg.EnableCORS {
		if len(s.cfg.CORSOrigins) == 0 {
			opts.InsecureSkipVerify = true // every origin, as configured
		} else {
			opts.OriginPatterns = s.cfg.CORSOrigins
		}
	}
	wc, err := websocket.Accept(smallBuffers{w}, r, opts)
	if err != nil {
		return // Accept has answered the request
	}
	wc.SetReadLimit(s.cfg.MaxMessageBytes)
	// The connection runs on goroutines of its own and the handler
	// returns: the socket is hijacked, so the HTTP server's per-request
	// state (request, headers, buffers) and the handler's deep stack are
	// not kept for the life of the connection.
	s.newConn(&wsTransport{c: wc}, a).start()
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
type smallBuffers struct{ http.ResponseWriter }

// Unwrap gives http.ResponseController the wrapped writer.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	br, bw := brw.Reader, brw.Writer
	if br.Buffered() == 0 {
		br = bufio.NewReaderSize(nc, wsReadBuffer)
	}
	if bw.Buffered() == 0 {
		bw = bufio.NewWriterSize(nc, wsWriteBuffer)
	}
	return nc, bufio.NewReadWriter(br, bw), nil
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
