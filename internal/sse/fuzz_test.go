package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// fuzzLimit is the Reader limit FuzzSSEReader uses on arbitrary input:
// small, so the fuzzer reaches it.
const fuzzLimit = 64

// FuzzSSEReader checks the Reader in two ways. Arbitrary bytes, fed in two
// pieces split where the fuzzer says, must never make it panic or return
// data over the limit, and must parse as a plain reading of the standard
// (refParse, over the whole input at once) says. And an event that
// AppendEvent wrote from fuzzed fields must come back with those fields.
func FuzzSSEReader(f *testing.F) {
	// Seeds beyond testdata/fuzz/FuzzSSEReader.
	f.Add([]byte("id: 1\ndata: {\"a\":1}\n\n"), 5, "1", "", []byte(`{"a":1}`))
	f.Add([]byte(": c\r\ndata: a\rdata: b\r\n\r\n"), 3, "", "msg", []byte("a\r\nb\rc\n"))
	f.Fuzz(func(t *testing.T, raw []byte, split int, id, name string, data []byte) {
		checkArbitrary(t, raw, split)
		checkRoundTrip(t, split, id, name, data)
	})
}

// splitAt feeds in as two reads, split at n (folded into range).
func splitAt(in []byte, n int) io.Reader {
	if len(in) == 0 {
		return bytes.NewReader(in)
	}
	n = int(uint(n) % uint(len(in)+1))
	return io.MultiReader(bytes.NewReader(in[:n]), bytes.NewReader(in[n:]))
}

func checkArbitrary(t *testing.T, raw []byte, split int) {
	t.Helper()
	rd := NewReader(splitAt(raw, split), fuzzLimit)
	var got []Event
	var err error
	for {
		var e Event
		if e, err = rd.Next(); err != nil {
			break
		}
		if len(e.Data) > fuzzLimit {
			t.Fatalf("event data of %d bytes, over the %d limit", len(e.Data), fuzzLimit)
		}
		got = append(got, e)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("unexpected error %v", err)
	}
	want, tooLarge := refParse(raw, fuzzLimit)
	if tooLarge != errors.Is(err, ErrTooLarge) {
		t.Fatalf("error %v; reference says too large: %v", err, tooLarge)
	}
	if err := sameEvents(got, want); err != nil {
		t.Fatal(err)
	}
}

func checkRoundTrip(t *testing.T, split int, id, name string, data []byte) {
	t.Helper()
	stream := AppendEvent(nil, id, name, data)
	limit := max(len(id), len(name), len(data), 1)
	got, err := readAll(splitAt(stream, split), limit)
	if err != nil {
		t.Fatalf("reading %q: %v", stream, err)
	}
	want := Event{Name: oneLine(name), Data: []byte(normalise(string(data)))}
	if id != "" && !strings.Contains(id, "\x00") {
		want.ID, want.HasID = oneLine(id), true
	}
	if err := sameEvents(got, []Event{want}); err != nil {
		t.Fatalf("%q: %v", stream, err)
	}
}

// refParse is a plain transcription of the standard's "interpreting an
// event stream" over a whole input, with the Reader's limits: a line
// longer than limit+fieldOverhead, or an event's data over limit, stops
// it with tooLarge.
func refParse(in []byte, limit int) (events []Event, tooLarge bool) {
	s := strings.TrimPrefix(string(in), "\xEF\xBB\xBF")
	var data strings.Builder
	var name, id, lastID string
	var hasID, hasRetry bool
	var retry time.Duration
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			// The end: a line without terminator is not a line.
			return events, len(s) > limit+fieldOverhead
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
		if len(line) > limit+fieldOverhead {
			return events, true
		}
		if line == "" {
			lastID = id
			if data.Len() == 0 {
				name = ""
				continue
			}
			d := strings.TrimSuffix(data.String(), "\n")
			events = append(events, Event{ID: lastID, HasID: hasID, Name: name, Data: []byte(d), Retry: retry, HasRetry: hasRetry})
			data.Reset()
			name = ""
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name = value
		case "data":
			if data.Len()+len(value) > limit {
				return events, true
			}
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			if !strings.Contains(value, "\x00") {
				id, hasID = value, true
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				ms, ok := parseRetry([]byte(value))
				if !ok {
					panic("parseRetry refused digits " + value)
				}
				retry, hasRetry = time.Duration(ms)*time.Millisecond, true
			}
		}
	}
}
