package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/haip"
)

// defaultCredit is the message credit per channel granted when
// Options.Credit is zero.
const defaultCredit = 1000

// Options configures Dial.
type Options struct {
	// URL is the edge. For the WebSocket transport, a ws:// or wss:// URL
	// is dialled as given (e.g. ws://127.0.0.1:8080/haip/websocket). The
	// other transports, and the WebSocket given an http(s) URL, use the
	// edge's own paths under the URL's scheme, host and path prefix: a
	// path ending in /haip/websocket, /haip/sse, /haip/stream or
	// /haip/messages (or "/") is cut back to what comes before it. So
	// ws://host/haip/websocket and http://host both reach /haip/sse for
	// SSE.
	URL string
	// Transport is one of TransportWebSocket (the default when empty),
	// TransportSSE, TransportStream and TransportStreamHalf.
	Transport string
	// HTTPClient carries the SSE and NDJSON requests and the POSTs (and the
	// WebSocket's upgrade); nil means http.DefaultClient. Each SSE or
	// NDJSON connection holds one of its connections (HTTP/1.1) or streams
	// (HTTP/2) for its life. It must have no Timeout: connections are long.
	HTTPClient *http.Client
	// Token is sent as ?token= on the connection's request (as the
	// official SDK does), or as an Authorization header when
	// TokenInHeader is set. POSTs always carry it in the header.
	Token         string
	TokenInHeader bool
	// Session is the session id; empty means a fresh uuid.
	Session string
	// SessionInQuery also names the session in the URL (?session=), so
	// that the edge checks it before the upgrade (WebSocket, full-duplex
	// stream). SSE and the half-duplex stream always do.
	SessionInQuery bool
	// LastRxSeq resumes: the edge continues after this seq. Nil means
	// "from now on" (no history). It goes in the HAI, or as Last-Event-ID
	// on SSE.
	LastRxSeq *uint64
	// AcceptEvents is sent in HAI; nil means all 22 types. The edge builds
	// an SSE stream's HAI itself: there, every type comes.
	AcceptEvents []haip.Type
	// ReadLimit is the largest frame, SSE event or NDJSON line accepted;
	// zero means 16 MiB.
	ReadLimit int64
	// Credit is the message credit per channel the client grants the edge
	// (capabilities.flow_control in its HAI; on SSE, a FLOW_UPDATE per
	// channel POSTed right after the handshake); zero means 1,000. Read
	// grants more with FLOW_UPDATE as the client consumes messages, unless
	// ManualCredit is set (then the caller sends FLOW_UPDATE itself).
	Credit       int64
	ManualCredit bool
	// CreditBytes, when set, also grants byte credit per channel (with
	// ManualCredit, the caller grants more).
	CreditBytes int64
	// NoFlowControl grants no credit at all: the edge then paces delivery
	// by the socket alone.
	NoFlowControl bool
	// Binary announces binary_frames (WebSocket only): audio comes as an
	// envelope and a binary frame (see ReadMessage) instead of base64.
	Binary bool
	// Dedupe makes Read drop a log message whose seq is at or below
	// LastSeq (one already received, e.g. again after a resume from an
	// older seq, or replayed on request). Off by default: Read returns
	// every envelope the edge sends.
	Dedupe bool
	// Conversation "both" asks the edge for the user side of the
	// conversation too (capabilities.conversation): envelopes stored by
	// this user's connections and devices, each with the seq of the last
	// message delivered, de-duplicated by id.
	Conversation string
}

// Conn is a HAIP connection over one of the transports. See the package
// documentation for what may run concurrently.
type Conn struct {
	t         transport
	transport string
	session   string
	seq       atomic.Uint64 // our own numbering
	lastRx    atomic.Uint64 // highest log seq received
	sendMu    sync.Mutex    // held while numbering and writing
	// Reader-owned credit bookkeeping: messages consumed per channel
	// since the last FLOW_UPDATE.
	window   int64
	manual   bool
	dedupe   bool
	consumed map[haip.Channel]int64
	// Hello is the server's HAI payload.
	Hello haip.HelloPayload
}

// HTTPError is a connection (or a POST) refused by the edge before any
// HAIP exchange, with the edge's JSON error body.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("refused with HTTP %d: %s", e.Status, e.Body) }

