// Package haip is the codec for HAIP 1.1.2 envelopes (the Human-Agent
// Interaction Protocol; reference: shared/protocol/HAIP.md): the event type,
// channel and error-code constants, the envelope and payload types, strict
// but tolerant decoding with validation, and fast encoding. It depends only
// on the standard library.
//
// # Where to start
//
// Decode turns one frame (a JSON object) into an *Envelope and checks it
// completely: the envelope fields and the payload for its type. Encode does
// the reverse. New builds an outgoing envelope from a payload struct
// (HelloPayload, TextMessagePartPayload, …) and validates it; DecodePayload
// reads a decoded envelope's payload into such a struct. Every validation
// failure is an *Error carrying the HAIP Code to put in the ERROR reply
// (Error.Payload builds that payload); CodeOf extracts the code from any
// error chain.
//
// # Concurrency
//
// All functions are safe for concurrent use. The package has no mutable
// package-level state: lists such as AllTypes and AllChannels are returned
// as fresh slices. An Envelope or *Error may be read by many goroutines but
// must not be modified while others use it.
//
// # Decisions
//
// The spec leaves room for interpretation; this package decides as follows
// (section numbers and gap names G1–G18 refer to HAIP.md).
//
//   - Errors. All failures of Decode, Validate, DecodePayload, Encode and New
//     are *Error values. RelatedID is set to the envelope's id whenever that
//     id parsed as a valid uuid, so the ERROR reply can point at it.
//     Field errors carry Detail {"field": name} (payload fields as
//     "payload.text", "payload.tools[2].name"); channel errors carry
//     {"channel": value} and type errors {"type": value}. Echoed values are
//     cut to 64 bytes.
//   - JSON. Input that is not JSON, not an object, has trailing garbage, or
//     is not valid UTF-8 is PROTOCOL_VIOLATION ("invalid JSON: …").
//     Duplicate keys: the last one wins, as in encoding/json. Keys match
//     exactly and case-sensitively ("ID" is not "id"). JSON string escapes
//     are honoured everywhere, keys included.
//   - Required fields (id, session, seq, ts, channel, type, payload): absent,
//     explicit null, or of the wrong JSON type is PROTOCOL_VIOLATION naming
//     the field. Everywhere else too, null counts as absent, and an absent
//     required payload field is PROTOCOL_VIOLATION.
//   - id, run_id, related_id, message_id, call_id and RUN_CANCEL.run_id:
//     ValidUUID, i.e. any 8-4-4-4-12 hex uuid of any version, UUIDv7 and the
//     nil uuid included (lenient on input, G16). We emit only v4 and v5.
//   - session: ValidSessionID, the channel pattern [A-Za-z0-9_-]{1,128}. It
//     is a superset of the uuid form; the server uses the session id as a
//     NATS subject token, which this pattern keeps safe.
//   - seq, ts, ack and every other uint64str: a JSON string of 1–20 ASCII
//     digits (leading zeros allowed) whose value fits a uint64. JSON numbers,
//     "", signs, spaces, 21 digits and 18446744073709551616 are refused.
//   - Integers (pv, bin_len, accept_major items, max_concurrent_runs,
//     add_messages, add_bytes, initial credits) must be written as integer
//     literals, without fraction or exponent, so that encoding/json can
//     always read them back. pv is 0–255, bin_len ≥ 0, accept_major items
//     0–255, max_concurrent_runs ≥ 1, add_messages and add_bytes ≥ 1,
//     initial credits ≥ 0. TOOL_UPDATE.progress is any number 0–100.
//   - thread_id is a string of at most 128 characters (runes); bin_mime any
//     string.
//   - channel must match the channel pattern and be one of the five standard
//     names, case-sensitively ("user" and "audio-in" are refused, G7):
//     PROTOCOL_VIOLATION with Detail {"channel": value}. Channel names
//     inside FLOW_UPDATE, PAUSE_CHANNEL and RESUME_CHANNEL payloads are only
//     checked to be strings.
//   - type not one of the 22: UNSUPPORTED_TYPE with Detail {"type": value}.
//     An empty string in a required field (such as "type": "") counts as
//     missing.
//   - payload must be a JSON object, checked per type (§4): required fields,
//     JSON types, enums (statuses), uuids, uint64strs, number ranges.
//     AUDIO_CHUNK.data, when present, is standard base64 with padding and no
//     line breaks; TOOL_CALL.params and TOOL_SCHEMA.schema are objects;
//     TOOL_LIST.tools items are objects with a string name; HAI.accept_events
//     items must be known types (an unknown name there is
//     PROTOCOL_VIOLATION, not UNSUPPORTED_TYPE); HAI.haip_version must be
//     MAJOR.MINOR.PATCH digits; HAI.last_rx_seq may be "" (a real client
//     sends it empty), meaning absent. RUN_STARTED's payload is open (any
//     object). RUN_FINISHED may carry run_id in its payload, as the official
//     SDK sends (G10): it is accepted and ignored. HAI accepts
//     binary_frames and max_concurrent_runs both inside capabilities and at
//     payload level (G2).
//   - Unknown fields (Postel, plus the spec's crit rule): at the top level
//     or in a closed payload object they are ignored when crit is false or
//     absent, and are UNSUPPORTED_TYPE naming the field when crit is true.
//     Open objects (RUN_STARTED's payload, capabilities and its
//     flow_control, params, schema, detail, partial, result) never refuse a
//     key. A key that differs from a known payload field only in case (say
//     "Text" beside "text") is PROTOCOL_VIOLATION whatever crit says,
//     because encoding/json would decode it into that field and bypass
//     these checks.
//   - Decode guarantees that DecodePayload into the struct for the type
//     (HelloPayload for HAI, ErrorPayload for ERROR and RUN_ERROR, a map for
//     RUN_STARTED, …) succeeds, and that Decode(Encode(e)) equals e up to
//     payload white space.
//   - Decode never panics on any input (fuzzed: FuzzDecode).
//   - Published schemas: GenerateSchemas writes these rules as JSON Schemas
//     (haip/schema, embedded: SchemaFS), which a test checks against
//     Decode on the fuzz corpus; every refusal names its schema in the
//     error's detail "schema" (EnvelopeSchemaPath, PayloadSchemaPath).
package haip
