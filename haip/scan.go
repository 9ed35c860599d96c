package haip

import (
	"bytes"
	"encoding/json"
	"math"
	"unicode/utf8"
)

// This file holds a minimal walker over JSON text that has already passed
// json.Valid. Because the input is known to be well-formed, walking it needs
// no error handling beyond bounds checks, which stay in as a guard against
// misuse: on malformed input the walker stops early instead of panicking.
//
// Decode walks the envelope object once with it, matching keys exactly (and
// case-sensitively, unlike encoding/json's struct decoding), and validates
// values in place without building intermediate maps.

// skipWS returns the index of the first non-white-space byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	i++
	// Fast path: the first quote ends the string unless a backslash comes
	// before it. IndexByte is vectorised, which matters for long texts.
	if j := bytes.IndexByte(b[i:], '"'); j >= 0 && bytes.IndexByte(b[i:i+j], '\\') < 0 {
		return i + j + 1
	}
	for i < len(b) {
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			i += 2 // the backslash and the byte it escapes
		default:
			i++
		}
	}
	return len(b)
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// objIter iterates over the members of a JSON object.
type objIter struct {
	b []byte
	i int
}

// newObjIter returns an iterator over the object starting at obj[0] == '{'.
func newObjIter(obj []byte) objIter {
	return objIter{b: obj, i: 1}
}

// next returns the next member: its key without the quotes (still escaped
// when escaped is true) and its raw value. ok is false after the last member.
func (it *objIter) next() (key []byte, escaped bool, val []byte, ok bool) {
	b := it.b
	i := skipWS(b, it.i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		it.i = len(b)
		return nil, false, nil, false
	}
	ke := skipString(b, i)
	if ke-1 <= i {
		it.i = len(b)
		return nil, false, nil, false
	}
	key = b[i+1 : ke-1]
	i = skipWS(b, ke)
	if i >= len(b) || b[i] != ':' {
		it.i = len(b)
		return nil, false, nil, false
	}
	i = skipWS(b, i+1)
	ve := skipValue(b, i)
	if ve <= i {
		it.i = len(b)
		return nil, false, nil, false
	}
	it.i = ve
	return key, bytes.IndexByte(key, '\\') >= 0, b[i:ve], true
}

// arrIter iterates over the elements of a JSON array.
type arrIter struct {
	b []byte
	i int
}

// newArrIter returns an iterator over the array starting at arr[0] == '['.
func newArrIter(arr []byte) arrIter {
	return arrIter{b: arr, i: 1}
}

// next returns the next element's raw value; ok is false after the last.
func (it *arrIter) next() (val []byte, ok bool) {
	b := it.b
	i := skipWS(b, it.i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] == ']' {
		it.i = len(b)
		return nil, false
	}
	ve := skipValue(b, i)
	if ve <= i {
		it.i = len(b)
		return nil, false
	}
	it.i = ve
	return b[i:ve], true
}

// unescapeKey decodes a member key that contains escapes.
func unescapeKey(key []byte) []byte {
	q := make([]byte, 0, len(key)+2)
	q = append(q, '"')
	q = append(q, key...)
	q = append(q, '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return key
	}
	return []byte(s)
}

// isNull reports whether a raw value is absent (nil) or JSON null. Both
// count as "missing" throughout this package.
func isNull(v []byte) bool {
	return len(v) == 0 || v[0] == 'n'
}

// isString reports whether a raw value is a JSON string.
func isString(v []byte) bool {
	return len(v) >= 2 && v[0] == '"'
}

// isObject reports whether a raw value is a JSON object.
func isObject(v []byte) bool {
	return len(v) >= 2 && v[0] == '{'
}

// isArray reports whether a raw value is a JSON array.
func isArray(v []byte) bool {
	return len(v) >= 2 && v[0] == '['
}

// isBool reports whether a raw value is true or false.
func isBool(v []byte) bool {
	return len(v) > 0 && (v[0] == 't' || v[0] == 'f')
}

// isNumber reports whether a raw value is a JSON number.
func isNumber(v []byte) bool {
	return len(v) > 0 && (v[0] == '-' || ('0' <= v[0] && v[0] <= '9'))
}

// stringContent returns the decoded content of a raw JSON string as bytes.
// When the string has no escapes the result aliases v; otherwise it is a
// fresh decoding.
func stringContent(v []byte) ([]byte, bool) {
	if !isString(v) {
		return nil, false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}

// rawString returns the decoded content of a raw JSON string.
func rawString(v []byte) (string, bool) {
	if !isString(v) {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// parseIntLit parses a JSON number written as an integer literal (an
// optional minus and digits; no fraction, no exponent) that fits an int64.
// Integer fields must be written this way because encoding/json refuses
// "1.0" and "1e3" for Go integer types, and DecodePayload must not fail on
// a payload that Decode accepted.
func parseIntLit(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	neg := v[0] == '-'
	if neg {
		v = v[1:]
	}
	if len(v) == 0 {
		return 0, false
	}
	var u uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (math.MaxUint64-uint64(c-'0'))/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// appendString appends s to dst as a JSON string. It escapes only what JSON
// requires (quote, backslash, control characters) and does no HTML
// escaping; invalid UTF-8 becomes U+FFFD, as with encoding/json.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendCompact appends the valid JSON src to dst without insignificant
// white space (like json.Compact, without its bytes.Buffer).
func appendCompact(dst, src []byte) []byte {
	start := 0
	for i := 0; i < len(src); {
		switch src[i] {
		case '"':
			i = skipString(src, i)
		case ' ', '\t', '\n', '\r':
			dst = append(dst, src[start:i]...)
			i = skipWS(src, i)
			start = i
		default:
			i++
		}
	}
	return append(dst, src[start:]...)
}
