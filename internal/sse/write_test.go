package sse

import (
	"bytes"
	"testing"
	"time"
)

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		id, ev   string
		data     string
		want     string
		dstStart string
	}{
		{name: "data only", data: `{"a":1}`, want: "data: {\"a\":1}\n\n"},
		{name: "id", id: "42", data: "x", want: "id: 42\ndata: x\n\n"},
		{name: "event name", ev: "note", data: "x", want: "event: note\ndata: x\n\n"},
		{name: "id and name", id: "7", ev: "note", data: "x", want: "id: 7\nevent: note\ndata: x\n\n"},
		{name: "lf", data: "a\nb", want: "data: a\ndata: b\n\n"},
		{name: "crlf", data: "a\r\nb", want: "data: a\ndata: b\n\n"},
		{name: "cr", data: "a\rb", want: "data: a\ndata: b\n\n"},
		{name: "cr cr", data: "a\r\rb", want: "data: a\ndata: \ndata: b\n\n"},
		{name: "lf cr", data: "a\n\rb", want: "data: a\ndata: \ndata: b\n\n"},
		{name: "mixed", data: "a\r\nb\rc\nd", want: "data: a\ndata: b\ndata: c\ndata: d\n\n"},
		{name: "empty data", data: "", want: "data: \n\n"},
		{name: "only a newline", data: "\n", want: "data: \ndata: \n\n"},
		{name: "trailing newline", data: "a\n", want: "data: a\ndata: \n\n"},
		{name: "trailing crlf", data: "a\r\n", want: "data: a\ndata: \n\n"},
		{name: "trailing cr", data: "a\r", want: "data: a\ndata: \n\n"},
		{name: "leading space kept", data: " a", want: "data:  a\n\n"},
		{name: "colon in data", data: "data: x", want: "data: data: x\n\n"},
		{name: "line breaks in id", id: "1\r\n2", data: "x", want: "id: 1  2\ndata: x\n\n"},
		{name: "line break in name", ev: "a\nb", data: "x", want: "event: a b\ndata: x\n\n"},
		{name: "appends to dst", dstStart: ": hi\n\n", id: "1", data: "x", want: ": hi\n\nid: 1\ndata: x\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := AppendEvent([]byte(tc.dstStart), tc.id, tc.ev, []byte(tc.data))
			if string(got) != tc.want {
				t.Fatalf("AppendEvent(%q, %q, %q) = %q, want %q", tc.id, tc.ev, tc.data, got, tc.want)
			}
		})
	}
}

func TestAppendComment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text, want string
	}{
		{"ping", "ping", ": ping\n\n"},
		{"empty", "", ": \n\n"},
		{"newlines", "a\nb\r\nc\rd", ": a b  c d\n\n"},
		{"close reason", "close 4000 bye", ": close 4000 bye\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := string(AppendComment(nil, tc.text)); got != tc.want {
				t.Fatalf("AppendComment(%q) = %q, want %q", tc.text, got, tc.want)
			}
		})
	}
}

func TestAppendRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		d    time.Duration
		want string
	}{
		{"seconds", 3 * time.Second, "retry: 3000\n\n"},
		{"millis", 1500 * time.Millisecond, "retry: 1500\n\n"},
		{"truncated", 1500*time.Microsecond + 999*time.Microsecond, "retry: 2\n\n"},
		{"zero", 0, "retry: 0\n\n"},
		{"negative", -time.Second, "retry: 0\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := string(AppendRetry(nil, tc.d)); got != tc.want {
				t.Fatalf("AppendRetry(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

// The Append functions are on the edge's write path: with room in dst
// they must not allocate.
func TestAppendNoAllocs(t *testing.T) {
	data := []byte(`{"seq":12345,"type":"TEXT_MESSAGE_CONTENT","payload":{"delta":"a\nb"}}` + "\r\nx")
	buf := make([]byte, 0, 4096)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"AppendEvent", func() { buf = AppendEvent(buf[:0], "12345", "message", data) }},
		{"AppendEvent id with newline", func() { buf = AppendEvent(buf[:0], "1\n2", "", data) }},
		{"AppendComment", func() { buf = AppendComment(buf[:0], "ping\nping") }},
		{"AppendRetry", func() { buf = AppendRetry(buf[:0], 2500*time.Millisecond) }},
	} {
		if n := testing.AllocsPerRun(100, tc.fn); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tc.name, n)
		}
	}
}

// benchEnvelope is a 300-byte compact JSON envelope.
var benchEnvelope = func() []byte {
	b := []byte(`{"v":"1.0","sid":"0b7c1f0e-5d1a-4c3e-9a57-2f7e0d9c8b6a","seq":12345,"ch":"AGENT","type":"TEXT_MESSAGE_PART","payload":{"message_id":"7d3b2c1a-0e9f-4a8b-b7c6-d5e4f3a2b1c0","text":"`)
	for len(b) < 300-3 {
		b = append(b, 'x')
	}
	return append(b, `"}}`...)
}()

func BenchmarkAppendEvent(b *testing.B) {
	if len(benchEnvelope) != 300 {
		b.Fatalf("envelope is %d bytes", len(benchEnvelope))
	}
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(benchEnvelope)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEvent(buf[:0], "12345", "", benchEnvelope)
	}
	if !bytes.HasPrefix(buf, []byte("id: 12345\ndata: {")) {
		b.Fatalf("wrote %q", buf)
	}
}

func BenchmarkAppendComment(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendComment(buf[:0], "ping")
	}
}