// Dial connects with o.Transport, sends HAI (the edge builds an SSE
// stream's from the request), and waits for the server's HAI. A refusal
// before the stream starts is an *HTTPError; an ERROR in place of the
// server's HAI is a *haip.Error.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if o.Session == "" {
		o.Session = haip.NewUUID()
	}
	if o.Transport == "" {
		o.Transport = TransportWebSocket
	}
	credits := o.Credit
	if credits <= 0 {
		credits = defaultCredit
	}
	c := &Conn{transport: o.Transport, session: o.Session, window: credits, manual: o.ManualCredit || o.NoFlowControl,
		dedupe: o.Dedupe, consumed: map[haip.Channel]int64{}}
	if o.LastRxSeq != nil {
		c.lastRx.Store(*o.LastRxSeq)
	}
	var err error
	switch o.Transport {
	case TransportWebSocket:
		var hello []byte
		if hello, err = c.hello(&o, credits, o.Binary); err == nil {
			c.t, err = dialWS(ctx, &o, hello)
		}
	case TransportSSE:
		c.t, err = dialSSE(ctx, &o)
	case TransportStream:
		var hello []byte
		if hello, err = c.hello(&o, credits, false); err == nil {
			c.t, err = dialStream(ctx, &o, hello)
		}
	case TransportStreamHalf:
		var hello []byte
		if hello, err = c.hello(&o, credits, false); err == nil {
			c.t, err = dialStreamHalf(ctx, &o, hello)
		}
	default:
		return nil, fmt.Errorf("unknown transport %q: want one of %s", o.Transport, strings.Join(Transports(), ", "))
	}
	if err != nil {
		return nil, err
	}
	if err := c.handshake(ctx); err != nil {
		_ = c.t.closeNow()
		return nil, err
	}
	if o.Transport == TransportSSE && !o.NoFlowControl {
		if err := c.grantSSECredit(ctx, credits, o.CreditBytes); err != nil {
			_ = c.t.closeNow()
			return nil, err
		}
	}
	return c, nil
}

// hello is the client's HAI, numbered and encoded.
func (c *Conn) hello(o *Options, credits int64, binary bool) ([]byte, error) {
	accept := o.AcceptEvents
	if accept == nil {
		accept = haip.AllTypes()
	}
	hello := haip.HelloPayload{HaipVersion: haip.Version, AcceptMajor: []int{haip.Major}, AcceptEvents: accept,
		Capabilities: &haip.Capabilities{BinaryFrames: &binary, Conversation: o.Conversation}}
	if !o.NoFlowControl {
		hello.Capabilities.FlowControl = &haip.FlowControlCaps{InitialCreditMessages: &credits}
		if o.CreditBytes > 0 {
			bytes := o.CreditBytes
			hello.Capabilities.FlowControl.InitialCreditBytes = &bytes
		}
	}
	if o.LastRxSeq != nil {
		hello.LastRxSeq = fmt.Sprint(*o.LastRxSeq)
	}
	env, err := haip.New(c.session, haip.ChannelSystem, haip.TypeHAI, hello)
	if err != nil {
		return nil, fmt.Errorf("cannot build HAI: %w", err)
	}
	env.Seq = haip.U64(c.seq.Add(1))
	return haip.Encode(env)
}

// handshake waits for the server's HAI. Messages before it (none, with
// our edge) are dropped.
func (c *Conn) handshake(ctx context.Context) error {
	for {
		env, _, _, err := c.next(ctx)
		if err != nil {
			return fmt.Errorf("waiting for HAI: %w", err)
		}
		switch env.Type {
		case haip.TypeHAI:
			if err := env.DecodePayload(&c.Hello); err != nil {
				return fmt.Errorf("bad HAI from the edge: %w", err)
			}
			// The edge's HAI carries the connection's position: the seq
			// delivery continues after (it differs from LastRxSeq when the
			// resume failed or retention dropped the asked range).
			c.lastRx.Store(uint64(env.Seq))
			return nil
		case haip.TypeError:
			var p haip.ErrorPayload
			_ = env.DecodePayload(&p)
			return &haip.Error{Code: p.Code, Message: p.Message, RelatedID: p.RelatedID, Detail: p.Detail}
		}
	}
}

