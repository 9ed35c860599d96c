package edge

import (
	"fmt"
	"time"
)

// disconnect is why a connection ends: the close code the client gets,
// a short reason (the WebSocket close reason, the SSE ": close" comment)
// and the label haip_edge_disconnects_total counts it under. Everything
// on the writer's side that ends a connection returns one as its error;
// conn.run acts on it in one place (finish). The reader asks for one
// with fatal.
type disconnect struct {
	code   CloseCode
	reason string
	label  string
}

func (d *disconnect) Error() string {
	return fmt.Sprintf("connection closed (%s): %d %s", d.label, d.code, d.reason)
}

// Disconnect labels, the bounded label set of haip_edge_disconnects_total.
const (
	labelPeer      = "peer_closed"
	labelDrain     = "shutdown"
	labelSlow      = "slow_consumer"
	labelHeartbeat = "heartbeat_timeout"
	labelHandshake = "handshake_timeout"
	labelProtocol  = "protocol"
	labelBackend   = "backend_error"
	labelExpired   = "token_expired"
	labelDeleted   = "session_deleted"
)

// disconnectLabels lists every label, for tests and dashboards.
func disconnectLabels() []string {
	return []string{labelPeer, labelDrain, labelSlow, labelHeartbeat, labelHandshake, labelProtocol, labelBackend, labelExpired, labelDeleted}
}

// peerClosed: the client went (or the edge closes an exchange that is
// over).
func peerClosed() *disconnect { return &disconnect{code: CloseNormal, label: labelPeer} }

// slowConsumer: a write did not go through within WriteTimeout.
func slowConsumer(hint string) *disconnect {
	return &disconnect{code: CloseSlowConsumer, reason: "slow consumer; " + hint, label: labelSlow}
}

// drained: the edge is shutting down.
func drained(seq uint64) *disconnect {
	return &disconnect{code: CloseGoingAway, reason: fmt.Sprintf("edge shutting down; resume from seq %d", seq), label: labelDrain}
}

// logUnavailable: JetStream did not serve the session log.
func logUnavailable(seq uint64) *disconnect {
	return &disconnect{code: CloseTryAgainLater, reason: fmt.Sprintf("session log unavailable; resume from seq %d", seq), label: labelBackend}
}

// heartbeatLost: nothing came from a peer that could send.
func heartbeatLost(silent time.Duration, seq uint64) *disconnect {
	return &disconnect{code: CloseHeartbeatTimeout, reason: fmt.Sprintf("no frames for %s; resume from seq %d", silent.Round(time.Second), seq), label: labelHeartbeat}
}

// handshakeLate: no HAI in time.
func handshakeLate() *disconnect {
	return &disconnect{code: ClosePolicyViolation, reason: "handshake timeout: send HAI first", label: labelHandshake}
}

// tokenExpiredClose: the connection's token has expired.
func tokenExpiredClose(seq uint64) *disconnect {
	return &disconnect{code: CloseTokenExpired, reason: fmt.Sprintf("token expired; reconnect with a fresh token and resume from seq %d", seq), label: labelExpired}
}

// sessionDeleted: the session was deleted.
func sessionDeleted() *disconnect {
	return &disconnect{code: CloseSessionDeleted, reason: "session deleted", label: labelDeleted}
}

// protocolClose: the client broke the protocol in a way the connection
// cannot go on from.
func protocolClose(code CloseCode, reason string) *disconnect {
	return &disconnect{code: code, reason: reason, label: labelProtocol}
}

// backendClose: the fabric failed the connection (JetStream, the session
// store): the client should come back later and resume.
func backendClose(code CloseCode, reason string) *disconnect {
	return &disconnect{code: code, reason: reason, label: labelBackend}
}
