package haip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Payload structs, one per event type (or family). Field tags are the wire
// names; optional fields are pointers or omitempty. Decode them with
// Envelope.DecodePayload; build envelopes from them with New. A payload that
// Decode accepted always decodes into the struct for its type.

// HelloPayload is the payload of HAI, the handshake (§5).
type HelloPayload struct {
	// HaipVersion is the highest version the sender implements, MAJOR.MINOR.PATCH.
	HaipVersion string `json:"haip_version"`
	// AcceptMajor lists every MAJOR the sender can parse (0–255 each).
	AcceptMajor []int `json:"accept_major"`
	// AcceptEvents whitelists the event types the sender is willing to receive.
	AcceptEvents []Type `json:"accept_events"`
	// Capabilities is the open capabilities object; unknown keys are dropped
	// by DecodePayload but never refused by Decode.
	Capabilities *Capabilities `json:"capabilities,omitempty"`
	// BinaryFrames is the payload-level duplicate of
	// Capabilities.BinaryFrames that the schema allows (gap G2). Emit the
	// capabilities form; read both.
	BinaryFrames *bool `json:"binary_frames,omitempty"`
	// MaxConcurrentRuns is the payload-level duplicate of
	// Capabilities.MaxConcurrentRuns (gap G2); at least 1 when present.
	MaxConcurrentRuns *int `json:"max_concurrent_runs,omitempty"`
	// LastRxSeq is the highest peer seq received, sent when resuming. It is
	// a uint64str when non-empty; "" means absent, because a real client
	// sends it empty. Use LastRx to read it.
	LastRxSeq string `json:"last_rx_seq,omitempty"`
}

// LastRx returns LastRxSeq as a number; ok is false when it is absent
// (empty) or not a valid uint64str.
func (h HelloPayload) LastRx() (seq uint64, ok bool) {
	if h.LastRxSeq == "" {
		return 0, false
	}
	v, err := parseU64String(h.LastRxSeq)
	if err != nil {
		return 0, false
	}
	return v, true
}

// FlowControl returns the advertised initial credit, or nil.
func (h HelloPayload) FlowControl() *FlowControlCaps {
	if h.Capabilities == nil {
		return nil
	}
	return h.Capabilities.FlowControl
}

// Binary reports whether the sender supports two-frame binary mode, in
// either place the schema allows it (gap G2).
func (h HelloPayload) Binary() bool {
	if h.Capabilities != nil && h.Capabilities.BinaryFrames != nil {
		return *h.Capabilities.BinaryFrames
	}
	return h.BinaryFrames != nil && *h.BinaryFrames
}

// RunLimit returns the advertised max_concurrent_runs, in either place
// (gap G2), or 0 when absent.
func (h HelloPayload) RunLimit() int {
	if h.Capabilities != nil && h.Capabilities.MaxConcurrentRuns != nil {
		return *h.Capabilities.MaxConcurrentRuns
	}
	if h.MaxConcurrentRuns != nil {
		return *h.MaxConcurrentRuns
	}
	return 0
}

// Capabilities is HAI.capabilities. On the wire it is an open object:
// unknown keys are always allowed.
type Capabilities struct {
	// BinaryFrames: the sender supports two-frame binary mode (§8).
	BinaryFrames *bool `json:"binary_frames,omitempty"`
	// FlowControl carries the initial credit the sender grants (§10).
	FlowControl *FlowControlCaps `json:"flow_control,omitempty"`
	// MaxConcurrentRuns is how many runs the sender allows at once; ≥ 1.
	MaxConcurrentRuns *int `json:"max_concurrent_runs,omitempty"`
	// SignedEnvelopes: the sender signs and verifies envelopes (§13).
	SignedEnvelopes *bool `json:"signed_envelopes,omitempty"`
	// Conversation "both" (an extension; capabilities is an open object):
	// a client asks to receive the user side of the conversation too, and
	// the server says it will.
	Conversation string `json:"conversation,omitempty"`
}

// FlowControlCaps is HAI.capabilities.flow_control (an open object).
type FlowControlCaps struct {
	// InitialCreditMessages is the starting message credit per channel; ≥ 0.
	InitialCreditMessages *int64 `json:"initial_credit_messages,omitempty"`
	// InitialCreditBytes is the starting byte credit per channel; ≥ 0.
	InitialCreditBytes *int64 `json:"initial_credit_bytes,omitempty"`
}

