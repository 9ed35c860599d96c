package haip

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Envelope is one HAIP message (§2). The JSON tags document the wire names;
// use Decode and Encode rather than encoding/json, which would neither
// validate nor match keys case-sensitively.
//
// An Envelope is a plain value: it is not safe for concurrent modification,
// but any number of goroutines may read (and Encode) one concurrently.
type Envelope struct {
	// ID is unique per message (a uuid); related_id points at it.
	ID string `json:"id"`
	// Session names the conversation; see ValidSessionID.
	Session string `json:"session"`
	// Seq is the sender's sequence number.
	Seq U64 `json:"seq"`
	// TS is the send time in Unix milliseconds.
	TS U64 `json:"ts"`
	// Channel is the logical lane, one of the five standard channels.
	Channel Channel `json:"channel"`
	// Type is the event type.
	Type Type `json:"type"`
	// Payload is the per-type body, a JSON object. After Decode it is a copy
	// of the input bytes (original spacing kept); Encode compacts it.
	Payload json.RawMessage `json:"payload"`
	// Ack is the highest peer seq received in order, if sent.
	Ack *U64 `json:"ack,omitempty"`
	// PV is the protocol MAJOR that produced the message (0–255), if sent.
	PV *int `json:"pv,omitempty"`
	// Crit makes unknown fields an error (UNSUPPORTED_TYPE).
	Crit bool `json:"crit,omitempty"`
	// BinLen is the byte length of the binary frame that follows, if any.
	BinLen *int64 `json:"bin_len,omitempty"`
	// BinMime is the MIME type of that binary frame.
	BinMime string `json:"bin_mime,omitempty"`
	// RunID is the run the message belongs to (a uuid), if any.
	RunID string `json:"run_id,omitempty"`
	// ThreadID is a free-form conversational grouping, ≤ 128 characters.
	ThreadID string `json:"thread_id,omitempty"`
}

// rawEnvelope holds the raw values of an envelope's members during Decode.
type rawEnvelope struct {
	id, session, seq, ts, channel, typ, payload     []byte
	ack, pv, crit, binLen, binMime, runID, threadID []byte
	unknown                                         []byte // first key not listed above
}

// Decode parses and fully validates one envelope: the envelope fields and
// the payload for its type, as described in the package documentation.
// Every failure is an *Error (use CodeOf); its RelatedID is the envelope's
// id whenever that parsed as a valid uuid. The returned Envelope does not
// alias data. Decode is safe for concurrent use and never panics.
func Decode(data []byte) (*Envelope, error) {
	e, err := decode(data)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// decode is Decode with a concrete error type.
func decode(data []byte) (*Envelope, *Error) {
	if !json.Valid(data) {
		var v json.RawMessage
		err := json.Unmarshal(data, &v)
		if err == nil {
			// Cannot happen: json.Valid and json.Unmarshal agree.
			return nil, Errorf(CodeProtocolViolation, "invalid JSON")
		}
		return nil, Errorf(CodeProtocolViolation, "invalid JSON: %v", err)
	}
	if !utf8.Valid(data) {
		return nil, Errorf(CodeProtocolViolation, "invalid JSON: not valid UTF-8")
	}
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, Errorf(CodeProtocolViolation, "invalid JSON: not an object")
	}

	var r rawEnvelope
	it := newObjIter(data[i:])
	for {
		key, escaped, val, ok := it.next()
		if !ok {
			break
		}
		if escaped {
			key = unescapeKey(key)
		}
		// Later duplicates overwrite earlier ones: last wins, as in encoding/json.
		switch string(key) {
		case "id":
			r.id = val
		case "session":
			r.session = val
		case "seq":
			r.seq = val
		case "ts":
			r.ts = val
		case "channel":
			r.channel = val
		case "type":
			r.typ = val
		case "payload":
			r.payload = val
		case "ack":
			r.ack = val
		case "pv":
			r.pv = val
		case "crit":
			r.crit = val
		case "bin_len":
			r.binLen = val
		case "bin_mime":
			r.binMime = val
		case "run_id":
			r.runID = val
		case "thread_id":
			r.threadID = val
		default:
			if r.unknown == nil {
				r.unknown = key
			}
		}
	}

	e := new(Envelope)
	related := ""
	if s, ok := rawString(r.id); ok {
		e.ID = s
		if ValidUUID(s) {
			related = s
		}
	}
	// Each refusal names the published schema the envelope broke.
	if err := r.extract(e); err != nil {
		return nil, err.WithRelated(related).WithDetail("schema", EnvelopeSchemaPath)
	}
	if err := e.check(); err != nil {
		return nil, err.WithRelated(related).WithDetail("schema", EnvelopeSchemaPath)
	}
	if e.Crit && r.unknown != nil {
		name := clip(string(r.unknown))
		return nil, Errorf(CodeUnsupportedType, "unknown field %q with crit set", name).
			WithDetail("field", name).WithRelated(related).WithDetail("schema", EnvelopeSchemaPath)
	}
	if err := checkPayload(e.Type, r.payload, e.Crit); err != nil {
		return nil, err.WithRelated(related).WithDetail("schema", PayloadSchemaPath(e.Type))
	}
	e.Payload = append(json.RawMessage(nil), r.payload...)
	return e, nil
}

