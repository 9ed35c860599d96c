package sse

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// maxIDDigits is the length of the largest uint64, 18446744073709551615.
const maxIDDigits = 20

// maxQuotedID bounds how much of a bad header value an error repeats.
const maxQuotedID = 32

// ErrInvalidLastEventID is wrapped by the error ParseLastEventID returns
// for a value that is not a decimal uint64.
var ErrInvalidLastEventID = errors.New("sse: invalid Last-Event-ID")

// ParseLastEventID parses the value of a Last-Event-ID request header. Our
// event ids are sequence numbers, so it must be a decimal uint64: ASCII
// digits only, at most 20 of them, no sign. Surrounding spaces and tabs
// are trimmed. An empty value means the client has no id: ok is false and
// err nil. Anything else invalid (a sign, a non-digit, overflow, more than
// 20 digits) returns an error wrapping [ErrInvalidLastEventID].
func ParseLastEventID(s string) (seq uint64, ok bool, err error) {
	t := strings.Trim(s, " \t")
	if t == "" {
		return 0, false, nil
	}
	if len(t) > maxIDDigits {
		return 0, false, fmt.Errorf("%w %q: longer than %d digits", ErrInvalidLastEventID, clip(t), maxIDDigits)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < '0' || c > '9' {
			return 0, false, fmt.Errorf("%w %q: want a decimal sequence number", ErrInvalidLastEventID, clip(t))
		}
		d := uint64(c - '0')
		if seq > (math.MaxUint64-d)/10 {
			return 0, false, fmt.Errorf("%w %q: overflows uint64", ErrInvalidLastEventID, clip(t))
		}
		seq = seq*10 + d
	}
	return seq, true, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > maxQuotedID {
		return s[:maxQuotedID] + "..."
	}
	return s
}
