package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/haip"
)

// Close codes of the edge beyond the WebSocket standard ones (see the
// table in package edge's documentation). The standard ones are
// websocket.StatusNormalClosure (1000), websocket.StatusGoingAway (1001:
// the edge is draining; resume elsewhere), websocket.StatusPolicyViolation
// (1008: do not retry as is), websocket.StatusTryAgainLater (1013) and
// the others of package websocket.
const (
	// StatusSlowConsumer: the client did not take data within the edge's
	// WRITE_TIMEOUT; reconnect and resume from LastSeq.
	StatusSlowConsumer websocket.StatusCode = 4000
	// StatusHeartbeatTimeout: the edge heard nothing from the client for
	// a heartbeat interval plus timeout; reconnect and resume.
	StatusHeartbeatTimeout websocket.StatusCode = 4001
	// StatusTokenExpired: the connection's token expired; reconnect with
	// a fresh token and resume.
	StatusTokenExpired websocket.StatusCode = 4002
)

// CloseError is the end of a connection as the edge explained it: the
// WebSocket close frame, the comment ": close <code> <reason>" that ends
// an SSE stream, or, on an NDJSON stream (which has neither), the ERROR
// the stream ended with when its code names a close (AUTHENTICATION_FAILED:
// 4002, SERVER_SHUTDOWN: 1001, VERSION_INCOMPATIBLE: 1008).
// Read returns it (wrapped or not) once the connection has ended; use
// CloseStatus or errors.As.
type CloseError struct {
	// Code is the close code.
	Code websocket.StatusCode
	// Reason is the edge's reason, e.g. "edge shutting down; resume from
	// seq 41", or the final ERROR's message.
	Reason string
	// Final is the ERROR the stream ended with, when the code comes from it.
	Final *haip.ErrorPayload
	// err is what the transport reported (websocket.CloseError, io.EOF…).
	err error
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("connection closed by the edge with %d %s", int(e.Code), e.Reason)
}

// Unwrap returns what the transport reported.
func (e *CloseError) Unwrap() error { return e.err }

// CloseStatus returns the close code and reason in err, if any, on every
// transport; -1 and "" when err holds none (the connection was lost
// without a word, or the error is not a closed connection).
func CloseStatus(err error) (websocket.StatusCode, string) {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason
	}
	var wce websocket.CloseError
	if errors.As(err, &wce) {
		return wce.Code, wce.Reason
	}
	return -1, ""
}

// fromWebSocket turns a WebSocket read error carrying a close frame into
// a CloseError (which still unwraps to websocket.CloseError).
func fromWebSocket(err error) error {
	var wce websocket.CloseError
	if errors.As(err, &wce) {
		return &CloseError{Code: wce.Code, Reason: wce.Reason, err: err}
	}
	return err
}

// parseCloseComment reads an SSE comment "close <code> <reason>".
func parseCloseComment(text []byte) (*CloseError, bool) {
	rest, ok := strings.CutPrefix(string(text), "close ")
	if !ok {
		return nil, false
	}
	num, reason, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(num)
	if err != nil || code < 1000 || code > 4999 {
		return nil, false
	}
	return &CloseError{Code: websocket.StatusCode(code), Reason: reason}, true
}

// finalErrorCode maps the HAIP error codes that, as the last envelope of
// an NDJSON stream, say why it ended, to the close code the edge sends
// for the same end on a WebSocket. Other codes answer one message; they
// do not end the connection.
func finalErrorCode(c haip.Code) (websocket.StatusCode, bool) {
	switch c {
	case haip.CodeAuthenticationFailed: // the token expired
		return StatusTokenExpired, true
	case haip.CodeServerShutdown:
		return websocket.StatusGoingAway, true
	case haip.CodeVersionIncompatible:
		return websocket.StatusPolicyViolation, true
	}
	return 0, false
}

// streamEnd is the error of an NDJSON stream that ended with err after
// last (the last envelope read, or nil).
func streamEnd(last *haip.Envelope, err error) error {
	if last == nil || last.Type != haip.TypeError {
		return err
	}
	var p haip.ErrorPayload
	if last.DecodePayload(&p) != nil {
		return err
	}
	code, ok := finalErrorCode(p.Code)
	if !ok {
		return err
	}
	return &CloseError{Code: code, Reason: p.Message, Final: &p, err: err}
}