// grantSSECredit gives an SSE stream, whose HAI the edge built without
// flow_control, the client's credit: one FLOW_UPDATE per channel, in one
// POST. The edge counts a channel's credit from its first FLOW_UPDATE.
func (c *Conn) grantSSECredit(ctx context.Context, msgs, byts int64) error {
	var envs []*haip.Envelope
	for _, ch := range haip.AllChannels() {
		p := haip.FlowUpdatePayload{Channel: ch, AddMessages: &msgs}
		if byts > 0 {
			p.AddBytes = &byts
		}
		env, err := haip.New(c.session, haip.ChannelSystem, haip.TypeFlowUpdate, p)
		if err != nil {
			return fmt.Errorf("cannot build FLOW_UPDATE: %w", err)
		}
		envs = append(envs, env)
	}
	if err := c.sendBatch(ctx, envs...); err != nil {
		return fmt.Errorf("cannot grant the initial credit: %w", err)
	}
	return nil
}

// redacted hides the token in an error (it travels in the URL).
type redacted struct {
	err   error
	token string
}

func (r redacted) Error() string { return strings.ReplaceAll(r.err.Error(), r.token, "REDACTED") }
func (r redacted) Unwrap() error { return r.err }

// redact hides token in err's text.
func redact(err error, token string) error {
	if err == nil || token == "" {
		return err
	}
	return redacted{err: err, token: token}
}

// Session is the connection's session id.
func (c *Conn) Session() string { return c.session }

// Transport is the name of the connection's transport.
func (c *Conn) Transport() string { return c.transport }

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

// SendEnvelope numbers env (seq) and sends it. On SSE and the half-duplex
// stream it is a POST; what the edge answers (an ERROR for a refused
// envelope, PONG, …) comes through Read, as on the other transports.
func (c *Conn) SendEnvelope(ctx context.Context, env *haip.Envelope) error {
	return c.sendBatch(ctx, env)
}

// sendBatch numbers and sends envs in order, in one POST on the one-way
// transports.
func (c *Conn) sendBatch(ctx context.Context, envs ...*haip.Envelope) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	batch := make([]outgoing, len(envs))
	for i, env := range envs {
		env.Seq = haip.U64(c.seq.Add(1))
		data, err := haip.Encode(env)
		if err != nil {
			return err
		}
		batch[i] = outgoing{typ: env.Type, data: data}
	}
	return c.t.write(ctx, batch)
}

// SendRaw sends data as is: a text frame (one envelope, or anything) or,
// on WebSocket only, a binary frame.
func (c *Conn) SendRaw(ctx context.Context, typ websocket.MessageType, data []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if ws, ok := c.t.(*wsTransport); ok {
		return ws.ws.Write(ctx, typ, data)
	}
	if typ != websocket.MessageText {
		return errors.New("binary frames need the websocket transport")
	}
	return c.t.write(ctx, []outgoing{{data: data}})
}

// SendText sends a user text message as START (with the text) and END,
// which makes the edge open a run for it. It returns the message id.
func (c *Conn) SendText(ctx context.Context, text string) (string, error) {
	id := haip.NewUUID()
	start, err := haip.New(c.session, haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: id, Text: text})
	if err != nil {
		return "", err
	}
	end, err := haip.New(c.session, haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: id})
	if err != nil {
		return "", err
	}
	if err := c.sendBatch(ctx, start, end); err != nil {
		return "", err
	}
	return id, nil
}