// missing returns the PROTOCOL_VIOLATION for an absent required field.
func missing(name string) *Error {
	return Errorf(CodeProtocolViolation, "missing field %s", name).WithDetail("field", name)
}

// wrongType returns the PROTOCOL_VIOLATION for a field of the wrong JSON type.
func wrongType(name, want string) *Error {
	return Errorf(CodeProtocolViolation, "field %s must be %s", name, want).WithDetail("field", name)
}

// extract moves r's values into e, checking presence and JSON types. The
// id was already taken by decode. Semantic checks are left to check.
func (r *rawEnvelope) extract(e *Envelope) *Error {
	// Required fields, in wire order.
	if isNull(r.id) {
		return missing("id")
	}
	if !isString(r.id) {
		return wrongType("id", "a string")
	}
	var ok bool
	if isNull(r.session) {
		return missing("session")
	}
	if e.Session, ok = rawString(r.session); !ok {
		return wrongType("session", "a string")
	}
	if isNull(r.seq) {
		return missing("seq")
	}
	v, err := parseU64JSON(r.seq)
	if err != nil {
		return Errorf(CodeProtocolViolation, "field seq: %s", err.Message).WithDetail("field", "seq")
	}
	e.Seq = U64(v)
	if isNull(r.ts) {
		return missing("ts")
	}
	if v, err = parseU64JSON(r.ts); err != nil {
		return Errorf(CodeProtocolViolation, "field ts: %s", err.Message).WithDetail("field", "ts")
	}
	e.TS = U64(v)
	if isNull(r.channel) {
		return missing("channel")
	}
	s, ok := stringContent(r.channel)
	if !ok {
		return wrongType("channel", "a string")
	}
	if e.Channel = internChannel(string(s)); e.Channel == "" {
		e.Channel = Channel(s)
	}
	if isNull(r.typ) {
		return missing("type")
	}
	if s, ok = stringContent(r.typ); !ok {
		return wrongType("type", "a string")
	}
	if e.Type = internType(string(s)); e.Type == "" {
		e.Type = Type(s)
	}
	if isNull(r.payload) {
		return missing("payload")
	}
	if !isObject(r.payload) {
		return wrongType("payload", "an object")
	}

	// Optional fields; null means absent.
	if !isNull(r.ack) {
		v, err := parseU64JSON(r.ack)
		if err != nil {
			return Errorf(CodeProtocolViolation, "field ack: %s", err.Message).WithDetail("field", "ack")
		}
		a := U64(v)
		e.Ack = &a
	}
	if !isNull(r.pv) {
		n, ok := parseIntLit(r.pv)
		if !ok || n < 0 || n > 255 {
			return Errorf(CodeProtocolViolation, "field pv must be an integer from 0 to 255, not %s", clip(string(r.pv))).
				WithDetail("field", "pv")
		}
		pv := int(n)
		e.PV = &pv
	}
	if !isNull(r.crit) {
		if !isBool(r.crit) {
			return wrongType("crit", "a boolean")
		}
		e.Crit = r.crit[0] == 't'
	}
	if !isNull(r.binLen) {
		n, ok := parseIntLit(r.binLen)
		if !ok || n < 0 {
			return Errorf(CodeProtocolViolation, "field bin_len must be an integer ≥ 0, not %s", clip(string(r.binLen))).
				WithDetail("field", "bin_len")
		}
		e.BinLen = &n
	}
	if !isNull(r.binMime) {
		if e.BinMime, ok = rawString(r.binMime); !ok {
			return wrongType("bin_mime", "a string")
		}
	}
	if !isNull(r.runID) {
		if e.RunID, ok = rawString(r.runID); !ok {
			return wrongType("run_id", "a string")
		}
		if e.RunID == "" {
			// Present but empty is not a uuid; keep it distinguishable
			// from absent for check.
			return Errorf(CodeProtocolViolation, "field run_id is not a uuid: \"\"").WithDetail("field", "run_id")
		}
	}
	if !isNull(r.threadID) {
		if e.ThreadID, ok = rawString(r.threadID); !ok {
			return wrongType("thread_id", "a string")
		}
	}
	return nil
}