// RunFinishedPayload is the payload of RUN_FINISHED. The run is named by
// the envelope's run_id. A run_id inside this payload (which the official
// SDK sends, gap G10) is accepted by Decode and ignored.
type RunFinishedPayload struct {
	// Status is how the run ended; absent means not stated.
	Status RunStatus `json:"status,omitempty"`
	// Summary is free text.
	Summary string `json:"summary,omitempty"`
}

// RunCancelPayload is the payload of RUN_CANCEL.
type RunCancelPayload struct {
	// RunID is the run to stop (a uuid).
	RunID string `json:"run_id"`
}

// ErrorPayload is the payload of ERROR and RUN_ERROR (§12).
type ErrorPayload struct {
	// Code is the error code. Decode accepts any string here, not only the
	// Code constants, since peers use their own (INVALID_MESSAGE, …).
	Code Code `json:"code"`
	// Message is a human-readable explanation.
	Message string `json:"message"`
	// RelatedID is the id of the offending message (a uuid), if any.
	RelatedID string `json:"related_id,omitempty"`
	// Detail is an open object of machine-readable context.
	Detail map[string]any `json:"detail,omitempty"`
}

// PingPayload is the payload of PING and PONG; a PONG echoes the PING's nonce.
type PingPayload struct {
	// Nonce is an opaque string to echo.
	Nonce string `json:"nonce,omitempty"`
}

// PongPayload is the payload of PONG, the same shape as PingPayload.
type PongPayload = PingPayload

// ReplayRequestPayload is the payload of REPLAY_REQUEST: resend what you
// sent me from FromSeq to ToSeq, inclusive (§9).
type ReplayRequestPayload struct {
	// FromSeq is the first of the peer's seqs to resend.
	FromSeq U64 `json:"from_seq"`
	// ToSeq is the last one; nil means up to the newest.
	ToSeq *U64 `json:"to_seq,omitempty"`
}

// TextMessageStartPayload is the payload of TEXT_MESSAGE_START.
type TextMessageStartPayload struct {
	// MessageID groups the parts of one message (a uuid).
	MessageID string `json:"message_id"`
	// Author is free text naming the writer.
	Author string `json:"author,omitempty"`
	// Text is optional initial text.
	Text string `json:"text,omitempty"`
}

// TextMessagePartPayload is the payload of TEXT_MESSAGE_PART.
type TextMessagePartPayload struct {
	// MessageID is the message this chunk belongs to (a uuid).
	MessageID string `json:"message_id"`
	// Text is the chunk, appended in order. It is always sent, even empty.
	Text string `json:"text"`
}

// TextMessageEndPayload is the payload of TEXT_MESSAGE_END.
type TextMessageEndPayload struct {
	// MessageID is the message being closed (a uuid).
	MessageID string `json:"message_id"`
	// Tokens is an optional usage count.
	Tokens *U64 `json:"tokens,omitempty"`
}

// AudioChunkPayload is the payload of AUDIO_CHUNK (§8).
type AudioChunkPayload struct {
	// MessageID groups the chunks of one utterance (a uuid).
	MessageID string `json:"message_id"`
	// Mime is the audio MIME type, e.g. "audio/opus".
	Mime string `json:"mime"`
	// Data is the audio in standard, padded base64 (base64 mode only; empty
	// in two-frame mode).
	Data string `json:"data,omitempty"`
	// DurationMS is the chunk's play time in milliseconds.
	DurationMS *U64 `json:"duration_ms,omitempty"`
}

// ToolCallPayload is the payload of TOOL_CALL (§7).
type ToolCallPayload struct {
	// CallID identifies the call (a uuid).
	CallID string `json:"call_id"`
	// Tool is the tool's name.
	Tool string `json:"tool"`
	// Params is the (open) parameter object, if any.
	Params json.RawMessage `json:"params,omitempty"`
}

// ToolUpdatePayload is the payload of TOOL_UPDATE.
type ToolUpdatePayload struct {
	// CallID identifies the call (a uuid).
	CallID string `json:"call_id"`
	// Status is where the call stands.
	Status ToolStatus `json:"status"`
	// Progress is a percentage, 0–100.
	Progress *float64 `json:"progress,omitempty"`
	// Partial is an interim result: any JSON value.
	Partial json.RawMessage `json:"partial,omitempty"`
}

