package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestAppend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, id, ev string
		data         string
		want         string
	}{
		{"plain", "", "", `{"a":1}`, "data: {\"a\":1}\n\n"},
		{"id", "42", "", "x", "id: 42\ndata: x\n\n"},
		{"name", "", "note", "x", "event: note\ndata: x\n\n"},
		{"lf", "1", "", "a\nb", "id: 1\ndata: a\ndata: b\n\n"},
		{"crlf", "", "", "a\r\nb", "data: a\ndata: b\n\n"},
		{"cr", "", "", "a\rb", "data: a\ndata: b\n\n"},
		{"trailing newline", "", "", "a\n", "data: a\ndata: \n\n"},
		{"empty", "", "", "", "data: \n\n"},
		{"newline in id", "1\n2", "", "x", "id: 1 2\ndata: x\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := string(AppendEvent(nil, tc.id, tc.ev, []byte(tc.data))); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got := string(AppendComment(nil, "ping\nx")); got != ": ping x\n\n" {
		t.Fatalf("comment %q", got)
	}
	if got := string(AppendRetry(nil, 1500*time.Millisecond)); got != "retry: 1500\n\n" {
		t.Fatalf("retry %q", got)
	}
}

func TestParseLastEventID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		want   uint64
		ok     bool
		hasErr bool
	}{
		{"", 0, false, false}, {"  ", 0, false, false}, {"0", 0, true, false}, {" 12 ", 12, true, false},
		{"18446744073709551615", 1<<64 - 1, true, false}, {"18446744073709551616", 0, false, true},
		{"123456789012345678901", 0, false, true}, {"-1", 0, false, true}, {"1.0", 0, false, true},
		{"abc", 0, false, true}, {"+5", 0, false, true}, {"0x10", 0, false, true},
	} {
		got, ok, err := ParseLastEventID(tc.in)
		if got != tc.want || ok != tc.ok || (err != nil) != tc.hasErr {
			t.Errorf("%q: %d %v %v", tc.in, got, ok, err)
		}
	}
}

func readAll(t *testing.T, r io.Reader, max int) ([]Event, error) {
	t.Helper()
	rd := NewReader(r, max)
	var out []Event
	for {
		ev, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, ev)
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		in    string
		data  []string
		ids   []string
		names []string
	}{
		// Examples after the HTML standard's event-stream section.
		{"multi-line", "data: YHOO\ndata: +2\ndata: 10\n\n", []string{"YHOO\n+2\n10"}, []string{""}, []string{""}},
		{"comments and ids", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]string{"first event", "second event", " third event"}, []string{"1", "", ""}, []string{"", "", ""}},
		{"data forms", "data\n\ndata\ndata\n\ndata:", []string{"", "\n"}, []string{"", ""}, []string{"", ""}},
		{"no data no event", "event: x\n\ndata: y\n\n", []string{"y"}, []string{""}, []string{""}},
		{"id persists", "id: 7\ndata: a\n\ndata: b\n\n", []string{"a", "b"}, []string{"7", "7"}, []string{"", ""}},
		{"id with NUL ignored", "id: 3\ndata: a\n\nid: 4\x005\ndata: b\n\n", []string{"a", "b"}, []string{"3", "3"}, []string{"", ""}},
		{"named", "event: add\ndata: 1\n\n", []string{"1"}, []string{""}, []string{"add"}},
		{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", []string{"a\nb\nc"}, []string{""}, []string{""}},
		{"bom", "\xEF\xBB\xBFdata: x\n\n", []string{"x"}, []string{""}, []string{""}},
		{"unterminated last", "data: a\n\ndata: b\n", []string{"a"}, []string{""}, []string{""}},
	} {
		for _, wrap := range []struct {
			name string
			fn   func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"bytewise", iotest.OneByteReader}, {"halves", iotest.HalfReader}} {
			t.Run(tc.name+"/"+wrap.name, func(t *testing.T) {
				t.Parallel()
				evs, err := readAll(t, wrap.fn(strings.NewReader(tc.in)), 1<<10)
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) != len(tc.data) {
					t.Fatalf("%d events, want %d: %+v", len(evs), len(tc.data), evs)
				}
				for i, ev := range evs {
					if string(ev.Data) != tc.data[i] || ev.ID != tc.ids[i] || ev.Name != tc.names[i] {
						t.Fatalf("event %d = %q id %q name %q; want %q %q %q", i, ev.Data, ev.ID, ev.Name, tc.data[i], tc.ids[i], tc.names[i])
					}
				}
			})
		}
	}
}