// check runs the semantic checks shared by Decode and Validate on the typed
// envelope fields (not the payload).
func (e *Envelope) check() *Error {
	switch {
	case e.ID == "":
		return missing("id")
	case !ValidUUID(e.ID):
		return Errorf(CodeProtocolViolation, "field id is not a uuid: %q", clip(e.ID)).WithDetail("field", "id")
	case e.Session == "":
		return missing("session")
	case !ValidSessionID(e.Session):
		return Errorf(CodeProtocolViolation, "field session is not 1-%d characters of [A-Za-z0-9_-]: %q",
			MaxSessionIDLen, clip(e.Session)).WithDetail("field", "session")
	case e.Channel == "":
		return missing("channel")
	case !e.Channel.Standard():
		return Errorf(CodeProtocolViolation, "field channel is not one of USER, AGENT, SYSTEM, AUDIO_IN, AUDIO_OUT: %q",
			clip(string(e.Channel))).WithDetail("channel", clip(string(e.Channel)))
	case e.Type == "":
		return missing("type")
	case !e.Type.Known():
		return Errorf(CodeUnsupportedType, "unsupported type %q", clip(string(e.Type))).
			WithDetail("type", clip(string(e.Type)))
	case e.PV != nil && (*e.PV < 0 || *e.PV > 255):
		return Errorf(CodeProtocolViolation, "field pv must be an integer from 0 to 255, not %d", *e.PV).
			WithDetail("field", "pv")
	case e.BinLen != nil && *e.BinLen < 0:
		return Errorf(CodeProtocolViolation, "field bin_len must be an integer ≥ 0, not %d", *e.BinLen).
			WithDetail("field", "bin_len")
	case !utf8.ValidString(e.BinMime):
		return Errorf(CodeProtocolViolation, "field bin_mime is not valid UTF-8").WithDetail("field", "bin_mime")
	case e.RunID != "" && !ValidUUID(e.RunID):
		return Errorf(CodeProtocolViolation, "field run_id is not a uuid: %q", clip(e.RunID)).WithDetail("field", "run_id")
	case !utf8.ValidString(e.ThreadID):
		return Errorf(CodeProtocolViolation, "field thread_id is not valid UTF-8").WithDetail("field", "thread_id")
	case len(e.ThreadID) > MaxThreadIDLen && utf8.RuneCountInString(e.ThreadID) > MaxThreadIDLen:
		return Errorf(CodeProtocolViolation, "field thread_id is longer than %d characters", MaxThreadIDLen).
			WithDetail("field", "thread_id")
	}
	return nil
}

// Validate runs Decode's checks on an already-built envelope: the envelope
// fields, then the payload (which must be a JSON object in valid UTF-8) for
// its type. An empty string in a required field counts as missing.
// Failures are *Errors, with RelatedID set to e.ID when it is a valid uuid.
func (e *Envelope) Validate() error {
	if err := e.validate(); err != nil {
		return err
	}
	return nil
}

// validate is Validate with a concrete error type.
func (e *Envelope) validate() *Error {
	if e == nil {
		return Errorf(CodeProtocolViolation, "nil envelope")
	}
	related := ""
	if ValidUUID(e.ID) {
		related = e.ID
	}
	if err := e.check(); err != nil {
		return err.WithRelated(related)
	}
	p, err := payloadObject(e.Payload)
	if err != nil {
		return err.WithRelated(related)
	}
	if err := checkPayload(e.Type, p, e.Crit); err != nil {
		return err.WithRelated(related)
	}
	return nil
}

// payloadObject checks that p is a JSON object in valid UTF-8 and returns it
// without surrounding white space.
func payloadObject(p json.RawMessage) ([]byte, *Error) {
	p = bytes.TrimSpace(p)
	switch {
	case len(p) == 0 || string(p) == "null":
		return nil, missing("payload")
	case !json.Valid(p):
		return nil, Errorf(CodeProtocolViolation, "field payload is not valid JSON").WithDetail("field", "payload")
	case p[0] != '{':
		return nil, wrongType("payload", "an object")
	case !utf8.Valid(p):
		return nil, Errorf(CodeProtocolViolation, "field payload is not valid UTF-8").WithDetail("field", "payload")
	}
	return p, nil
}

// DecodePayload unmarshals the payload into v (normally a pointer to the
// payload struct for e.Type) with encoding/json. Failures are wrapped as a
// PROTOCOL_VIOLATION *Error related to e.ID. For an envelope that Decode
// accepted, decoding into the matching struct cannot fail.
func (e *Envelope) DecodePayload(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		he := Errorf(CodeProtocolViolation, "cannot decode %s payload: %v", clip(string(e.Type)), err)
		if ValidUUID(e.ID) {
			he.RelatedID = e.ID
		}
		return he
	}
	return nil
}

