package haip

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
)

// The published JSON Schemas (2020-12) of what Decode accepts: one for
// the envelope and one per payload type. They are generated from the
// codec's own tables (payloadSchema and the envelope rules in decode), so
// they say exactly what Decode checks, including its leniencies:
//
//   - null counts as absent (an optional field may be null; a required one
//     may not);
//   - unknown fields are ignored unless the envelope sets crit, which
//     makes them an error (the envelope schema then applies each
//     payload's $defs/strict variant);
//   - a payload key that differs from a known field only in case is
//     refused (encoding/json would decode it into that field);
//   - the run_id the v1 SDK puts in a RUN_FINISHED payload is allowed.
//
// They describe I-JSON documents (RFC 7493: UTF-8, no member named
// twice): Decode refuses invalid UTF-8, and reads a member given twice as
// its last value, like most JSON parsers, but checks both values inside a
// payload, so for a document with duplicate member names the schemas are
// no guide. One rule JSON Schema cannot state: an integer field must be
// written as an integer literal (1, not 1.0 or 1e0), which Decode checks. A test keeps the committed files equal to
// what GenerateSchemas makes, and checks them against Decode on the fuzz
// corpus.

// Where an edge serves the schemas, from its base URL.
const (
	// SchemaPath is the directory of the schemas.
	SchemaPath = "/haip/schema/"
	// EnvelopeSchemaPath is the envelope's schema.
	EnvelopeSchemaPath = SchemaPath + "envelope.json"
)

// PayloadSchemaPath is the path of type t's payload schema.
func PayloadSchemaPath(t Type) string { return SchemaPath + "payloads/" + string(t) + ".json" }

//go:embed schema
var schemaFiles embed.FS

// SchemaFS returns the committed schema files: envelope.json and
// payloads/<TYPE>.json.
func SchemaFS() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schema")
	if err != nil {
		panic(err) // cannot happen: "schema" is a valid path embedded above
	}
	return sub
}

// GenerateSchemas returns the schema files, by path relative to the
// schema directory, each JSON indented with tabs and ending in a newline.
func GenerateSchemas() (map[string][]byte, error) {
	files := make(map[string][]byte, 1+len(AllTypes()))
	env, err := encodeSchema(envelopeSchema())
	if err != nil {
		return nil, err
	}
	files["envelope.json"] = env
	for _, t := range AllTypes() {
		s, _ := payloadSchema(t)
		doc := objectSchema(&s, false)
		doc["$schema"] = draft2020
		doc["title"] = "HAIP " + Version + " " + string(t) + " payload"
		doc["description"] = "The payload of a " + string(t) + " envelope, as the edge accepts it (" + leniencies + "). " +
			"$defs/strict is the same payload in an envelope with crit: true."
		if !s.open || s.n > 0 {
			doc["$defs"] = map[string]any{"strict": objectSchema(&s, true)}
		}
		b, err := encodeSchema(doc)
		if err != nil {
			return nil, err
		}
		files["payloads/"+string(t)+".json"] = b
	}
	return files, nil
}

const draft2020 = "https://json-schema.org/draft/2020-12/schema"

const leniencies = "null counts as absent; unknown fields are ignored unless the envelope sets crit; " +
	"a key differing from a known field only in case is refused; documents are I-JSON (no duplicate member names)"

func encodeSchema(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "\t")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("cannot encode schema: %w", err)
	}
	return b.Bytes(), nil
}

// envelopeFields are the envelope's members, in wire order, with whether
// each is required.
var envelopeFieldNames = [...]string{"id", "session", "seq", "ts", "channel", "type", "payload", "ack", "pv", "crit", "bin_len", "bin_mime", "run_id", "thread_id"}

