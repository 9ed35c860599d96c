// Package sse writes and reads Server-Sent Events (text/event-stream) as
// the HTML Living Standard defines them: the edge's framing of HAIP
// envelopes for browsers, and a parser for clients and tests.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// AppendEvent appends one event: an "id:" line when id is set, an
// "event:" line when name is set, one "data:" line per line of data (split
// on \n, \r\n and \r, so data can never end the event early), then the
// blank line that dispatches it. A reader gets data back with its line
// breaks normalised to \n.
func AppendEvent(dst []byte, id, name string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = appendOneLine(dst, id)
		dst = append(dst, '\n')
	}
	if name != "" {
		dst = append(dst, "event: "...)
		dst = appendOneLine(dst, name)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(dst, '\n')
}

// appendOneLine appends s with line breaks replaced by spaces.
func appendOneLine(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '\r' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendComment appends ": text" and a blank line: a keep-alive that
// EventSource ignores.
func AppendComment(dst []byte, text string) []byte {
	dst = append(dst, ": "...)
	dst = appendOneLine(dst, text)
	return append(dst, "\n\n"...)
}

// AppendRetry appends a "retry:" field: the reconnection delay.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, d.Milliseconds(), 10)
	return append(dst, "\n\n"...)
}

// ParseLastEventID reads a Last-Event-ID header. Our event ids are
// sequence numbers, so it must be a decimal uint64; surrounding spaces are
// ignored. Empty means none (ok false, no error).
func ParseLastEventID(s string) (seq uint64, ok bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false, nil
	}
	if len(s) > 20 {
		return 0, false, fmt.Errorf("event id %q: longer than a uint64", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false, fmt.Errorf("event id %q: want a decimal sequence number", s)
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("event id %q: %w", s, err)
	}
	return v, true, nil
}

// ErrTooLarge is returned by Reader.Next for an event or line over the
// limit; the Reader is unusable afterwards.
var ErrTooLarge = errors.New("sse: event too large")

// Event is one dispatched event.
type Event struct {
	// ID is the stream's last event id (it persists across events);
	// HasID tells whether one was ever set.
	ID    string
	HasID bool
	// Name is the event type; empty means the default "message".
	Name string
	// Data is the event's data, lines joined with \n.
	Data []byte
	// Retry is the last reconnection delay the stream set, if HasRetry.
	Retry    time.Duration
	HasRetry bool
}

// Reader parses an event stream. It is not safe for concurrent use.
type Reader struct {
	br       *bufio.Reader
	max      int
	line     []byte
	data     []byte
	name     string
	id       string
	hasID    bool
	retry    time.Duration
	hasRetry bool
	first    bool
	broken   error
}

// NewReader reads events from r; maxEventBytes bounds one line and one
// event's data.
func NewReader(r io.Reader, maxEventBytes int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 4096), max: maxEventBytes, first: true}
}

// Next returns the next event with data. It returns io.EOF at the end of
// the stream (an unfinished last event is dropped, as the standard says).
func (r *Reader) Next() (Event, error) {
	if r.broken != nil {
		return Event{}, r.broken
	}
	for {
		line, err := r.readLine()
		if err != nil {
			r.broken = err
			return Event{}, err
		}
		if len(line) == 0 { // dispatch
			if len(r.data) == 0 {
				r.name = ""
				continue
			}
			ev := Event{ID: r.id, HasID: r.hasID, Name: r.name, Data: bytes.Clone(r.data[:len(r.data)-1]),
				Retry: r.retry, HasRetry: r.hasRetry}
			r.data, r.name = r.data[:0], ""
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if len(r.data)+len(value)+1 > r.max {
				r.broken = ErrTooLarge
				return Event{}, ErrTooLarge
			}
			r.data = append(r.data, value...)
			r.data = append(r.data, '\n')
		case "event":
			r.name = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.id, r.hasID = string(value), true
			}
		case "retry":
			if ms, ok := allDigits(value); ok {
				r.retry, r.hasRetry = time.Duration(ms)*time.Millisecond, true
			}
		}
	}
}

func allDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// readLine returns one line without its terminator (\r\n, \n or \r).
func (r *Reader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return nil, err // a line without terminator at EOF is dropped
		}
		if r.first {
			r.first = false
			if c == 0xEF { // possible BOM
				if b, _ := r.br.Peek(2); len(b) == 2 && b[0] == 0xBB && b[1] == 0xBF {
					_, _ = r.br.Discard(2)
					continue
				}
			}
		}
		switch c {
		case '\n':
			return r.line, nil
		case '\r':
			if b, err := r.br.Peek(1); err == nil && b[0] == '\n' {
				_, _ = r.br.Discard(1)
			}
			return r.line, nil
		}
		if len(r.line) >= r.max {
			return nil, ErrTooLarge
		}
		r.line = append(r.line, c)
	}
}
