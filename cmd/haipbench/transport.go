package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
)

// Transports of -transport, and the client transport each one is.
const (
	transportWS         = "ws"          // GET /haip/websocket
	transportSSE        = "sse"         // GET /haip/sse
	transportStream     = "stream"      // POST /haip/stream, NDJSON both ways (full duplex)
	transportStreamHalf = "stream-half" // POST /haip/stream?session=…, HAI only in the body (half duplex)
)

var transports = []string{transportWS, transportSSE, transportStream, transportStreamHalf}

// clientTransport is the client's name of a -transport.
func clientTransport(t string) (string, error) {
	switch t {
	case transportWS:
		return client.TransportWebSocket, nil
	case transportSSE:
		return client.TransportSSE, nil
	case transportStream:
		return client.TransportStream, nil
	case transportStreamHalf:
		return client.TransportStreamHalf, nil
	}
	return "", fmt.Errorf("unknown transport %q", t)
}

// benchConn is one handshaken client connection of any transport: the
// scenarios only read from it. Read returns every envelope the edge sends,
// control messages included (see client.IsControl); the client answers
// the edge's PING where the edge listens for PONG. Read is called from one
// goroutine; Close may be called from any, more than once.
type benchConn interface {
	Session() string
	Read(ctx context.Context) (*haip.Envelope, error)
	Close() error
}

// clientConn is a client connection whose Close drops it without a close
// handshake (a run closes thousands at once).
type clientConn struct{ *client.Conn }

func (c clientConn) Close() error { return c.CloseNow() }

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

// clientDialer opens client connections of one transport to one edge.
// They advertise no flow control, so the edge does not pace the bench by
// credit.
type clientDialer struct {
	ep        endpoint
	transport string // a client transport name
	hc        *http.Client
}

func (d clientDialer) dial(ctx context.Context, o dialOptions) (benchConn, error) {
	c, err := d.dialConn(ctx, o)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (d clientDialer) dialConn(ctx context.Context, o dialOptions) (*clientConn, error) {
	c, err := client.Dial(ctx, client.Options{URL: d.ep.base, Transport: d.transport, HTTPClient: d.hc, Token: d.ep.token,
		Session: o.Session, LastRxSeq: o.LastRx, NoFlowControl: true})
	if err != nil {
		return nil, fmt.Errorf("%s dial: %w", d.transport, err)
	}
	return &clientConn{c}, nil
}

// newDialer returns the dialer of transport for the edge at ep. hc carries
// the HTTP transports (SSE, stream); every such connection holds its own
// TCP connection.
func newDialer(transport string, ep endpoint, hc *http.Client) (dialer, error) {
	t, err := clientTransport(transport)
	if err != nil {
		return nil, err
	}
	return clientDialer{ep: ep, transport: t, hc: hc}, nil
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
