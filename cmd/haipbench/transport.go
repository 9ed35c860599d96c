package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/haipfabric/haipfabric/haip"
)

// Transports of -transport.
const (
	transportWS         = "ws"          // GET /haip/websocket
	transportSSE        = "sse"         // GET /haip/sse
	transportStream     = "stream"      // POST /haip/stream, NDJSON both ways (full duplex)
	transportStreamHalf = "stream-half" // POST /haip/stream?session=…, empty body (half duplex)
)

var transports = []string{transportWS, transportSSE, transportStream, transportStreamHalf}

// benchConn is one handshaken client connection of any transport: the
// scenarios only read from it. Read returns every envelope the edge sends,
// control messages included (see isControl); a transport that can answer
// the edge's PING does so before returning it. Read is called from one
// goroutine; Close may be called from any, more than once.
type benchConn interface {
	Session() string
	Read(ctx context.Context) (*haip.Envelope, error)
	Close() error
}

// dialOptions says where a connection starts.
type dialOptions struct {
	// Session is the session id; empty means a fresh uuid.
	Session string
	// LastRx resumes after this seq; nil means "from now on".
	LastRx *uint64
}

// dialer opens connections of one transport to one edge.
type dialer interface {
	dial(ctx context.Context, o dialOptions) (benchConn, error)
}

// endpoint is one edge as the clients see it.
type endpoint struct {
	base  string // http://127.0.0.1:PORT
	token string
}

// wsURL is the edge's WebSocket endpoint.
func (e endpoint) wsURL() string {
	return "ws" + strings.TrimPrefix(e.base, "http") + "/haip/websocket"
}

// baseFromWS turns ws://host:port/… into http://host:port.
func baseFromWS(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("bad url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("bad url %q: want ws or wss", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// newDialer returns the dialer of transport for the edge at ep. hc carries
// the HTTP transports (SSE, stream); every such connection holds its own
// TCP connection.
func newDialer(transport string, ep endpoint, hc *http.Client) (dialer, error) {
	switch transport {
	case transportWS:
		return wsDialer{ep: ep}, nil
	case transportSSE:
		return sseDialer{ep: ep, hc: hc}, nil
	case transportStream:
		return streamDialer{ep: ep, hc: hc, half: false}, nil
	case transportStreamHalf:
		return streamDialer{ep: ep, hc: hc, half: true}, nil
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}

// newHTTPClient is the HTTP client of one run: no connection limit per
// host (each stream holds one), no overall timeout (streams are long).
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxConnsPerHost:     0,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   false,
	}}
}

// multiDialer spreads connections over several edges, round robin.
type multiDialer struct {
	mu   sync.Mutex
	next int
	ds   []dialer
}

func (m *multiDialer) dial(ctx context.Context, o dialOptions) (benchConn, error) {
	m.mu.Lock()
	d := m.ds[m.next%len(m.ds)]
	m.next++
	m.mu.Unlock()
	return d.dial(ctx, o)
}

// isControl reports the connection-scoped types the edge sends outside
// the session log; they repeat the last log seq instead of taking one.
func isControl(t haip.Type) bool {
	switch t {
	case haip.TypeHAI, haip.TypePing, haip.TypePong, haip.TypeError, haip.TypeFlowUpdate,
		haip.TypePauseChannel, haip.TypeResumeChannel, haip.TypeReplayRequest:
		return true
	}
	return false
}

// helloEnvelope is the bench clients' HAI. It advertises no flow_control,
// so the edge does not pace the bench by credit.
func helloEnvelope(session string, lastRx *uint64) ([]byte, error) {
	hello := haip.HelloPayload{HaipVersion: haip.Version, AcceptMajor: []int{haip.Major}, AcceptEvents: haip.AllTypes()}
	if lastRx != nil {
		hello.LastRxSeq = fmt.Sprint(*lastRx)
	}
	env, err := haip.New(session, haip.ChannelSystem, haip.TypeHAI, hello)
	if err != nil {
		return nil, err
	}
	env.Seq = 1
	return haip.Encode(env)
}

// pongFor answers a PING envelope; seq is the sender's own numbering.
func pongFor(session string, ping *haip.Envelope, seq uint64) ([]byte, error) {
	var p haip.PingPayload
	_ = ping.DecodePayload(&p)
	env, err := haip.New(session, haip.ChannelSystem, haip.TypePong, haip.PongPayload{Nonce: p.Nonce})
	if err != nil {
		return nil, err
	}
	env.Seq = haip.U64(seq)
	return haip.Encode(env)
}

// handshakeError turns an ERROR in place of the edge's HAI into an error.
func handshakeError(env *haip.Envelope) error {
	var p haip.ErrorPayload
	_ = env.DecodePayload(&p)
	return &haip.Error{Code: p.Code, Message: p.Message, Detail: p.Detail}
}

// httpRefusal reads a refused request's status and (bounded) body.
func httpRefusal(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	return fmt.Errorf("refused with HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// watchCtx ties a blocking body read to the context of the current Read:
// when it ends, cancel aborts the request. It re-arms only when the
// context changes, so a read loop on one context pays once. Only the
// reading goroutine uses it; a registration left when the connection
// closes ends with its context.
type watchCtx struct {
	ctx  context.Context
	stop func() bool
}

func (w *watchCtx) watch(ctx context.Context, cancel func()) {
	if ctx == w.ctx {
		return
	}
	if w.stop != nil {
		w.stop()
	}
	w.ctx, w.stop = ctx, context.AfterFunc(ctx, cancel)
}

// readErr prefers the context's error when the read failed because it
// ended.
func readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return err
}