// ToolDonePayload is the payload of TOOL_DONE.
type ToolDonePayload struct {
	// CallID identifies the call (a uuid).
	CallID string `json:"call_id"`
	// Status is the outcome; absent means ToolDoneOK.
	Status ToolDoneStatus `json:"status,omitempty"`
	// Result is the outcome's value (or failure detail): any JSON value.
	Result json.RawMessage `json:"result,omitempty"`
}

// ToolCancelPayload is the payload of TOOL_CANCEL.
type ToolCancelPayload struct {
	// CallID identifies the call (a uuid).
	CallID string `json:"call_id"`
	// Reason is free text.
	Reason string `json:"reason,omitempty"`
}

// ToolListPayload is the payload of TOOL_LIST. Tools must be non-nil
// (an empty list is fine): a nil slice encodes as null, which is invalid.
type ToolListPayload struct {
	// Tools lists the callable tools.
	Tools []ToolInfo `json:"tools"`
}

// ToolInfo describes one tool in TOOL_LIST.
type ToolInfo struct {
	// Name is the tool's name.
	Name string `json:"name"`
	// Description is free text.
	Description string `json:"description,omitempty"`
}

// ToolSchemaPayload is the payload of TOOL_SCHEMA.
type ToolSchemaPayload struct {
	// Tool is the tool's name.
	Tool string `json:"tool"`
	// Schema is the tool's JSON schema, an object.
	Schema json.RawMessage `json:"schema"`
}

// FlowUpdatePayload is the payload of FLOW_UPDATE: additive credit for one
// channel (§10). Channel is any string on the wire; it is not restricted to
// the five standard names.
type FlowUpdatePayload struct {
	// Channel is the channel whose credit grows.
	Channel Channel `json:"channel"`
	// AddMessages is extra message credit, ≥ 1 when present.
	AddMessages *int64 `json:"add_messages,omitempty"`
	// AddBytes is extra byte credit, ≥ 1 when present.
	AddBytes *int64 `json:"add_bytes,omitempty"`
}

// ChannelControlPayload is the payload of PAUSE_CHANNEL and RESUME_CHANNEL.
type ChannelControlPayload struct {
	// Channel is the channel to pause or resume.
	Channel Channel `json:"channel"`
}

// kind says how one payload field is checked.
type kind uint8

const (
	kIgnore         kind = iota // accepted and not checked
	kAny                        // any JSON value
	kString                     // a string
	kUUID                       // a string holding a uuid (ValidUUID)
	kU64                        // a uint64str
	kU64OrEmpty                 // a uint64str or ""
	kBool                       // true or false
	kObject                     // an object, open
	kBase64                     // a string of standard padded base64
	kVersion                    // a string MAJOR.MINOR.PATCH of digits
	kMajors                     // an array of integers 0–255
	kEvents                     // an array of known event type names
	kCaps                       // the capabilities object
	kFlowCaps                   // capabilities.flow_control
	kTools                      // TOOL_LIST.tools
	kProgress                   // a number 0–100
	kPosInt                     // an integer ≥ 1 that fits a Go int
	kPosInt64                   // an integer ≥ 1 that fits an int64
	kNonNegInt64                // an integer ≥ 0 that fits an int64
	kRunStatus                  // a RunStatus
	kToolStatus                 // a ToolStatus
	kToolDoneStatus             // a ToolDoneStatus
)

// field is one known member of a payload object.
type field struct {
	name string
	kind kind
	req  bool
}

// maxFields is the most fields any one object defines (HAI has 7).
const maxFields = 7

// schema describes one object: its known fields and whether other keys are
// allowed regardless of crit.
type schema struct {
	fields [maxFields]field
	n      int
	open   bool
}

// mkSchema builds a schema value; it lives on the caller's stack, so the
// schemas need no package-level (mutable) tables.
func mkSchema(open bool, fs ...field) schema {
	s := schema{open: open}
	s.n = copy(s.fields[:], fs)
	return s
}

// find returns the index of the field named key, or -1.
func (s *schema) find(key []byte) int {
	for i := 0; i < s.n; i++ {
		if string(key) == s.fields[i].name {
			return i
		}
	}
	return -1
}

