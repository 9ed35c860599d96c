// Package client is a small HAIP client over WebSocket: the handshake,
// numbering, resume bookkeeping and a decoded read loop. The chat CLI
// (cmd/haipchat) and the tests use it; it is also a reference for writing
// clients in other languages against the edge.
//
// A Conn is safe for one reader and any number of senders at once.
package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/haip"
)

// Options configures Dial.
type Options struct {
	// URL is the edge's WebSocket URL, e.g. ws://127.0.0.1:8080/haip/websocket.
	URL string
	// Token is sent as ?token= (as the official SDK does), or as an
	// Authorization header when TokenInHeader is set.
	Token         string
	TokenInHeader bool
	// Session is the session id; empty means a fresh uuid.
	Session string
	// SessionInQuery also names the session in the URL (?session=), so
	// the edge checks it before the upgrade.
	SessionInQuery bool
	// LastRxSeq resumes: the edge continues after this seq. Nil means
	// "from now on" (no history).
	LastRxSeq *uint64
	// AcceptEvents is sent in HAI; nil means all 22 types.
	AcceptEvents []haip.Type
	// ReadLimit is the largest frame accepted; zero means 16 MiB.
	ReadLimit int64
	// Credit is the message credit per channel the client grants the edge
	// in its HAI (capabilities.flow_control); zero means 1,000. Read grants
	// more with FLOW_UPDATE as the client consumes messages, unless
	// ManualCredit is set (then the caller sends FLOW_UPDATE itself).
	Credit       int64
	ManualCredit bool
	// CreditBytes, when set, also grants byte credit per channel in the
	// HAI (with ManualCredit, the caller grants more).
	CreditBytes int64
	// NoFlowControl leaves flow_control out of the HAI: the edge then
	// paces delivery by the socket alone.
	NoFlowControl bool
	// Binary announces binary_frames: audio comes as an envelope and a
	// binary frame (see ReadMessage) instead of base64.
	Binary bool
}

// Conn is a HAIP connection.
type Conn struct {
	ws      *websocket.Conn
	session string
	seq     atomic.Uint64 // our own numbering
	lastRx  atomic.Uint64 // highest log seq received
	sendMu  sync.Mutex
	// Reader-owned credit bookkeeping: messages consumed per channel
	// since the last FLOW_UPDATE.
	window   int64
	manual   bool
	consumed map[haip.Channel]int64
	// Hello is the server's HAI payload.
	Hello haip.HelloPayload
}

// HTTPError is a connection refused before the upgrade, with the edge's
// JSON error body.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("refused with HTTP %d: %s", e.Status, e.Body) }

// Dial connects, sends HAI, and waits for the server's HAI. Messages that
// arrive before it (none, with our edge) are dropped.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("bad url: %w", err)
	}
	if o.Session == "" {
		o.Session = haip.NewUUID()
	}
	q := u.Query()
	hdr := http.Header{}
	if o.Token != "" {
		if o.TokenInHeader {
			hdr.Set("Authorization", "Bearer "+o.Token)
		} else {
			q.Set("token", o.Token)
		}
	}
	if o.SessionInQuery {
		q.Set("session", o.Session)
	}
	u.RawQuery = q.Encode()
	ws, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil && o.Token != "" {
		err = redacted{err: err, token: o.Token}
	}
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var body strings.Builder
			if resp.Body != nil {
				buf := make([]byte, 4096)
				n, _ := resp.Body.Read(buf)
				body.Write(buf[:n])
			}
			return nil, &HTTPError{Status: resp.StatusCode, Body: body.String()}
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	limit := o.ReadLimit
	if limit == 0 {
		limit = 16 << 20
	}
	ws.SetReadLimit(limit)
	credits := o.Credit
	if credits <= 0 {
		credits = 1000
	}
	c := &Conn{ws: ws, session: o.Session, window: credits, manual: o.ManualCredit || o.NoFlowControl, consumed: map[haip.Channel]int64{}}
	if o.LastRxSeq != nil {
		c.lastRx.Store(*o.LastRxSeq)
	}
	accept := o.AcceptEvents
	if accept == nil {
		accept = haip.AllTypes()
	}
	binary := o.Binary
	hello := haip.HelloPayload{HaipVersion: haip.Version, AcceptMajor: []int{haip.Major}, AcceptEvents: accept,
		Capabilities: &haip.Capabilities{BinaryFrames: &binary}}
	if !o.NoFlowControl {
		hello.Capabilities.FlowControl = &haip.FlowControlCaps{InitialCreditMessages: &credits}
		if o.CreditBytes > 0 {
			hello.Capabilities.FlowControl.InitialCreditBytes = &o.CreditBytes
		}
	}
	if o.LastRxSeq != nil {
		hello.LastRxSeq = fmt.Sprint(*o.LastRxSeq)
	}
	if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypeHAI, hello); err != nil {
		ws.CloseNow()
		return nil, err
	}
	for {
		env, err := c.Read(ctx)
		if err != nil {
			ws.CloseNow()
			return nil, fmt.Errorf("waiting for HAI: %w", err)
		}
		if env.Type == haip.TypeHAI {
			if err := env.DecodePayload(&c.Hello); err != nil {
				ws.CloseNow()
				return nil, err
			}
			// The edge's HAI carries the connection's position: the seq
			// delivery continues after (it differs from LastRxSeq when the
			// resume failed or retention dropped the asked range).
			c.lastRx.Store(uint64(env.Seq))
			return c, nil
		}
		if env.Type == haip.TypeError {
			var p haip.ErrorPayload
			_ = env.DecodePayload(&p)
			ws.CloseNow()
			return nil, &haip.Error{Code: p.Code, Message: p.Message, Detail: p.Detail}
		}
	}
}

