package edge

// CloseCode is a WebSocket close status the edge sends. The same codes
// name the end of SSE and HTTP-streaming connections in logs and metrics.
type CloseCode int

// Close codes, and what a client should do on each (see doc.go).
const (
	// CloseNormal: the exchange is over.
	CloseNormal CloseCode = 1000
	// CloseGoingAway: the edge is shutting down; reconnect (to any edge)
	// with last_rx_seq, the reason says from which seq.
	CloseGoingAway CloseCode = 1001
	// CloseUnsupportedData: a binary frame nobody announced.
	CloseUnsupportedData CloseCode = 1003
	// ClosePolicyViolation: fatal protocol error (no HAI in time, version
	// incompatible, foreign or mismatched session). Do not retry as is.
	ClosePolicyViolation CloseCode = 1008
	// CloseMessageTooBig: a frame over MAX_MESSAGE_BYTES.
	CloseMessageTooBig CloseCode = 1009
	// CloseInternalError: the edge failed; reconnect and resume.
	CloseInternalError CloseCode = 1011
	// CloseTryAgainLater: JetStream is unreachable; back off, then resume.
	CloseTryAgainLater CloseCode = 1013
	// CloseSlowConsumer: the client did not take data within WRITE_TIMEOUT;
	// reconnect and resume from its last seq.
	CloseSlowConsumer CloseCode = 4000
	// CloseHeartbeatTimeout: nothing came from the client for a heartbeat
	// interval plus timeout.
	CloseHeartbeatTimeout CloseCode = 4001
	// CloseTokenExpired: the token the connection was opened with has
	// expired (its exp plus the verifier's leeway); reconnect with a fresh
	// token and resume from the last seq received.
	CloseTokenExpired CloseCode = 4002
	// CloseSessionDeleted: the session was deleted (sessions API); do not
	// reconnect to it.
	CloseSessionDeleted CloseCode = 4003
)