// foldFind returns the index of a field whose name equals key under
// encoding/json's case folding (bytes.EqualFold), or -1. Such a key would be
// decoded into that field by DecodePayload, bypassing validation, so it is
// refused.
func (s *schema) foldFind(key []byte) int {
	for i := 0; i < s.n; i++ {
		if s.fields[i].kind != kIgnore && bytes.EqualFold(key, []byte(s.fields[i].name)) {
			return i
		}
	}
	return -1
}

// payloadSchema returns the schema of t's payload; ok is false for an
// unknown type.
func payloadSchema(t Type) (schema, bool) {
	switch t {
	case TypeHAI:
		return mkSchema(false,
			field{"haip_version", kVersion, true},
			field{"accept_major", kMajors, true},
			field{"accept_events", kEvents, true},
			field{"capabilities", kCaps, false},
			field{"binary_frames", kBool, false},
			field{"max_concurrent_runs", kPosInt, false},
			field{"last_rx_seq", kU64OrEmpty, false},
		), true
	case TypeRunStarted:
		return mkSchema(true), true
	case TypeRunFinished:
		return mkSchema(false,
			field{"status", kRunStatus, false},
			field{"summary", kString, false},
			field{"run_id", kIgnore, false},
		), true
	case TypeRunCancel:
		return mkSchema(false, field{"run_id", kUUID, true}), true
	case TypeRunError, TypeError:
		return mkSchema(false,
			field{"code", kString, true},
			field{"message", kString, true},
			field{"related_id", kUUID, false},
			field{"detail", kObject, false},
		), true
	case TypePing, TypePong:
		return mkSchema(false, field{"nonce", kString, false}), true
	case TypeReplayRequest:
		return mkSchema(false,
			field{"from_seq", kU64, true},
			field{"to_seq", kU64, false},
		), true
	case TypeTextMessageStart:
		return mkSchema(false,
			field{"message_id", kUUID, true},
			field{"author", kString, false},
			field{"text", kString, false},
		), true
	case TypeTextMessagePart:
		return mkSchema(false,
			field{"message_id", kUUID, true},
			field{"text", kString, true},
		), true
	case TypeTextMessageEnd:
		return mkSchema(false,
			field{"message_id", kUUID, true},
			field{"tokens", kU64, false},
		), true
	case TypeAudioChunk:
		return mkSchema(false,
			field{"message_id", kUUID, true},
			field{"mime", kString, true},
			field{"data", kBase64, false},
			field{"duration_ms", kU64, false},
		), true
	case TypeToolCall:
		return mkSchema(false,
			field{"call_id", kUUID, true},
			field{"tool", kString, true},
			field{"params", kObject, false},
		), true
	case TypeToolUpdate:
		return mkSchema(false,
			field{"call_id", kUUID, true},
			field{"status", kToolStatus, true},
			field{"progress", kProgress, false},
			field{"partial", kAny, false},
		), true
	case TypeToolDone:
		return mkSchema(false,
			field{"call_id", kUUID, true},
			field{"status", kToolDoneStatus, false},
			field{"result", kAny, false},
		), true
	case TypeToolCancel:
		return mkSchema(false,
			field{"call_id", kUUID, true},
			field{"reason", kString, false},
		), true
	case TypeToolList:
		return mkSchema(false, field{"tools", kTools, true}), true
	case TypeToolSchema:
		return mkSchema(false,
			field{"tool", kString, true},
			field{"schema", kObject, true},
		), true
	case TypeFlowUpdate:
		return mkSchema(false,
			field{"channel", kString, true},
			field{"add_messages", kPosInt64, false},
			field{"add_bytes", kPosInt64, false},
		), true
	case TypePauseChannel, TypeResumeChannel:
		return mkSchema(false, field{"channel", kString, true}), true
	}
	return schema{}, false
}

// capsSchema is HAI.capabilities (open).
func capsSchema() schema {
	return mkSchema(true,
		field{"binary_frames", kBool, false},
		field{"flow_control", kFlowCaps, false},
		field{"max_concurrent_runs", kPosInt, false},
		field{"signed_envelopes", kBool, false},
		field{"conversation", kString, false},
	)
}