func TestReaderRetryAndLimits(t *testing.T) {
	t.Parallel()
	evs, _ := readAll(t, strings.NewReader("retry: 2500\ndata: a\n\nretry: 1x\ndata: b\n\n"), 64)
	if len(evs) != 2 || !evs[0].HasRetry || evs[0].Retry != 2500*time.Millisecond || evs[1].Retry != 2500*time.Millisecond {
		t.Fatalf("%+v", evs)
	}
	_, err := readAll(t, strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 50)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("long line: %v", err)
	}
	_, err = readAll(t, strings.NewReader(strings.Repeat("data: xxxxxxxxxx\n", 10)+"\n"), 50)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("big event: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	var buf []byte
	want := []struct{ id, name, data string }{{"1", "", `{"x":"y"}`}, {"2", "n", "a\nb"}, {"3", "", ""}, {"4", "", "tail\n"}}
	for _, w := range want {
		buf = AppendEvent(buf, w.id, w.name, []byte(w.data))
		buf = AppendComment(buf, "keep-alive")
	}
	evs, err := readAll(t, bytes.NewReader(buf), 1<<10)
	if err != nil || len(evs) != len(want) {
		t.Fatalf("%v %+v", err, evs)
	}
	for i, w := range want {
		if evs[i].ID != w.id || evs[i].Name != w.name || string(evs[i].Data) != w.data {
			t.Fatalf("event %d: %+v, want %+v", i, evs[i], w)
		}
	}
}

func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("id: 1\ndata: {\"a\":1}\n\n"), 5)
	f.Add([]byte(": c\r\ndata: a\rdata: b\r\n\r\n"), 3)
	f.Add([]byte("\xEF\xBB\xBFretry: 10\nevent: e\ndata\n\n"), 0)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		if split < 0 || split > len(in) {
			split = len(in) / 2
		}
		const max = 256
		rd := NewReader(io.MultiReader(bytes.NewReader(in[:split]), bytes.NewReader(in[split:])), max)
		for {
			ev, err := rd.Next()
			if err != nil {
				return
			}
			if len(ev.Data) > max {
				t.Fatalf("event of %d bytes over the %d limit", len(ev.Data), max)
			}
		}
	})
}

func FuzzAppendThenRead(f *testing.F) {
	f.Add("12", "", []byte(`{"id":"x"}`))
	f.Add("", "msg", []byte("a\r\nb\rc\n"))
	f.Fuzz(func(t *testing.T, id, name string, data []byte) {
		if strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(name, "\r\n") || strings.HasPrefix(id, " ") || strings.HasPrefix(name, " ") {
			return // such ids and names are not ours to send
		}
		evs, err := readAll(t, bytes.NewReader(AppendEvent(nil, id, name, data)), 1<<20)
		if err != nil || len(evs) != 1 {
			t.Fatalf("%v %+v", err, evs)
		}
		norm := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
		if evs[0].ID != id || evs[0].Name != name || string(evs[0].Data) != norm {
			t.Fatalf("got %+v, want id %q name %q data %q", evs[0], id, name, norm)
		}
	})
}

func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"1", " 42 ", "-1", "18446744073709551616", "abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok, err := ParseLastEventID(s)
		if err == nil && ok {
			if again, ok2, err2 := ParseLastEventID(strings.TrimLeft(strings.TrimSpace(s), "0") + ""); v != 0 && (err2 != nil || !ok2 || again != v) {
				t.Fatalf("%q parsed to %d, re-parse %d %v %v", s, v, again, ok2, err2)
			}
		}
	})
}

func BenchmarkAppendEvent(b *testing.B) {
	data := bytes.Repeat([]byte("x"), 300)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEvent(buf[:0], "12345", "", data)
	}
}
