package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/coder/websocket"
)

// wsTransport is HAIP over WebSocket: one envelope per text frame both
// ways, binary frames after envelopes announcing bin_len.
type wsTransport struct {
	ws *websocket.Conn
}

var _ transport = (*wsTransport)(nil)

// dialWS upgrades and sends hello (the client's HAI) as the first frame.
// A ws:// or wss:// URL is dialled as given (any path: the edge also
// upgrades at "/"); an http(s) URL gets the edge's WebSocket path.
func dialWS(ctx context.Context, o *Options, hello []byte) (*wsTransport, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse url: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		if u, err = endpointURL(o.URL, pathWebSocket); err != nil {
			return nil, err
		}
	}
	hdr := http.Header{}
	token, session := "", ""
	if o.Token != "" {
		if o.TokenInHeader {
			hdr.Set("Authorization", "Bearer "+o.Token)
		} else {
			token = o.Token
		}
	}
	if o.SessionInQuery {
		session = o.Session
	}
	full := withQuery(u, "token", token, "session", session).String()
	ws, resp, err := websocket.Dial(ctx, full, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: o.HTTPClient})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, httpRefusal(resp)
		}
		return nil, fmt.Errorf("cannot dial: %w", redact(err, o.Token))
	}
	ws.SetReadLimit(o.readLimit())
	t := &wsTransport{ws: ws}
	if err := ws.Write(ctx, websocket.MessageText, hello); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("cannot send HAI: %w", err)
	}
	return t, nil
}

func (t *wsTransport) write(ctx context.Context, batch []outgoing) error {
	for _, o := range batch {
		if err := t.ws.Write(ctx, websocket.MessageText, o.data); err != nil {
			return fmt.Errorf("cannot send %s: %w", o.typ, err)
		}
	}
	return nil
}

func (t *wsTransport) writeBinary(ctx context.Context, env, bin []byte) error {
	if err := t.ws.Write(ctx, websocket.MessageText, env); err != nil {
		return fmt.Errorf("cannot send audio envelope: %w", err)
	}
	if err := t.ws.Write(ctx, websocket.MessageBinary, bin); err != nil {
		return fmt.Errorf("cannot send binary frame: %w", err)
	}
	return nil
}

func (t *wsTransport) read(ctx context.Context) (frame, error) {
	typ, data, err := t.ws.Read(ctx)
	if err != nil {
		return frame{}, readErr(ctx, fromWebSocket(err))
	}
	return frame{data: data, binary: typ == websocket.MessageBinary}, nil
}

func (t *wsTransport) readBinary(ctx context.Context) ([]byte, error) {
	typ, data, err := t.ws.Read(ctx)
	if err != nil {
		return nil, readErr(ctx, fromWebSocket(err))
	}
	if typ != websocket.MessageBinary {
		return nil, errors.New("expected a binary frame, got a text frame")
	}
	return data, nil
}

func (t *wsTransport) binaryFrames() bool { return true }
func (t *wsTransport) answersPing() bool  { return true }

// close sends a normal close frame and waits (briefly) for the edge's.
func (t *wsTransport) close() error { return t.ws.Close(websocket.StatusNormalClosure, "bye") }

func (t *wsTransport) closeNow() error { return t.ws.CloseNow() }
