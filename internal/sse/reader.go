package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

const (
	// DefaultMaxEventBytes is the limit NewReader uses when given
	// maxEventBytes <= 0.
	DefaultMaxEventBytes = 1 << 20

	// readBufSize is the Reader's read buffer. Lines that fit in it are
	// parsed in place, without a copy.
	readBufSize = 4096

	// fieldOverhead is what a line may hold beyond a field value of
	// maxEventBytes: the longest field name we act on, its colon and
	// space ("retry: ").
	fieldOverhead = len("retry: ")

	// maxEmptyReads is how many (0, nil) reads in a row make Next give up
	// with io.ErrNoProgress, as bufio does.
	maxEmptyReads = 100

	// maxRetryMillis is the largest reconnection time a time.Duration
	// holds; longer "retry" values saturate to it.
	maxRetryMillis = uint64(math.MaxInt64 / int64(time.Millisecond))
)

// utf8BOM is the byte order mark one of which a stream may start with.
var utf8BOM = []byte("\xEF\xBB\xBF")

// ErrTooLarge is wrapped by the error Reader.Next returns when an event's
// data or a single line exceeds the Reader's limit. The Reader is unusable
// afterwards: every later Next returns the same error.
var ErrTooLarge = errors.New("sse: event too large")

// Event is one dispatched event.
type Event struct {
	// ID is the stream's last event id when the event was dispatched. As
	// the standard says, it persists across events until an "id" field
	// changes it, and an "id" field with an empty value resets it to "".
	ID string
	// Name is the event type from an "event" field; empty means the
	// default, "message".
	Name string
	// Data is the event's "data" lines joined with \n. It is the caller's:
	// the Reader does not touch it again.
	Data []byte
	// Retry is the reconnection time the stream last set with a "retry"
	// field; it persists across events too.
	Retry time.Duration
	// HasID tells whether the stream has sent an "id" field (not
	// containing NUL) so far; ID can be "" with HasID true after a reset.
	HasID bool
	// HasRetry tells whether the stream has set Retry so far.
	HasRetry bool
}

// Reader parses a text/event-stream as the HTML Living Standard's "event
// stream interpretation" does and returns the events a browser's
// EventSource would dispatch.
//
// Lines end with \r\n, \n or \r (a \r\n split across two reads counts
// once, and a line ending in \r is parsed without waiting to see if \n
// follows). One leading UTF-8 byte order mark is skipped. Unlike a
// browser, the Reader does not replace invalid UTF-8 with U+FFFD: it
// passes bytes through as they are.
//
// Memory is bounded by a small multiple of maxEventBytes (the data, the
// line being read, the event type and the last event id) plus a constant,
// whatever the input.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	rd      io.Reader
	buf     []byte // read buffer; buf[r:w] is not parsed yet
	r, w    int
	readErr error // what rd returned; reported once buf[r:w] is parsed

	maxData int    // limit on one event's data (without its last \n)
	maxLine int    // limit on one line
	line    []byte // a line that spans reads

	data     []byte // the data buffer, with a \n after each line
	name     string // the event type buffer
	lastName string // the previous event type, reused to save allocations
	id       string // the last event id buffer
	hasID    bool
	retry    time.Duration
	hasRetry bool
	bomDone  bool  // the start of the stream has been checked for a BOM
	skipLF   bool  // the last line ended in \r: a \n next belongs to it
	sticky   error // returned by every Next once set

	onComment func(text []byte) // see OnComment; nil skips comments
}

// OnComment has Next call fn with the text of each comment line (a line
// starting with ':'), without the colon and one space after it, in stream
// order. Comments carry no event; servers use them as keep-alives and to
// say why a stream ends. The slice is valid only during the call. A nil fn
// (the default) skips comments.
func (r *Reader) OnComment(fn func(text []byte)) { r.onComment = fn }

// NewReader returns a Reader of the event stream r. maxEventBytes bounds
// one event's data and one line's field value (a line may hold a few more
// bytes for the field name); maxEventBytes <= 0 means
// DefaultMaxEventBytes.
func NewReader(r io.Reader, maxEventBytes int) *Reader {
	if maxEventBytes <= 0 {
		maxEventBytes = DefaultMaxEventBytes
	}
	return &Reader{
		rd:      r,
		buf:     make([]byte, readBufSize),
		maxData: maxEventBytes,
		maxLine: maxEventBytes + fieldOverhead,
	}
}