// redacted hides the token in a dial error (it travels in the URL).
type redacted struct {
	err   error
	token string
}

func (r redacted) Error() string { return strings.ReplaceAll(r.err.Error(), r.token, "REDACTED") }
func (r redacted) Unwrap() error { return r.err }

// Session is the connection's session id.
func (c *Conn) Session() string { return c.session }

// LastSeq is the highest session-log seq received: what to resume from.
func (c *Conn) LastSeq() uint64 { return c.lastRx.Load() }

// Send builds and sends one envelope; it returns what was sent.
func (c *Conn) Send(ctx context.Context, ch haip.Channel, t haip.Type, payload any) (*haip.Envelope, error) {
	env, err := haip.New(c.session, ch, t, payload)
	if err != nil {
		return nil, err
	}
	return env, c.SendEnvelope(ctx, env)
}

// SendEnvelope numbers env (seq) and sends it.
func (c *Conn) SendEnvelope(ctx context.Context, env *haip.Envelope) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	env.Seq = haip.U64(c.seq.Add(1))
	data, err := haip.Encode(env)
	if err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// SendRaw sends one text frame as is.
func (c *Conn) SendRaw(ctx context.Context, typ websocket.MessageType, data []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.ws.Write(ctx, typ, data)
}

// SendText sends a user text message as START (with the text) and END,
// which makes the edge open a run for it. It returns the message id.
func (c *Conn) SendText(ctx context.Context, text string) (string, error) {
	id := haip.NewUUID()
	if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: id, Text: text}); err != nil {
		return "", err
	}
	if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: id}); err != nil {
		return "", err
	}
	return id, nil
}

// IsControl reports the connection-scoped types the edge sends outside the
// session log; they repeat the last log seq instead of taking a number.
func IsControl(t haip.Type) bool {
	switch t {
	case haip.TypeHAI, haip.TypePing, haip.TypePong, haip.TypeError, haip.TypeFlowUpdate,
		haip.TypePauseChannel, haip.TypeResumeChannel, haip.TypeReplayRequest:
		return true
	}
	return false
}

// Read returns the next envelope (see ReadMessage; a binary frame that
// follows an envelope is read and dropped).
func (c *Conn) Read(ctx context.Context) (*haip.Envelope, error) {
	env, _, err := c.ReadMessage(ctx)
	return env, err
}

// ReadMessage returns the next envelope and, for one announcing bin_len
// (two-frame mode), the binary frame that follows it. Log messages
// advance LastSeq and, unless ManualCredit, are credited back to the edge
// with FLOW_UPDATE once half the window is consumed; PINGs are answered
// with PONG before being returned.
func (c *Conn) ReadMessage(ctx context.Context) (*haip.Envelope, []byte, error) {
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return nil, nil, err
	}
	if typ != websocket.MessageText {
		return nil, nil, errors.New("unexpected binary frame")
	}
	env, err := haip.Decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("bad envelope from server: %w (%s)", err, data)
	}
	var bin []byte
	if env.BinLen != nil && *env.BinLen > 0 {
		typ, bin, err = c.ws.Read(ctx)
		if err != nil {
			return nil, nil, err
		}
		if typ != websocket.MessageBinary || int64(len(bin)) != *env.BinLen {
			return nil, nil, fmt.Errorf("expected a %d-byte binary frame after %s", *env.BinLen, env.Type)
		}
	}
	if !IsControl(env.Type) {
		if s := uint64(env.Seq); s > c.lastRx.Load() {
			c.lastRx.Store(s)
		}
		if !c.manual {
			c.consumed[env.Channel]++
			if n := c.consumed[env.Channel]; n >= c.window/2 {
				c.consumed[env.Channel] = 0
				if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypeFlowUpdate, haip.FlowUpdatePayload{Channel: env.Channel, AddMessages: &n}); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if env.Type == haip.TypePing {
		var p haip.PingPayload
		_ = env.DecodePayload(&p)
		if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePong, haip.PongPayload{Nonce: p.Nonce}); err != nil {
			return nil, nil, err
		}
	}
	return env, bin, nil
}

// SendBinary sends env (an AUDIO_CHUNK) in two-frame mode: the envelope
// with bin_len, then data as a binary frame, with nothing between them.
func (c *Conn) SendBinary(ctx context.Context, env *haip.Envelope, data []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	n := int64(len(data))
	env.BinLen = &n
	env.Seq = haip.U64(c.seq.Add(1))
	b, err := haip.Encode(env)
	if err != nil {
		return err
	}
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageBinary, data)
}

// Close closes the connection normally.
func (c *Conn) Close() error { return c.ws.Close(websocket.StatusNormalClosure, "bye") }

// CloseNow drops the connection without a close handshake, like a lost
// network.
func (c *Conn) CloseNow() error { return c.ws.CloseNow() }

// CloseStatus returns the WebSocket close code and reason in err, if any.
func CloseStatus(err error) (websocket.StatusCode, string) {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason
	}
	return -1, ""
}
