package edge

import (
	"context"
)

// frame is one inbound transport frame.
type frame struct {
	binary bool
	data   []byte
	// tooLarge marks a record the transport skipped for exceeding
	// MaxMessageBytes (line-framed transports go on after it).
	tooLarge bool
}

// transport is what a connection needs from WebSocket, SSE or HTTP
// streaming: framing and keep-alive, nothing of the protocol.
type transport interface {
	// kind names the transport in metrics and logs.
	kind() string
	// read blocks for the next inbound frame. Only the reader calls it.
	read(ctx context.Context) (frame, error)
	// write sends one envelope, whose seq (SSE event ids need it) is
	// given. Only the writer calls it.
	write(ctx context.Context, seq uint64, data []byte) error
	// keepalive writes the transport's own keep-alive, if it has one
	// (sent=false: the writer sends a HAIP PING instead).
	keepalive(ctx context.Context) (sent bool, err error)
	// peerCanSend reports whether the peer can send on this connection
	// now; only then does silence mean a dead peer.
	peerCanSend() bool
	// tellsCloseReason reports whether close can tell the peer its code
	// and reason (a WebSocket close frame, an SSE comment). Where it
	// cannot (an NDJSON stream), the writer sends an ERROR saying why
	// before it closes.
	tellsCloseReason() bool
	// postedFlow reports whether the client may POST flow control for
	// this connection (SSE and HTTP streams, whose other half is POSTs):
	// the connection then follows it over NATS, from any edge.
	postedFlow() bool
	// close ends the connection, telling the peer code and reason where
	// the transport can. It is idempotent and safe from any goroutine. It
	// may wait a few seconds for a peer's part of a close handshake.
	close(code CloseCode, reason string)
	// abort ends the connection now, without waiting for the peer, even
	// while a close is under way. Safe from any goroutine.
	abort()
}
