package ndjson

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

const (
	// DefaultMaxLine is the line limit NewReader uses when given
	// maxLine <= 0.
	DefaultMaxLine = 1 << 20

	// readBufSize is the largest read buffer a Reader uses; lines that
	// fit in it are returned in place, without a copy. Longer lines (up
	// to the limit) are gathered in a second buffer.
	readBufSize = 4096

	// minReadBufSize is bufio's smallest buffer.
	minReadBufSize = 16
)

// LineTooLongError reports a line longer than the Reader's limit. The line
// has been consumed up to its newline; the next Next goes on with the
// following line.
type LineTooLongError struct {
	// Line is the 1-based number of the line.
	Line int
	// Size is the line's length in bytes without its "\n" or "\r\n".
	Size int
	// Max is the limit it exceeds.
	Max int
}

// Error implements error.
func (e *LineTooLongError) Error() string {
	return fmt.Sprintf("ndjson: line %d is %d bytes, over the %d-byte limit", e.Line, e.Size, e.Max)
}

// Reader reads lines from a stream with bounded memory. It is not safe for
// concurrent use.
type Reader struct {
	br   *bufio.Reader
	max  int
	buf  []byte // a line longer than br's buffer, gathered; at most max+2 bytes
	line int    // number of the line last returned or reported
	err  error  // returned by every Next once set: io.EOF or a read error
}

// NewReader returns a Reader of r whose lines may hold at most maxLine
// bytes, not counting their "\n" or "\r\n"; maxLine <= 0 means
// DefaultMaxLine. The Reader buffers r; it may read ahead of the line
// last returned.
func NewReader(r io.Reader, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	size := max(min(maxLine+2, readBufSize), minReadBufSize)
	return &Reader{br: bufio.NewReaderSize(r, size), max: maxLine}
}

// Line returns the 1-based number of the line last returned or reported
// by Next (blank lines count too), or 0 before the first.
func (r *Reader) Line() int { return r.line }

// Next blocks until it has read the next non-blank line and returns it
// without its "\n" or "\r\n". Lines holding only spaces, tabs and '\r' are
// skipped. The slice is valid until the next call; copy it to keep it.
//
// A line longer than the limit is consumed up to its newline (without
// being kept) and reported as a [*LineTooLongError]; the next call goes on
// with the following line. A last line without a newline is returned at
// the end of the stream (a '\r' ending it is dropped, as if it were
// "\r\n"); then Next returns io.EOF. A read error is returned wrapped, and
// the partial line it interrupted is dropped. After io.EOF or a read error
// every later Next returns the same error.
func (r *Reader) Next() ([]byte, error) {
	for {
		if r.err != nil {
			return nil, r.err
		}
		line, size, err := r.readLine()
		if err != nil {
			r.err = err
			return nil, err
		}
		r.line++
		if size > r.max {
			return nil, &LineTooLongError{Line: r.line, Size: size, Max: r.max}
		}
		if !isBlank(line) {
			return line, nil
		}
	}
}

// readLine reads through the next "\n" or the end of the stream. It
// returns the line without its terminator and its size; when the line is
// over the limit, only its size. A line is gathered in r.buf only while it
// could still fit, so memory stays within the limit.
func (r *Reader) readLine() (line []byte, size int, err error) {
	r.buf = r.buf[:0]
	var last2 [2]byte // the line's last two bytes so far
	for {
		chunk, err := r.br.ReadSlice('\n')
		size += len(chunk)
		switch n := len(chunk); {
		case n >= 2:
			last2 = [2]byte{chunk[n-2], chunk[n-1]}
		case n == 1:
			last2 = [2]byte{last2[1], chunk[0]}
		}
		keep := size <= r.max+2 // what fits: r.max bytes, then "\r\n"
		switch {
		case err == nil: // chunk ends the line with '\n'
			size--
			if last2[0] == '\r' {
				size--
			}
			if !keep {
				return nil, size, nil
			}
			if len(r.buf) == 0 {
				return chunk[:size], size, nil // in place
			}
			r.buf = append(grow(r.buf, len(chunk), r.max+2), chunk...)
			return r.buf[:size], size, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if keep {
				r.buf = append(grow(r.buf, len(chunk), r.max+2), chunk...)
			}
		case errors.Is(err, io.EOF):
			if size == 0 {
				return nil, 0, io.EOF
			}
			r.err = io.EOF // a last line without "\n": return it first
			if last2[1] == '\r' {
				size--
			}
			if !keep {
				return nil, size, nil
			}
			if len(r.buf) == 0 {
				return chunk[:size], size, nil
			}
			r.buf = append(grow(r.buf, len(chunk), r.max+2), chunk...)
			return r.buf[:size], size, nil
		default:
			return nil, 0, fmt.Errorf("ndjson: cannot read line %d: %w", r.line+1, err)
		}
	}
}

// isBlank reports whether b holds only spaces, tabs and '\r'.
func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// grow makes room in b for n more bytes. It grows b's capacity to at most
// limit (or exactly what is needed, if more), where append's doubling
// could reach twice the limit.
func grow(b []byte, n, limit int) []byte {
	need := len(b) + n
	if need <= cap(b) {
		return b
	}
	c := max(min(max(2*cap(b), 64), limit), need)
	grown := make([]byte, len(b), c)
	copy(grown, b)
	return grown
}