// New returns a validated envelope with a fresh version-4 id, ts set to the
// current time in Unix milliseconds and seq 0 (the caller numbers it). The
// payload is marshalled with encoding/json without HTML escaping; a nil
// payload (or one that marshals to null) becomes {}. A json.RawMessage is
// used as is (compacted). Failures are *Errors: a payload that does not
// marshal to an object, or any check Validate makes.
func New(session string, ch Channel, t Type, payload any) (*Envelope, error) {
	p, err := marshalPayload(payload)
	if err != nil {
		return nil, err
	}
	e := &Envelope{
		ID:      NewUUID(),
		Session: session,
		TS:      U64(time.Now().UnixMilli()),
		Channel: ch,
		Type:    t,
		Payload: p,
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// marshalPayload turns a payload value into compact JSON.
func marshalPayload(payload any) (json.RawMessage, *Error) {
	if payload == nil {
		return json.RawMessage("{}"), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(payload); err != nil {
		return nil, Errorf(CodeInternalError, "cannot marshal payload: %v", err)
	}
	p := bytes.TrimSpace(buf.Bytes())
	if string(p) == "null" {
		return json.RawMessage("{}"), nil
	}
	if len(p) == 0 || p[0] != '{' {
		return nil, wrongType("payload", "an object")
	}
	return json.RawMessage(p), nil
}

// Encode returns e as compact JSON with no trailing newline, fields in wire
// order and optional fields omitted when empty. Strings are escaped only as
// JSON requires (no HTML escaping); invalid UTF-8 in a string field becomes
// U+FFFD. A nil or empty Payload is written as {}.
//
// Encode does not run Validate; it fails, with a PROTOCOL_VIOLATION *Error,
// only for a nil envelope or a Payload that is not a JSON object in valid
// UTF-8. It is safe to call concurrently on the same envelope.
func Encode(e *Envelope) ([]byte, error) {
	b, err := appendEnvelope(nil, e)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// encodeOverhead bounds the bytes Encode adds around the variable-length
// fields: every key, quote and separator, two 20-digit uint64strs plus ack,
// pv and bin_len. Sizing the buffer with it makes Encode one allocation for
// strings that need no escaping.
const encodeOverhead = 256

// appendEnvelope appends the encoding of e to dst.
func appendEnvelope(dst []byte, e *Envelope) ([]byte, *Error) {
	if e == nil {
		return dst, Errorf(CodeProtocolViolation, "cannot encode a nil envelope")
	}
	p := []byte(e.Payload)
	if len(bytes.TrimSpace(p)) == 0 {
		p = []byte("{}")
	} else {
		var err *Error
		if p, err = payloadObject(p); err != nil {
			return dst, err
		}
	}
	if dst == nil {
		dst = make([]byte, 0, encodeOverhead+len(e.ID)+len(e.Session)+len(e.Channel)+len(e.Type)+len(p)+
			len(e.RunID)+len(e.ThreadID)+len(e.BinMime))
	}
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"session":`...)
	dst = appendString(dst, e.Session)
	dst = append(dst, `,"seq":`...)
	dst = AppendU64(dst, uint64(e.Seq))
	dst = append(dst, `,"ts":`...)
	dst = AppendU64(dst, uint64(e.TS))
	dst = append(dst, `,"channel":`...)
	dst = appendString(dst, string(e.Channel))
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, string(e.Type))
	dst = append(dst, `,"payload":`...)
	dst = appendCompact(dst, p)
	if e.Ack != nil {
		dst = append(dst, `,"ack":`...)
		dst = AppendU64(dst, uint64(*e.Ack))
	}
	if e.PV != nil {
		dst = append(dst, `,"pv":`...)
		dst = strconv.AppendInt(dst, int64(*e.PV), 10)
	}
	if e.Crit {
		dst = append(dst, `,"crit":true`...)
	}
	if e.BinLen != nil {
		dst = append(dst, `,"bin_len":`...)
		dst = strconv.AppendInt(dst, *e.BinLen, 10)
	}
	if e.BinMime != "" {
		dst = append(dst, `,"bin_mime":`...)
		dst = appendString(dst, e.BinMime)
	}
	if e.RunID != "" {
		dst = append(dst, `,"run_id":`...)
		dst = appendString(dst, e.RunID)
	}
	if e.ThreadID != "" {
		dst = append(dst, `,"thread_id":`...)
		dst = appendString(dst, e.ThreadID)
	}
	return append(dst, '}'), nil
}
