package sse

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// AppendEvent appends one event to dst and returns the extended buffer:
// an "id: <id>" line when id != "", an "event: <name>" line when
// name != "", the data as one "data: " line per line of data, then the
// blank line that dispatches the event.
//
// Data is split on \n, \r\n and \r, so no line break in data can end the
// event early; a reader gets each of them back as \n. Empty data is sent
// as one empty "data: " line, which dispatches an event with empty data.
// A line break in id or name would end the field early, so each \r or \n
// in them is written as a space. An id holding NUL is written as given
// but readers ignore it (the standard says so).
//
// AppendEvent does not allocate when dst has room for the event.
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
		dst = append(dst, "data: "...)
		i := indexLineBreak(data)
		if i < 0 {
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++ // \r\n is one line break
		}
		data = data[i+1:]
	}
	return append(dst, '\n')
}

// AppendComment appends ": <text>" and a blank line: a comment, which
// EventSource ignores, so it serves as a keep-alive. Each \r or \n in text
// is written as a space. It does not allocate when dst has room.
func AppendComment(dst []byte, text string) []byte {
	dst = append(dst, ": "...)
	dst = appendOneLine(dst, text)
	return append(dst, "\n\n"...)
}

// AppendRetry appends "retry: <milliseconds>" and a blank line: the delay
// a browser waits before it reconnects. The duration is truncated to whole
// milliseconds; a negative one is sent as 0. It does not allocate when dst
// has room.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, max(d.Milliseconds(), 0), 10)
	return append(dst, "\n\n"...)
}

// appendOneLine appends s with each \r and \n replaced by a space.
func appendOneLine(dst []byte, s string) []byte {
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		dst = append(dst, ' ')
		s = s[i+1:]
	}
}

// indexLineBreak returns the index of the first \r or \n in b, or -1.
// Two IndexByte scans (vectorised) beat one IndexAny (bytewise) on the
// long, break-free JSON lines that are the common case.
func indexLineBreak(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}
