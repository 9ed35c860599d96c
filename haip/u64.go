package haip

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// maxU64Digits is the longest uint64str the pattern ^[0-9]{1,20}$ admits.
const maxU64Digits = 20

// U64 is HAIP's uint64str: on the wire a JSON string of 1–20 decimal digits
// (leading zeros allowed) whose value fits in a uint64; never a JSON number.
type U64 uint64

// MarshalJSON encodes u as a quoted decimal, e.g. "123".
func (u U64) MarshalJSON() ([]byte, error) {
	return AppendU64(make([]byte, 0, 22), uint64(u)), nil
}

// UnmarshalJSON decodes a uint64str. It refuses JSON numbers, the empty
// string, more than 20 digits, values above 2^64-1, signs and spaces, with a
// PROTOCOL_VIOLATION *Error. JSON escapes inside the string are honoured.
// As with the standard library's types, a JSON null leaves u unchanged.
func (u *U64) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := parseU64JSON(b)
	if err != nil {
		return err
	}
	*u = U64(v)
	return nil
}

// parseU64JSON parses a raw JSON value as a uint64str.
func parseU64JSON(b []byte) (uint64, *Error) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return 0, Errorf(CodeProtocolViolation, "uint64str must be a JSON string, not %s", clip(string(b)))
	}
	inner := b[1 : len(b)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return parseU64Bytes(inner)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, Errorf(CodeProtocolViolation, "invalid uint64str %s: %v", clip(string(b)), err)
	}
	return parseU64String(s)
}

// ParseU64 parses s as a uint64str: 1–20 ASCII digits, leading zeros
// allowed, value at most 18446744073709551615. Failures are
// PROTOCOL_VIOLATION *Errors.
func ParseU64(s string) (uint64, error) {
	v, err := parseU64String(s)
	if err != nil {
		return 0, err
	}
	return v, nil
}

// parseU64String is ParseU64 with a concrete error type, so that callers
// inside the package do not build a non-nil error interface from a nil
// *Error.
func parseU64String(s string) (uint64, *Error) {
	if len(s) == 0 {
		return 0, Errorf(CodeProtocolViolation, "invalid uint64str %q: empty", s)
	}
	if len(s) > maxU64Digits {
		return 0, Errorf(CodeProtocolViolation, "invalid uint64str %q: more than %d digits", clip(s), maxU64Digits)
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, Errorf(CodeProtocolViolation, "invalid uint64str %q: not all decimal digits", clip(s))
		}
		d := uint64(c - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, Errorf(CodeProtocolViolation, "invalid uint64str %q: exceeds 18446744073709551615", s)
		}
		v = v*10 + d
	}
	return v, nil
}

// parseU64Bytes is parseU64String over bytes, without a string allocation.
func parseU64Bytes(b []byte) (uint64, *Error) {
	if len(b) == 0 || len(b) > maxU64Digits {
		return parseU64String(string(b))
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return parseU64String(string(b))
		}
		d := uint64(c - '0')
		if v > (^uint64(0)-d)/10 {
			return parseU64String(string(b))
		}
		v = v*10 + d
	}
	return v, nil
}

// AppendU64 appends v to dst in uint64str form (a quoted decimal such as
// "123") and returns the extended slice.
func AppendU64(dst []byte, v uint64) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '"')
}