// Next blocks until the stream dispatches an event with data and returns
// it. Blocks without data (an "id" or "retry" alone, say) are not events:
// their fields take effect and Next reads on.
//
// At the end of the stream Next returns io.EOF; an event not yet ended by
// a blank line is discarded, as the standard says. When an event's data
// or a line is over the limit it returns an error wrapping
// [ErrTooLarge]. Other read errors are returned wrapped. After any error
// the Reader is spent and every later Next returns the same error.
func (r *Reader) Next() (Event, error) {
	if r.sticky != nil {
		return Event{}, r.sticky
	}
	for {
		line, err := r.readLine()
		if err != nil {
			r.sticky = err
			return Event{}, err
		}
		if len(line) == 0 {
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			if r.onComment != nil {
				text := line[1:]
				if len(text) > 0 && text[0] == ' ' {
					text = text[1:]
				}
				r.onComment(text)
			}
			continue // a comment
		}
		field, value := line, line[len(line):]
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		if err := r.process(field, value); err != nil {
			r.sticky = err
			return Event{}, err
		}
	}
}

// process applies one field to the buffers.
func (r *Reader) process(field, value []byte) error {
	switch string(field) {
	case "data":
		if len(r.data)+len(value) > r.maxData {
			return fmt.Errorf("%w: data over %d bytes", ErrTooLarge, r.maxData)
		}
		r.data = grow(r.data, len(value)+1, r.maxData+1)
		r.data = append(r.data, value...)
		r.data = append(r.data, '\n')
	case "event":
		if string(value) != r.lastName {
			r.lastName = string(value)
		}
		r.name = r.lastName
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			break // the standard ignores an id holding NUL
		}
		if !r.hasID || string(value) != r.id {
			r.id = string(value)
		}
		r.hasID = true
	case "retry":
		if ms, ok := parseRetry(value); ok {
			r.retry, r.hasRetry = time.Duration(ms)*time.Millisecond, true
		}
	}
	return nil // other fields are ignored
}

// dispatch ends the current block. It returns the event if the block had
// data; either way it empties the data and event type buffers.
func (r *Reader) dispatch() (Event, bool) {
	if len(r.data) == 0 {
		r.name = ""
		return Event{}, false
	}
	ev := Event{
		ID:       r.id,
		Name:     r.name,
		Data:     bytes.Clone(r.data[:len(r.data)-1]),
		Retry:    r.retry,
		HasID:    r.hasID,
		HasRetry: r.hasRetry,
	}
	r.data, r.name = r.data[:0], ""
	return ev, true
}

// parseRetry parses a "retry" value: ASCII digits only, at least one.
// Values too large for a time.Duration saturate.
func parseRetry(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var ms uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		ms = min(ms*10+uint64(c-'0'), maxRetryMillis)
	}
	return ms, true
}

// readLine returns the next line without its terminator. The slice points
// into r.buf or r.line and is valid until the next readLine.
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		if r.r == r.w {
			if err := r.fill(); err != nil {
				return nil, err // a line cut short by the end is dropped
			}
			continue
		}
		if r.skipLF {
			r.skipLF = false
			if r.buf[r.r] == '\n' {
				r.r++
				continue
			}
		}
		if !r.bomDone {
			avail := r.buf[r.r:r.w]
			n := min(len(avail), len(utf8BOM))
			switch {
			case !bytes.Equal(avail[:n], utf8BOM[:n]):
				r.bomDone = true
			case n == len(utf8BOM):
				r.r += n
				r.bomDone = true
				continue
			default: // a BOM's first bytes: read on to decide
				if err := r.fill(); err != nil {
					r.bomDone = true // not a BOM; the error comes back later
				}
				continue
			}
		}
		chunk := r.buf[r.r:r.w]
		i := indexLineBreak(chunk)
		if i < 0 {
			if len(r.line)+len(chunk) > r.maxLine {
				return nil, r.lineTooLarge()
			}
			r.line = append(grow(r.line, len(chunk), r.maxLine), chunk...)
			r.r = r.w
			continue
		}
		r.r += i + 1
		r.skipLF = chunk[i] == '\r'
		if len(r.line)+i > r.maxLine {
			return nil, r.lineTooLarge()
		}
		if len(r.line) == 0 {
			return chunk[:i], nil // in place
		}
		r.line = append(grow(r.line, i, r.maxLine), chunk[:i]...)
		return r.line, nil
	}
}

func (r *Reader) lineTooLarge() error {
	return fmt.Errorf("%w: line over %d bytes", ErrTooLarge, r.maxLine)
}

// fill reads more input into r.buf. It returns an error only when it
// read nothing; an error that came with data is kept for the next fill.
func (r *Reader) fill() error {
	if r.readErr != nil {
		return r.readErr
	}
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	for range maxEmptyReads {
		n, err := r.rd.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			err, n = fmt.Errorf("sse: cannot read stream: reader returned count %d", n), 0
		}
		r.w += n
		if err != nil {
			if !errors.Is(err, io.EOF) {
				err = fmt.Errorf("sse: cannot read stream: %w", err)
			}
			r.readErr = err
			if n > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	r.readErr = fmt.Errorf("sse: cannot read stream: %w", io.ErrNoProgress)
	return r.readErr
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
