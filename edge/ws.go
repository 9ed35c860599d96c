package edge

import (
	"context"
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

func (w *wsTransport) read(ctx context.Context) (frame, error) {
	typ, data, err := w.c.Read(ctx)
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
	wc, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept has answered the request
	}
	wc.SetReadLimit(s.cfg.MaxMessageBytes)
	s.newConn(&wsTransport{c: wc}, a).serve()
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