// SendBinary sends env (an AUDIO_CHUNK) with data. On WebSocket it goes
// in two-frame mode: the envelope with bin_len, then data as a binary
// frame, with nothing between them. The other transports cannot carry a
// binary frame: there data goes base64 in payload.data.
func (c *Conn) SendBinary(ctx context.Context, env *haip.Envelope, data []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	env.Seq = haip.U64(c.seq.Add(1))
	if !c.t.binaryFrames() {
		env.BinLen, env.BinMime = nil, ""
		b, err := haip.Encode(env)
		if err != nil {
			return err
		}
		if b, err = haip.InlineBinary(b, data); err != nil {
			return err
		}
		return c.t.write(ctx, []outgoing{{typ: env.Type, data: b}})
	}
	n := int64(len(data))
	env.BinLen = &n
	b, err := haip.Encode(env)
	if err != nil {
		return err
	}
	return c.t.writeBinary(ctx, b, data)
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

// isAnswer reports the types a user's question is answered with outside
// the log (TOOL_LIST, TOOL_SCHEMA), which also repeat the last log seq.
// (An agent's TOOL_LIST is a log message; either way Dedupe keeps them.)
func isAnswer(t haip.Type) bool { return t == haip.TypeToolList || t == haip.TypeToolSchema }

// Read returns the next envelope (see ReadMessage; a binary frame that
// follows an envelope is read and dropped).
func (c *Conn) Read(ctx context.Context) (*haip.Envelope, error) {
	env, _, err := c.ReadMessage(ctx)
	return env, err
}

// ReadMessage returns the next envelope and, for one announcing bin_len
// (two-frame mode, WebSocket only), the binary frame that follows it; on
// the other transports audio comes base64 in payload.data. Log messages
// advance LastSeq and, unless ManualCredit, are credited back to the edge
// with FLOW_UPDATE once half the window is consumed; PINGs are answered
// with PONG before being returned where the edge listens for it (not on
// SSE and the half-duplex stream, where it sends none or needs none).
//
// When the connection ends, the error says why: CloseStatus reads the
// edge's close code and reason from it. If ctx ends while ReadMessage
// waits, the connection is closed.
func (c *Conn) ReadMessage(ctx context.Context) (*haip.Envelope, []byte, error) {
	for {
		env, bin, local, err := c.next(ctx)
		if err != nil {
			return nil, nil, err
		}
		if local {
			env.Seq = haip.U64(c.lastRx.Load())
			return env, nil, nil
		}
		if !IsControl(env.Type) {
			seq := uint64(env.Seq)
			fresh := seq > c.lastRx.Load()
			if fresh {
				c.lastRx.Store(seq)
			}
			if !c.manual {
				if err := c.credit(ctx, env.Channel); err != nil {
					return nil, nil, err
				}
			}
			if !fresh && c.dedupe && !isAnswer(env.Type) {
				continue
			}
		}
		if env.Type == haip.TypePing && c.t.answersPing() {
			var p haip.PingPayload
			_ = env.DecodePayload(&p)
			if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePong, haip.PongPayload{Nonce: p.Nonce}); err != nil {
				return nil, nil, err
			}
		}
		return env, bin, nil
	}
}

// next reads and decodes the next envelope, with its binary frame if it
// announces one. local marks an answer to a POST (see frame).
func (c *Conn) next(ctx context.Context) (env *haip.Envelope, bin []byte, local bool, err error) {
	f, err := c.t.read(ctx)
	if err != nil {
		return nil, nil, false, err
	}
	if f.binary {
		return nil, nil, false, errors.New("unexpected binary frame")
	}
	env = f.env
	if env == nil {
		if env, err = haip.Decode(f.data); err != nil {
			return nil, nil, false, fmt.Errorf("bad envelope from the edge: %w (%s)", err, clip(f.data))
		}
	}
	if env.BinLen != nil && *env.BinLen > 0 {
		if bin, err = c.t.readBinary(ctx); err != nil {
			return nil, nil, false, err
		}
		if int64(len(bin)) != *env.BinLen {
			return nil, nil, false, fmt.Errorf("expected a %d-byte binary frame after %s, got %d bytes", *env.BinLen, env.Type, len(bin))
		}
	}
	return env, bin, f.local, nil
}

// credit counts a consumed log message of ch and grants the edge more
// once half the window is used.
func (c *Conn) credit(ctx context.Context, ch haip.Channel) error {
	c.consumed[ch]++
	n := c.consumed[ch]
	if n < c.window/2 {
		return nil
	}
	c.consumed[ch] = 0
	_, err := c.Send(ctx, haip.ChannelSystem, haip.TypeFlowUpdate, haip.FlowUpdatePayload{Channel: ch, AddMessages: &n})
	return err
}

// clip shortens data for an error message.
func clip(data []byte) []byte {
	const max = 256
	if len(data) > max {
		return data[:max]
	}
	return data
}

// Close closes the connection normally: a close handshake on WebSocket,
// the end of the request on the others. It waits for what the connection
// runs to stop.
func (c *Conn) Close() error { return c.t.close() }

// CloseNow drops the connection without a close handshake, like a lost
// network.
func (c *Conn) CloseNow() error { return c.t.closeNow() }