func envelopeSchema() map[string]any {
	types := make([]any, 0, len(AllTypes()))
	for _, t := range AllTypes() {
		types = append(types, string(t))
	}
	channels := []any{string(ChannelUser), string(ChannelAgent), string(ChannelSystem), string(ChannelAudioIn), string(ChannelAudioOut)}
	props := map[string]any{
		"id":        uuidSchema(),
		"session":   map[string]any{"type": "string", "pattern": "^[A-Za-z0-9_-]{1," + strconv.Itoa(MaxSessionIDLen) + "}$"},
		"seq":       u64Schema(),
		"ts":        u64Schema(),
		"channel":   map[string]any{"enum": channels},
		"type":      map[string]any{"enum": types},
		"payload":   map[string]any{"type": "object"},
		"ack":       nullable(u64Schema()),
		"pv":        nullable(map[string]any{"type": "integer", "minimum": 0, "maximum": 255}),
		"crit":      nullable(map[string]any{"type": "boolean"}),
		"bin_len":   nullable(map[string]any{"type": "integer", "minimum": 0, "maximum": int64(math.MaxInt64)}),
		"bin_mime":  nullable(map[string]any{"type": "string"}),
		"run_id":    nullable(uuidSchema()),
		"thread_id": nullable(map[string]any{"type": "string", "maxLength": MaxThreadIDLen}),
	}
	known := make([]any, 0, len(envelopeFieldNames))
	for _, n := range envelopeFieldNames {
		known = append(known, n)
	}
	all := []any{
		map[string]any{
			"if":   map[string]any{"properties": map[string]any{"crit": map[string]any{"const": true}}, "required": []any{"crit"}},
			"then": map[string]any{"propertyNames": map[string]any{"enum": known}},
		},
	}
	for _, t := range AllTypes() {
		ref := "payloads/" + string(t) + ".json"
		all = append(all, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": string(t)}}, "required": []any{"type"}},
			"then": map[string]any{"properties": map[string]any{"payload": map[string]any{"$ref": ref}}},
		})
		if s, _ := payloadSchema(t); !s.open || s.n > 0 {
			all = append(all, map[string]any{
				"if": map[string]any{
					"properties": map[string]any{"type": map[string]any{"const": string(t)}, "crit": map[string]any{"const": true}},
					"required":   []any{"type", "crit"},
				},
				"then": map[string]any{"properties": map[string]any{"payload": map[string]any{"$ref": ref + "#/$defs/strict"}}},
			})
		}
	}
	return map[string]any{
		"$schema":     draft2020,
		"title":       "HAIP " + Version + " envelope",
		"description": "One HAIP message, as the edge accepts it (" + leniencies + "). Each type's payload: payloads/<TYPE>.json.",
		"type":        "object",
		"required":    []any{"id", "session", "seq", "ts", "channel", "type", "payload"},
		"properties":  props,
		"allOf":       all,
	}
}

// objectSchema is the schema of an object checked by checkObject against
// s; strict is checkObject with crit set.
func objectSchema(s *schema, strict bool) map[string]any {
	out := map[string]any{"type": "object"}
	if s.n == 0 && s.open {
		return out
	}
	props := map[string]any{}
	var required, names, folds []any
	for i := 0; i < s.n; i++ {
		f := &s.fields[i]
		names = append(names, f.name)
		ks := kindSchema(f.kind, strict)
		if f.req {
			required = append(required, f.name)
			props[f.name] = ks
		} else {
			props[f.name] = nullable(ks)
		}
		if f.kind != kIgnore {
			folds = append(folds, map[string]any{"pattern": "^" + foldPattern(f.name) + "$", "not": map[string]any{"const": f.name}})
		}
	}
	out["properties"] = props
	if len(required) > 0 {
		out["required"] = required
	}
	var nameRules []any
	if len(folds) > 0 {
		nameRules = append(nameRules, map[string]any{"not": map[string]any{"anyOf": folds}})
	}
	if strict && !s.open {
		nameRules = append(nameRules, map[string]any{"enum": names})
	}
	switch len(nameRules) {
	case 1:
		out["propertyNames"] = nameRules[0]
	case 2:
		out["propertyNames"] = map[string]any{"allOf": nameRules}
	}
	return out
}

// foldPattern matches s under encoding/json's case folding
// (bytes.EqualFold): each ASCII letter either way, with the two non-ASCII
// runes that fold to k and s.
func foldPattern(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == 'k':
			b.WriteString("[kK\u212a]")
		case c == 's':
			b.WriteString("[sS\u017f]")
		case 'a' <= c && c <= 'z':
			b.WriteString("[" + string(c) + string(c-'a'+'A') + "]")
		default:
			b.WriteString(regexpQuote(c))
		}
	}
	return b.String()
}