// flowCapsSchema is HAI.capabilities.flow_control (open).
func flowCapsSchema() schema {
	return mkSchema(true,
		field{"initial_credit_messages", kNonNegInt64, false},
		field{"initial_credit_bytes", kNonNegInt64, false},
	)
}

// toolInfoSchema is one item of TOOL_LIST.tools (closed).
func toolInfoSchema() schema {
	return mkSchema(false,
		field{"name", kString, true},
		field{"description", kString, false},
	)
}

// checkPayload validates payload (a JSON object; the bytes must already be
// known to be valid JSON) against the schema of type t. Unknown keys of a
// closed object are ignored unless crit is set, in which case they are
// UNSUPPORTED_TYPE.
func checkPayload(t Type, payload []byte, crit bool) *Error {
	s, ok := payloadSchema(t)
	if !ok {
		return Errorf(CodeUnsupportedType, "unsupported type %q", clip(string(t))).WithDetail("type", clip(string(t)))
	}
	return checkObject(payload, &s, "payload", crit)
}

// checkObject validates the object obj against s; path names obj in errors.
func checkObject(obj []byte, s *schema, path string, crit bool) *Error {
	var seen uint32
	it := newObjIter(obj)
	for {
		key, escaped, val, ok := it.next()
		if !ok {
			break
		}
		if escaped {
			key = unescapeKey(key)
		}
		i := s.find(key)
		if i < 0 {
			if s.n == 0 && s.open {
				continue
			}
			if j := s.foldFind(key); j >= 0 {
				name := path + "." + string(key)
				return Errorf(CodeProtocolViolation, "field %q differs from %s.%s only in case", clip(name), path, s.fields[j].name).
					WithDetail("field", clip(name))
			}
			if s.open || !crit {
				continue
			}
			name := path + "." + string(key)
			return Errorf(CodeUnsupportedType, "unknown field %q with crit set", clip(name)).WithDetail("field", clip(name))
		}
		if isNull(val) {
			continue // null counts as absent
		}
		seen |= 1 << i
		if err := checkValue(&s.fields[i], val, path, crit); err != nil {
			return err
		}
	}
	for i := 0; i < s.n; i++ {
		if s.fields[i].req && seen&(1<<i) == 0 {
			name := path + "." + s.fields[i].name
			return Errorf(CodeProtocolViolation, "missing field %s", name).WithDetail("field", name)
		}
	}
	return nil
}

// badField returns a PROTOCOL_VIOLATION for the field f of the object at path.
func badField(path string, f *field, format string, args ...any) *Error {
	name := path + "." + f.name
	return Errorf(CodeProtocolViolation, "field %s %s", name, fmt.Sprintf(format, args...)).WithDetail("field", name)
}

