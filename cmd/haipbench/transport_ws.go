package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/haip"
)

// wsReadLimit is the largest frame a bench client accepts.
const wsReadLimit = 16 << 20

// wsDialer opens HAIP WebSocket connections: ?token= in the URL, our HAI
// (without flow_control) as the first frame, then the edge's HAI.
type wsDialer struct{ ep endpoint }

// wsConn is a WebSocket bench connection. It also sends (the tools
// scenario's TOOL_CALLs).
type wsConn struct {
	ws      *websocket.Conn
	session string
	mu      sync.Mutex // held while writing
	seq     uint64     // our own numbering, under mu
}

func (d wsDialer) dial(ctx context.Context, o dialOptions) (benchConn, error) {
	return d.dialWS(ctx, o)
}

func (d wsDialer) dialWS(ctx context.Context, o dialOptions) (*wsConn, error) {
	if o.Session == "" {
		o.Session = haip.NewUUID()
	}
	hai, err := helloEnvelope(o.Session, o.LastRx)
	if err != nil {
		return nil, err
	}
	ws, resp, err := websocket.Dial(ctx, d.ep.wsURL()+"?token="+url.QueryEscape(d.ep.token), nil)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), d.ep.token, "REDACTED")
		if resp != nil && resp.StatusCode != 101 {
			return nil, fmt.Errorf("websocket dial: HTTP %d: %s", resp.StatusCode, msg)
		}
		return nil, fmt.Errorf("websocket dial: %s", msg)
	}
	ws.SetReadLimit(wsReadLimit)
	c := &wsConn{ws: ws, session: o.Session, seq: 1}
	if err := ws.Write(ctx, websocket.MessageText, hai); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("send HAI: %w", err)
	}
	for {
		env, err := c.Read(ctx)
		if err != nil {
			ws.CloseNow()
			return nil, fmt.Errorf("waiting for HAI: %w", err)
		}
		switch env.Type {
		case haip.TypeHAI:
			return c, nil
		case haip.TypeError:
			ws.CloseNow()
			return nil, handshakeError(env)
		}
	}
}

func (c *wsConn) Session() string { return c.session }

// Read returns the next envelope, answering PINGs.
func (c *wsConn) Read(ctx context.Context) (*haip.Envelope, error) {
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return nil, readErr(ctx, err)
	}
	if typ != websocket.MessageText {
		return nil, errors.New("unexpected binary frame")
	}
	env, err := haip.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("bad envelope from the edge: %w", err)
	}
	if env.Type == haip.TypePing {
		c.mu.Lock()
		c.seq++
		pong, err := pongFor(c.session, env, c.seq)
		if err == nil {
			err = c.ws.Write(ctx, websocket.MessageText, pong)
		}
		c.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("answer PING: %w", err)
		}
	}
	return env, nil
}

// Send numbers and sends one envelope of the connection's session.
func (c *wsConn) Send(ctx context.Context, ch haip.Channel, t haip.Type, payload any) error {
	env, err := haip.New(c.session, ch, t, payload)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	env.Seq = haip.U64(c.seq)
	data, err := haip.Encode(env)
	if err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// Close drops the connection without a close handshake.
func (c *wsConn) Close() error { return c.ws.CloseNow() }
