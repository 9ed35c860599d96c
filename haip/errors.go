package haip

import (
	"errors"
	"fmt"
	"maps"
	"unicode/utf8"
)

// Code is the code of a HAIP ERROR (or RUN_ERROR) payload.
type Code string

// Error codes. The first eight are the README's, the next two come from the
// docs, the following three are the reference server's names that this
// project adopts, and the last six are this project's own.
const (
	// CodeProtocolViolation: malformed envelope, bad field, wrong pattern,
	// message before HAI.
	CodeProtocolViolation Code = "PROTOCOL_VIOLATION"
	// CodeSeqViolation: sequence rules broken.
	CodeSeqViolation Code = "SEQ_VIOLATION"
	// CodeFlowControlViolation: sent beyond credit or on a paused channel.
	CodeFlowControlViolation Code = "FLOW_CONTROL_VIOLATION"
	// CodeVersionIncompatible: no shared MAJOR; the connection closes after it.
	CodeVersionIncompatible Code = "VERSION_INCOMPATIBLE"
	// CodeRunLimitExceeded: more runs than max_concurrent_runs.
	CodeRunLimitExceeded Code = "RUN_LIMIT_EXCEEDED"
	// CodeReplayTooOld: the replay range has left the replay window.
	CodeReplayTooOld Code = "REPLAY_TOO_OLD"
	// CodeUnsupportedType: unknown event type, or an unknown field under crit.
	CodeUnsupportedType Code = "UNSUPPORTED_TYPE"
	// CodeResumeFailed: a last_rx_seq resume is impossible.
	CodeResumeFailed Code = "RESUME_FAILED"
	// CodeAuthenticationFailed: the token was rejected.
	CodeAuthenticationFailed Code = "AUTHENTICATION_FAILED"
	// CodeToolExecutionError: a tool failed.
	CodeToolExecutionError Code = "TOOL_EXECUTION_ERROR"
	// CodeToolNotFound: TOOL_CALL named a tool nobody serves.
	CodeToolNotFound Code = "TOOL_NOT_FOUND"
	// CodeRunNotFound: a run id that is not known in the session.
	CodeRunNotFound Code = "RUN_NOT_FOUND"
	// CodeMissingRunID: a message that needs a run id came without one.
	CodeMissingRunID Code = "MISSING_RUN_ID"
	// CodeSessionForbidden: the caller may not use the session it named.
	CodeSessionForbidden Code = "SESSION_FORBIDDEN"
	// CodeMessageTooLarge: the frame exceeds the size limit.
	CodeMessageTooLarge Code = "MESSAGE_TOO_LARGE"
	// CodeInternalError: the server failed; the client did nothing wrong.
	CodeInternalError Code = "INTERNAL_ERROR"
	// CodeSlowConsumer: the client does not read fast enough.
	CodeSlowConsumer Code = "SLOW_CONSUMER"
	// CodeServerShutdown: the server is going away; reconnect elsewhere.
	CodeServerShutdown Code = "SERVER_SHUTDOWN"
	// CodeTooManyConnections: a connection limit was reached.
	CodeTooManyConnections Code = "TOO_MANY_CONNECTIONS"
	// CodeSessionNotFound: no session the caller may use has this id (it
	// does not exist, or, on a read, it is another user's: the two answer
	// alike).
	CodeSessionNotFound Code = "SESSION_NOT_FOUND"
	// CodeRateLimited: the caller went over a per-user limit (messages per
	// second, runs or tool calls per minute or in flight, connections,
	// sessions, replay bytes). detail names the limit and, for rates, when
	// to retry (retry_after_ms).
	CodeRateLimited Code = "RATE_LIMITED"
)

// Error is a HAIP protocol error: what goes into an ERROR payload. Every
// failure of this package's decoding and validation is an *Error.
//
// An *Error is not safe for concurrent modification; the With methods change
// the receiver.
type Error struct {
	// Code is the HAIP error code.
	Code Code
	// Message is a human-readable explanation.
	Message string
	// RelatedID is the id of the offending message, when known.
	RelatedID string
	// Detail holds machine-readable context (for example {"field": "seq"}).
	Detail map[string]any
}

// Error implements error as "haip: CODE: message".
func (e *Error) Error() string {
	if e == nil {
		return "haip: <nil>"
	}
	return "haip: " + string(e.Code) + ": " + e.Message
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &haip.Error{Code: haip.CodeSeqViolation}) matches by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e != nil && t != nil && t.Code == e.Code
}

// Errorf returns an *Error with the given code and a fmt-formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithRelated sets RelatedID and returns e, for chaining.
func (e *Error) WithRelated(id string) *Error {
	e.RelatedID = id
	return e
}

// WithDetail sets Detail[key] = v (creating the map) and returns e, for
// chaining.
func (e *Error) WithDetail(key string, v any) *Error {
	if e.Detail == nil {
		e.Detail = make(map[string]any, 1)
	}
	e.Detail[key] = v
	return e
}

// CodeOf returns the Code of the first *Error in err's chain, or "" when
// there is none.
func CodeOf(err error) Code {
	var he *Error
	if errors.As(err, &he) && he != nil {
		return he.Code
	}
	return ""
}

// Payload returns e as an ERROR (or RUN_ERROR) payload. Detail is copied, so
// later changes to e do not show in the payload.
func (e *Error) Payload() ErrorPayload {
	return ErrorPayload{
		Code:      e.Code,
		Message:   e.Message,
		RelatedID: e.RelatedID,
		Detail:    maps.Clone(e.Detail),
	}
}

// maxEcho is how many bytes of an offending value are echoed into an error
// message or detail; the rest is cut so that a huge bad field cannot make a
// huge ERROR.
const maxEcho = 64

// clip shortens s to at most maxEcho bytes on a rune boundary, marking the
// cut with "…".
func clip(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	n := maxEcho
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
