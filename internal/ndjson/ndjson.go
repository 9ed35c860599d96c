// Package ndjson reads and writes newline-delimited records (NDJSON) on
// streams that may be huge or endless, with bounded memory.
package ndjson

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// LineTooLongError reports a line over the limit. The line was consumed;
// the Reader goes on with the next one.
type LineTooLongError struct {
	Line int // 1-based line number
	Size int // bytes seen (at least Max+1)
	Max  int
}

func (e *LineTooLongError) Error() string {
	return fmt.Sprintf("ndjson: line %d longer than %d bytes", e.Line, e.Max)
}

// Reader reads lines. It is not safe for concurrent use.
type Reader struct {
	br   *bufio.Reader
	max  int
	buf  []byte
	line int
}

// NewReader reads from r; maxLine bounds one line (and the memory used).
func NewReader(r io.Reader, maxLine int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 16<<10), max: maxLine}
}

// Line is the 1-based number of the line last returned or reported.
func (r *Reader) Line() int { return r.line }

// Next returns the next non-blank line without its "\n" or "\r\n"; the
// slice is valid until the next call. An over-long line is reported as
// *LineTooLongError and skipped. A last line without a newline is
// returned at EOF; then io.EOF.
func (r *Reader) Next() ([]byte, error) {
	for {
		r.buf = r.buf[:0]
		size, tooLong := 0, false
		for {
			chunk, err := r.br.ReadSlice('\n')
			size += len(chunk)
			if !tooLong {
				if len(r.buf)+len(chunk) > r.max+2 { // room for "\r\n"
					tooLong = true
					r.buf = r.buf[:0]
				} else {
					r.buf = append(r.buf, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			if size == 0 && errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			break
		}
		r.line++
		line := bytes.TrimSuffix(r.buf, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if tooLong || len(line) > r.max {
			return nil, &LineTooLongError{Line: r.line, Size: size, Max: r.max}
		}
		if len(bytes.Trim(line, " \t\r")) == 0 {
			continue
		}
		return line, nil
	}
}

// Append appends line and "\n". A line holding '\n' or '\r' is refused: it
// would split the record.
func Append(dst, line []byte) ([]byte, error) {
	if bytes.ContainsAny(line, "\r\n") {
		return dst, errors.New("ndjson: record contains a line break")
	}
	dst = append(dst, line...)
	return append(dst, '\n'), nil
}
