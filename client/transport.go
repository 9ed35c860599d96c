package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/haipfabric/haipfabric/haip"
)

// Transport names, the values of Options.Transport.
const (
	// TransportWebSocket: GET /haip/websocket, one envelope per text
	// frame both ways, audio as binary frames. The default.
	TransportWebSocket = "websocket"
	// TransportSSE: GET /haip/sse?session=… as Server-Sent Events for
	// what the edge sends; every envelope the client sends is a POST to
	// /haip/messages.
	TransportSSE = "sse"
	// TransportStream: POST /haip/stream with NDJSON both ways on the one
	// request (full duplex).
	TransportStream = "stream"
	// TransportStreamHalf: POST /haip/stream?session=… whose body is only
	// the HAI; the response streams NDJSON and every later envelope the
	// client sends is a POST to /haip/messages (half duplex).
	TransportStreamHalf = "stream-half"
)

// Transports lists the names Options.Transport accepts, the default first.
func Transports() []string {
	return []string{TransportWebSocket, TransportSSE, TransportStream, TransportStreamHalf}
}

// Edge paths, relative to the edge's base URL.
const (
	pathWebSocket = "/haip/websocket"
	pathSSE       = "/haip/sse"
	pathStream    = "/haip/stream"
	pathMessages  = "/haip/messages"
)

// defaultReadLimit is the largest frame, event or line accepted when
// Options.ReadLimit is zero.
const defaultReadLimit = 16 << 20

// frame is one inbound item a transport hands to Conn.
type frame struct {
	// data is an encoded envelope, or a WebSocket binary frame's bytes.
	data []byte
	// env is the envelope already decoded (by a transport's own reader
	// goroutine), or nil: Conn decodes data.
	env *haip.Envelope
	// binary marks a WebSocket binary frame.
	binary bool
	// eventID is an SSE event's id, when hasEventID.
	eventID    string
	hasEventID bool
	// local marks a connection-scoped envelope that came in a POST's
	// answer (PONG, TOOL_LIST, an ERROR the client builds from a refused
	// envelope): Conn stamps it with the last log seq, as the edge stamps
	// the control messages it sends on a stream.
	local bool
}

// outgoing is one envelope to send, numbered and encoded.
type outgoing struct {
	typ  haip.Type // the envelope's type ("" for raw data)
	data []byte
}

// transport is what Conn needs from WebSocket, SSE+POST or NDJSON
// streaming: framing, the way back, and closing. Conn serialises sends
// (write and writeBinary run under its send lock) and has one reader
// (read and readBinary); close and closeNow may run at any time, from
// any goroutine, more than once.
type transport interface {
	// write sends envelopes in order (a POST transport sends them in one
	// request).
	write(ctx context.Context, batch []outgoing) error
	// writeBinary sends an envelope announcing bin_len and then the bytes
	// as a binary frame; only a transport with binaryFrames can.
	writeBinary(ctx context.Context, env, bin []byte) error
	// read blocks for the next inbound frame. An error ends the
	// connection; if ctx ends first, the connection is closed.
	read(ctx context.Context) (frame, error)
	// readBinary reads the binary frame an envelope announced.
	readBinary(ctx context.Context) ([]byte, error)
	// binaryFrames reports whether audio may travel as binary frames.
	binaryFrames() bool
	// answersPing reports whether the edge listens for PONG on this
	// connection (it does not on the one-way streams).
	answersPing() bool
	// close ends the connection as gracefully as the transport can;
	// closeNow drops it.
	close() error
	closeNow() error
}

// endpointURL is the URL of an edge path for transport, from the URL the
// caller gave: ws and wss become http and https (and back for the
// WebSocket), and a path ending in one of the edge's HAIP paths (or "/")
// is cut back to its prefix before path is added. The query is kept.
func endpointURL(raw, path string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("cannot parse url: %w", err)
	}
	ws := path == pathWebSocket
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
		if ws {
			u.Scheme = "ws"
		}
	case "wss", "https":
		u.Scheme = "https"
		if ws {
			u.Scheme = "wss"
		}
	default:
		return nil, fmt.Errorf("bad url %q: want ws, wss, http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("bad url %q: no host", u.Redacted())
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	for _, p := range []string{pathWebSocket, pathSSE, pathStream, pathMessages} {
		if s, ok := strings.CutSuffix(prefix, p); ok {
			prefix = s
			break
		}
	}
	u.Path, u.RawPath = prefix+path, ""
	return u, nil
}

// withQuery returns u with the parameters added to its query.
func withQuery(u *url.URL, kv ...string) *url.URL {
	v := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			v.Set(kv[i], kv[i+1])
		}
	}
	c := *u
	c.RawQuery = v.Encode()
	return &c
}

// httpRefusal reads a refused request's status and (bounded) body; the
// body is closed.
func httpRefusal(resp *http.Response) *HTTPError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
	_ = resp.Body.Close()
	return &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
}

// maxRefusalBody bounds the part of a refusal's body kept in HTTPError.
const maxRefusalBody = 4096

// readErr prefers the context's error when a read failed because the
// context ended.
func readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	}
	return err
}
