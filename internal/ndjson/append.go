package ndjson

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrLineBreak is wrapped by the error Append returns for a line holding
// '\n' or '\r'.
var ErrLineBreak = errors.New("ndjson: line holds a line break")

// Append appends line and "\n" to dst and returns the extended buffer. A
// line holding '\n' or '\r' would split the record (or, with '\r',
// change it when read back), so Append refuses it: it returns dst
// unchanged and an error wrapping [ErrLineBreak]. Note that a Reader
// skips a line that is empty or only spaces and tabs.
//
// Append does not allocate when dst has room.
func Append(dst, line []byte) ([]byte, error) {
	i := bytes.IndexByte(line, '\n')
	if j := bytes.IndexByte(line, '\r'); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i >= 0 {
		return dst, fmt.Errorf("%w at byte %d of %d", ErrLineBreak, i, len(line))
	}
	dst = append(dst, line...)
	return append(dst, '\n'), nil
}