func regexpQuote(c rune) string {
	if strings.ContainsRune(`\.+*?()|[]{}^$-/`, c) {
		return `\` + string(c)
	}
	return string(c)
}

func nullable(s map[string]any) map[string]any {
	return map[string]any{"anyOf": []any{map[string]any{"type": "null"}, s}}
}

// uuidSchema is a uuid as ValidUUID takes it: any version and variant
// (UUIDv7 and the nil uuid too, gap G16).
func uuidSchema() map[string]any {
	return map[string]any{"type": "string", "pattern": "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"}
}

// u64Schema is a uint64str: 1–20 ASCII digits (leading zeros allowed),
// at most 18446744073709551615.
func u64Schema() map[string]any {
	return map[string]any{"type": "string", "pattern": "^(?:[0-9]{1,19}|" + notAbove(strconv.FormatUint(math.MaxUint64, 10)) + ")$"}
}

// notAbove matches the decimal strings of len(max) digits that are at
// most max.
func notAbove(max string) string {
	alts := make([]string, 0, len(max)+1)
	for i := 0; i < len(max); i++ {
		d := max[i]
		if d == '0' {
			continue
		}
		rest := len(max) - i - 1
		alt := max[:i] + "[0-" + string(d-1) + "]"
		if rest > 0 {
			alt += "[0-9]{" + strconv.Itoa(rest) + "}"
		}
		alts = append(alts, alt)
	}
	alts = append(alts, max)
	return "(?:" + strings.Join(alts, "|") + ")"
}

func enumOf(vals ...string) map[string]any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return map[string]any{"type": "string", "enum": out}
}

// kindSchema is the schema of one field kind (checkValue).
func kindSchema(k kind, strict bool) map[string]any {
	switch k {
	case kString:
		return map[string]any{"type": "string"}
	case kUUID:
		return uuidSchema()
	case kU64:
		return u64Schema()
	case kU64OrEmpty:
		return map[string]any{"anyOf": []any{map[string]any{"const": ""}, u64Schema()}}
	case kBool:
		return map[string]any{"type": "boolean"}
	case kObject:
		return map[string]any{"type": "object"}
	case kBase64:
		return map[string]any{"type": "string", "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"}
	case kVersion:
		return map[string]any{"type": "string", "pattern": "^[0-9]+\\.[0-9]+\\.[0-9]+$"}
	case kMajors:
		return map[string]any{"type": "array", "items": map[string]any{"type": "integer", "minimum": 0, "maximum": 255}}
	case kEvents:
		types := make([]string, 0, len(AllTypes()))
		for _, t := range AllTypes() {
			types = append(types, string(t))
		}
		return map[string]any{"type": "array", "items": enumOf(types...)}
	case kCaps:
		s := capsSchema()
		return objectSchema(&s, strict)
	case kFlowCaps:
		s := flowCapsSchema()
		return objectSchema(&s, strict)
	case kTools:
		s := toolInfoSchema()
		return map[string]any{"type": "array", "items": objectSchema(&s, strict)}
	case kProgress:
		return map[string]any{"type": "number", "minimum": 0, "maximum": 100}
	case kPosInt:
		return map[string]any{"type": "integer", "minimum": 1, "maximum": int64(math.MaxInt)}
	case kPosInt64:
		return map[string]any{"type": "integer", "minimum": 1, "maximum": int64(math.MaxInt64)}
	case kNonNegInt64:
		return map[string]any{"type": "integer", "minimum": 0, "maximum": int64(math.MaxInt64)}
	case kRunStatus:
		return enumOf(string(RunStatusOK), string(RunStatusCancelled), string(RunStatusError))
	case kToolStatus:
		return enumOf(string(ToolStatusQueued), string(ToolStatusRunning), string(ToolStatusCancelling))
	case kToolDoneStatus:
		return enumOf(string(ToolDoneOK), string(ToolDoneCancelled), string(ToolDoneError))
	}
	return map[string]any{} // kIgnore, kAny: any value
}