// checkValue validates one non-null member value v against f.
func checkValue(f *field, v []byte, path string, crit bool) *Error {
	switch f.kind {
	case kIgnore, kAny:
		return nil
	case kString:
		if !isString(v) {
			return badField(path, f, "must be a string")
		}
	case kUUID:
		s, ok := stringContent(v)
		if !ok {
			return badField(path, f, "must be a string")
		}
		if !validUUID(s) {
			return badField(path, f, "is not a uuid: %q", clip(string(s)))
		}
	case kU64, kU64OrEmpty:
		if !isString(v) {
			return badField(path, f, "must be a uint64str (a string of digits), not %s", clip(string(v)))
		}
		if f.kind == kU64OrEmpty && len(v) == 2 {
			return nil // "" means absent
		}
		if _, err := parseU64JSON(v); err != nil {
			return badField(path, f, "is not a uint64str: %s", err.Message)
		}
	case kBool:
		if !isBool(v) {
			return badField(path, f, "must be a boolean")
		}
	case kObject:
		if !isObject(v) {
			return badField(path, f, "must be an object")
		}
	case kBase64:
		s, ok := stringContent(v)
		if !ok {
			return badField(path, f, "must be a string")
		}
		if !validBase64(s) {
			return badField(path, f, "is not standard padded base64")
		}
	case kVersion:
		s, ok := stringContent(v)
		if !ok {
			return badField(path, f, "must be a string")
		}
		if !validVersion(s) {
			return badField(path, f, "is not MAJOR.MINOR.PATCH: %q", clip(string(s)))
		}
	case kMajors:
		if !isArray(v) {
			return badField(path, f, "must be an array of integers")
		}
		it := newArrIter(v)
		for {
			item, ok := it.next()
			if !ok {
				break
			}
			if n, ok := parseIntLit(item); !ok || n < 0 || n > 255 {
				return badField(path, f, "must hold integers 0-255, not %s", clip(string(item)))
			}
		}
	case kEvents:
		if !isArray(v) {
			return badField(path, f, "must be an array of event types")
		}
		it := newArrIter(v)
		for {
			item, ok := it.next()
			if !ok {
				break
			}
			s, ok := stringContent(item)
			if !ok {
				return badField(path, f, "must hold strings, not %s", clip(string(item)))
			}
			if internType(string(s)) == "" {
				return badField(path, f, "holds unknown event type %q", clip(string(s)))
			}
		}
	case kCaps:
		if !isObject(v) {
			return badField(path, f, "must be an object")
		}
		s := capsSchema()
		return checkObject(v, &s, path+"."+f.name, crit)
	case kFlowCaps:
		if !isObject(v) {
			return badField(path, f, "must be an object")
		}
		s := flowCapsSchema()
		return checkObject(v, &s, path+"."+f.name, crit)
	case kTools:
		if !isArray(v) {
			return badField(path, f, "must be an array of objects")
		}
		s := toolInfoSchema()
		it := newArrIter(v)
		for n := 0; ; n++ {
			item, ok := it.next()
			if !ok {
				break
			}
			if !isObject(item) {
				return badField(path, f, "must hold objects, not %s", clip(string(item)))
			}
			if err := checkObject(item, &s, path+"."+f.name+"["+strconv.Itoa(n)+"]", crit); err != nil {
				return err
			}
		}
	case kProgress:
		if !isNumber(v) {
			return badField(path, f, "must be a number")
		}
		x, err := strconv.ParseFloat(string(v), 64)
		if err != nil || x < 0 || x > 100 {
			return badField(path, f, "must be between 0 and 100, not %s", clip(string(v)))
		}
	case kPosInt, kPosInt64, kNonNegInt64:
		if !isNumber(v) {
			return badField(path, f, "must be an integer")
		}
		n, ok := parseIntLit(v)
		lo, hi := int64(1), int64(math.MaxInt64)
		if f.kind == kNonNegInt64 {
			lo = 0
		}
		if f.kind == kPosInt {
			hi = math.MaxInt
		}
		if !ok || n < lo || n > hi {
			return badField(path, f, "must be an integer from %d to %d, not %s", lo, hi, clip(string(v)))
		}
	case kRunStatus:
		s, ok := stringContent(v)
		if !ok {
			return badField(path, f, "must be a string")
		}
		if !RunStatus(s).Valid() {
			return badField(path, f, "must be OK, CANCELLED or ERROR, not %q", clip(string(s)))
		}
	case kToolStatus:
		s, ok := stringContent(v)
		if !ok {
			return badField(path, f, "must be a string")
		}
		if !ToolStatus(s).Valid() {
			return badField(path, f, "must be QUEUED, RUNNING or CANCELLING, not %q", clip(string(s)))
		}
	case kToolDoneStatus:
		s, ok := stringContent(v)
		if !ok {
			return badField(path, f, "must be a string")
		}
		if !ToolDoneStatus(s).Valid() {
			return badField(path, f, "must be OK, CANCELLED or ERROR, not %q", clip(string(s)))
		}
	}
	return nil
}

// validBase64 reports whether s is standard base64 with padding: a multiple
// of 4 characters from A–Z a–z 0–9 + /, with at most two '=' at the end.
// Line breaks are refused (base64.StdEncoding would skip them).
func validBase64(s []byte) bool {
	n := len(s)
	if n%4 != 0 {
		return false
	}
	if n > 0 && s[n-1] == '=' {
		n--
		if s[n-1] == '=' {
			n--
		}
	}
	for _, c := range s[:n] {
		if !(('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// validVersion reports whether s is MAJOR.MINOR.PATCH, each a non-empty run
// of ASCII digits.
func validVersion(s []byte) bool {
	parts, digits := 0, 0
	for _, c := range s {
		switch {
		case '0' <= c && c <= '9':
			digits++
		case c == '.' && digits > 0 && parts < 2:
			parts++
			digits = 0
		default:
			return false
		}
	}
	return parts == 2 && digits > 0
}
