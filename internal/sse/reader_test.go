package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// readAll returns the events of in and the error that ended them (nil for
// io.EOF).
func readAll(r io.Reader, maxEventBytes int) ([]Event, error) {
	rd := NewReader(r, maxEventBytes)
	var out []Event
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// ev builds a wanted event; data is a string for readable tables.
func ev(id string, hasID bool, name, data string) Event {
	return Event{ID: id, HasID: hasID, Name: name, Data: []byte(data)}
}

func sameEvents(got, want []Event) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d events %s, want %d %s", len(got), fmtEvents(got), len(want), fmtEvents(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.HasID != w.HasID || g.Name != w.Name || !bytes.Equal(g.Data, w.Data) ||
			g.Retry != w.Retry || g.HasRetry != w.HasRetry {
			return fmt.Errorf("event %d = %s, want %s", i, fmtEvents(got[i:i+1]), fmtEvents(want[i:i+1]))
		}
	}
	return nil
}

func fmtEvents(evs []Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "{id %q(%v) name %q data %q retry %v(%v)}", e.ID, e.HasID, e.Name, e.Data, e.Retry, e.HasRetry)
	}
	return b.String()
}

// readerWraps feed a test input in different read sizes.
var readerWraps = []struct {
	name string
	fn   func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"bytewise", iotest.OneByteReader},
	{"halves", iotest.HalfReader},
	{"data+EOF", iotest.DataErrReader},
}

func TestReader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want []Event
	}{
		// The HTML standard's examples (section 9.2, "Server-sent events").
		{"spec: three messages",
			"data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\ndata: This is the third message.\n\n",
			[]Event{ev("", false, "", "This is the first message."), ev("", false, "", "This is the second message, it\nhas two lines."), ev("", false, "", "This is the third message.")}},
		{"spec: event types",
			"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
			[]Event{ev("", false, "add", "73857293"), ev("", false, "remove", "2153"), ev("", false, "add", "113411")}},
		{"spec: multi-line data", "data: YHOO\ndata: +2\ndata: 10\n\n",
			[]Event{ev("", false, "", "YHOO\n+2\n10")}},
		{"spec: comment, id set and reset, leading space",
			": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]Event{ev("1", true, "", "first event"), ev("", true, "", "second event"), ev("", true, "", " third event")}},
		{"spec: data vs data: without blank line at the end", "data\n\ndata\ndata\n\ndata:",
			[]Event{ev("", false, "", ""), ev("", false, "", "\n")}},
		{"spec: data:test and data: test are the same", "data:test\n\ndata: test\n\n",
			[]Event{ev("", false, "", "test"), ev("", false, "", "test")}},
		{"only one space removed", "data:   x\n\n", []Event{ev("", false, "", "  x")}},
		{"tab not removed", "data:\tx\n\n", []Event{ev("", false, "", "\tx")}},
		{"colon in value", "data: a:b: c\n\n", []Event{ev("", false, "", "a:b: c")}},
		{"field name is exact", "data : x\nDATA: y\n data: z\ndata: w\n\n", []Event{ev("", false, "", "w")}},
		{"unknown fields ignored", "foo: bar\nfoo\ndata: x\nbar:\n\n", []Event{ev("", false, "", "x")}},
		{"comments are not data", ":data: x\n: \n:\ndata: y\n\n", []Event{ev("", false, "", "y")}},
		{"comment only block dispatches nothing", ": keep-alive\n\n: again\n\n", nil},
		{"event without data is not dispatched", "event: x\n\ndata: y\n\n", []Event{ev("", false, "", "y")}},
		{"event name resets after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n",
			[]Event{ev("", false, "a", "1"), ev("", false, "", "2")}},
		{"last event name wins", "event: a\nevent: b\ndata: 1\n\n", []Event{ev("", false, "b", "1")}},
		{"empty event name", "event:\ndata: 1\n\n", []Event{ev("", false, "", "1")}},
		{"id persists", "id: 7\ndata: a\n\ndata: b\n\n", []Event{ev("7", true, "", "a"), ev("7", true, "", "b")}},
		{"id without data persists", "id: 9\n\ndata: a\n\n", []Event{ev("9", true, "", "a")}},
		{"id after data in the block", "data: a\nid: 3\n\n", []Event{ev("3", true, "", "a")}},
		{"id in an unfinished block still counts", "data: a\n\nid: 4\ndata: b\n\n", []Event{ev("", false, "", "a"), ev("4", true, "", "b")}},
		{"id with NUL ignored", "id: 3\ndata: a\n\nid: 4\x005\ndata: b\n\n", []Event{ev("3", true, "", "a"), ev("3", true, "", "b")}},
		{"first id with NUL ignored", "id: \x00\ndata: a\n\n", []Event{ev("", false, "", "a")}},
		{"id with spaces", "id:  a b \ndata: x\n\n", []Event{ev(" a b ", true, "", "x")}},
		{"BOM skipped", "\xEF\xBB\xBFdata: x\n\n", []Event{ev("", false, "", "x")}},
		{"only one BOM skipped", "\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n", []Event{ev("", false, "", "y")}},
		{"BOM not at start is data", "data: \xEF\xBB\xBFx\n\n", []Event{ev("", false, "", "\xEF\xBB\xBFx")}},
		{"partial BOM is a field name", "\xEF\xBBdata: x\n\ndata: y\n\n", []Event{ev("", false, "", "y")}},
		{"invalid UTF-8 passes through", "data: \xff\xfe\n\n", []Event{ev("", false, "", "\xff\xfe")}},
		{"NUL in data", "data: a\x00b\n\n", []Event{ev("", false, "", "a\x00b")}},
		{"unterminated last event dropped", "data: a\n\ndata: b\n", []Event{ev("", false, "", "a")}},
		{"unterminated last line dropped", "data: a\n\ndata: b", []Event{ev("", false, "", "a")}},
		{"empty stream", "", nil},
		{"blank lines only", "\n\r\n\r\n\n", nil},
		{"lf", "data: a\ndata: b\n\n", []Event{ev("", false, "", "a\nb")}},
		{"crlf", "data: a\r\ndata: b\r\n\r\n", []Event{ev("", false, "", "a\nb")}},
		{"cr", "data: a\rdata: b\r\r", []Event{ev("", false, "", "a\nb")}},
		{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", []Event{ev("", false, "", "a\nb\nc")}},
		{"cr cr is a blank line", "data: a\r\rdata: b\n\n", []Event{ev("", false, "", "a"), ev("", false, "", "b")}},
		{"lf cr is a blank line", "data: a\n\rdata: b\n\n", []Event{ev("", false, "", "a"), ev("", false, "", "b")}},
		{"crlf crlf", "id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\n\r\n", []Event{ev("1", true, "", "a"), ev("2", true, "", "b")}},
	} {
		for _, wrap := range readerWraps {
			t.Run(tc.name+"/"+wrap.name, func(t *testing.T) {
				t.Parallel()
				got, err := readAll(wrap.fn(strings.NewReader(tc.in)), 1<<10)
				if err != nil {
					t.Fatalf("error %v after %s", err, fmtEvents(got))
				}
				if err := sameEvents(got, tc.want); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestReaderRetry(t *testing.T) {
	t.Parallel()
	withRetry := func(e Event, d time.Duration) Event { e.Retry, e.HasRetry = d, true; return e }
	maxRetry := time.Duration(maxRetryMillis) * time.Millisecond
	for _, tc := range []struct {
		name string
		in   string
		want []Event
	}{
		{"set", "retry: 2500\ndata: a\n\n", []Event{withRetry(ev("", false, "", "a"), 2500*time.Millisecond)}},
		{"persists, even from a block without data", "retry: 10\n\ndata: a\n\ndata: b\n\n",
			[]Event{withRetry(ev("", false, "", "a"), 10*time.Millisecond), withRetry(ev("", false, "", "b"), 10*time.Millisecond)}},
		{"non-digits ignored", "retry: 100\nretry: 1x\nretry: -5\nretry: 1.5\nretry:  7\ndata: a\n\n",
			[]Event{withRetry(ev("", false, "", "a"), 100*time.Millisecond)}},
		{"empty ignored", "retry:\nretry\ndata: a\n\n", []Event{ev("", false, "", "a")}},
		{"zero", "retry: 0\ndata: a\n\n", []Event{withRetry(ev("", false, "", "a"), 0)}},
		{"huge saturates", "retry: 99999999999999999999999999\ndata: a\n\n", []Event{withRetry(ev("", false, "", "a"), maxRetry)}},
		{"largest exact", fmt.Sprintf("retry: %d\ndata: a\n\n", maxRetryMillis), []Event{withRetry(ev("", false, "", "a"), maxRetry)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readAll(strings.NewReader(tc.in), 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameEvents(got, tc.want); err != nil {
				t.Fatal(err)
			}
		})
	}
	if maxRetry <= 0 || maxRetry > math.MaxInt64 {
		t.Fatalf("max retry %v", maxRetry)
	}
}

// splitReader returns its pieces one per Read, then io.EOF.
type splitReader struct{ pieces []string }

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.pieces[0])
	if s.pieces[0] = s.pieces[0][n:]; s.pieces[0] == "" {
		s.pieces = s.pieces[1:]
	}
	return n, nil
}

// A \r\n split between two reads is one line break, not two.
func TestReaderCRLFSplitAcrossReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		pieces []string
		want   []Event
	}{
		{"data lines", []string{"data: a\r", "\ndata: b\r\n\r\n"}, []Event{ev("", false, "", "a\nb")}},
		{"blank line", []string{"data: a\r\n\r", "\ndata: b\r\n\r\n"}, []Event{ev("", false, "", "a"), ev("", false, "", "b")}},
		{"after BOM", []string{"\xEF\xBB", "\xBFdata: a\r", "\n\r", "\n"}, []Event{ev("", false, "", "a")}},
		{"cr at end of buffer", []string{strings.Repeat(":", readBufSize-1) + "\r", "\ndata: a\n\n"}, []Event{ev("", false, "", "a")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readAll(&splitReader{pieces: append([]string(nil), tc.pieces...)}, 1<<13)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameEvents(got, tc.want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// An event whose blank line ends in \r is dispatched at once: the Reader
// must not wait for the next byte to see whether it is \n.
func TestReaderDoesNotWaitAfterCR(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pr.Close()
	rd := NewReader(pr, 1<<10)
	type result struct {
		ev  Event
		err error
	}
	next := func(write string) result {
		t.Helper()
		go func() { _, _ = pw.Write([]byte(write)) }()
		done := make(chan result, 1)
		go func() {
			e, err := rd.Next()
			done <- result{e, err}
		}()
		select {
		case r := <-done:
			return r
		case <-time.After(10 * time.Second):
			pw.Close()
			<-done
			t.Fatalf("Next blocked after %q", write)
			return result{}
		}
	}
	if r := next("data: a\r\r"); r.err != nil || string(r.ev.Data) != "a" {
		t.Fatalf("first: %+v", r)
	}
	if r := next("\ndata: b\r\r"); r.err != nil || string(r.ev.Data) != "b" {
		t.Fatalf("second: %+v", r)
	}
	pw.Close()
	if _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("at end: %v", err)
	}
}

func TestReaderTooLarge(t *testing.T) {
	t.Parallel()
	const limit = 50
	x := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name string
		in   string
		want []Event // before the error
		ok   bool    // no error
	}{
		{name: "data at the limit", in: "data: " + x(limit) + "\n\n", want: []Event{ev("", false, "", x(limit))}, ok: true},
		{name: "data over the limit in one line", in: "data: " + x(limit+1) + "\n\n"},
		{name: "lines add up to the limit", in: strings.Repeat("data: "+x(9)+"\n", 5) + "\n",
			want: []Event{ev("", false, "", strings.TrimSuffix(strings.Repeat(x(9)+"\n", 5), "\n"))}, ok: true},
		{name: "lines add up over the limit", in: "data: ok\n\n" + strings.Repeat("data: "+x(9)+"\n", 6) + "\n",
			want: []Event{ev("", false, "", "ok")}},
		{name: "empty lines at the limit", in: strings.Repeat("data\n", limit+1) + "\n", want: []Event{ev("", false, "", strings.Repeat("\n", limit))}, ok: true},
		{name: "empty lines over the limit", in: strings.Repeat("data\n", limit+2) + "\n"},
		{name: "long comment", in: ":" + x(limit+fieldOverhead) + "\ndata: a\n\n"},
		{name: "comment at the line limit", in: ":" + x(limit+fieldOverhead-1) + "\ndata: a\n\n", want: []Event{ev("", false, "", "a")}, ok: true},
		{name: "long event name", in: "event: " + x(limit+1) + "\ndata: a\n\n"},
		{name: "long unterminated line", in: "data: a\n\ndata: " + x(2*limit), want: []Event{ev("", false, "", "a")}},
		{name: "long line over many reads", in: "data: " + x(3*readBufSize) + "\n\n"},
	} {
		for _, wrap := range readerWraps {
			t.Run(tc.name+"/"+wrap.name, func(t *testing.T) {
				t.Parallel()
				rd := NewReader(wrap.fn(strings.NewReader(tc.in)), limit)
				var got []Event
				var err error
				for {
					var e Event
					if e, err = rd.Next(); err != nil {
						break
					}
					got = append(got, e)
				}
				if tc.ok != errors.Is(err, io.EOF) || !tc.ok && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error %v", err)
				}
				if err := sameEvents(got, tc.want); err != nil {
					t.Fatal(err)
				}
				if _, again := rd.Next(); again != err {
					t.Fatalf("after %v, Next returned %v", err, again)
				}
			})
		}
	}
}

// endless is an endless stream: prefix, then fill bytes forever.
type endless struct {
	prefix string
	fill   byte
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.prefix)
	e.prefix = e.prefix[n:]
	for i := n; i < len(p); i++ {
		p[i] = e.fill
	}
	return len(p), nil
}

// A line without end costs memory bounded by the limit.
func TestReaderEndlessLineBoundedMemory(t *testing.T) {
	const limit = 64 << 10
	for _, prefix := range []string{"data: ", ": ", ""} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rd := NewReader(&endless{prefix: prefix, fill: 'x'}, limit)
		_, err := rd.Next()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("prefix %q: %v", prefix, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*limit {
			t.Fatalf("prefix %q: allocated %d bytes with a %d-byte limit", prefix, grew, limit)
		}
	}
}

func TestReaderReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	rd := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom)), 1<<10)
	if e, err := rd.Next(); err != nil || string(e.Data) != "a" {
		t.Fatalf("first: %v %q", err, e.Data)
	}
	_, err := rd.Next()
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
	if _, again := rd.Next(); again != err {
		t.Fatalf("then %v", again)
	}

	// A reader that makes no progress.
	rd = NewReader(zeroReader{}, 1<<10)
	if _, err := rd.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("zero reads: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// Events written by AppendEvent come back as written, line breaks in data
// normalised to \n, whatever the read sizes.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab {}\":,\r\n\x00\xEF\xBB\xBF:é"
	randString := func(maxLen int) string {
		b := make([]byte, rng.IntN(maxLen+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	var stream []byte
	var want []Event
	id, hasID := "", false
	for i := range 500 {
		wid, wname, wdata := randString(6), randString(6), randString(40)
		if i%3 == 0 {
			wid = fmt.Sprint(i) // our ids: sequence numbers
		}
		if i%5 == 0 {
			stream = AppendComment(stream, randString(10))
		}
		if i%7 == 0 {
			stream = AppendRetry(stream, time.Duration(i)*time.Millisecond)
		}
		stream = AppendEvent(stream, wid, wname, []byte(wdata))
		if wid != "" && !strings.Contains(wid, "\x00") {
			id, hasID = oneLine(wid), true
		}
		e := ev(id, hasID, oneLine(wname), normalise(wdata))
		e.Retry, e.HasRetry = time.Duration(i/7*7)*time.Millisecond, true // set by the last AppendRetry
		want = append(want, e)
	}
	for _, wrap := range readerWraps {
		t.Run(wrap.name, func(t *testing.T) {
			t.Parallel()
			got, err := readAll(wrap.fn(bytes.NewReader(stream)), 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameEvents(got, want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// oneLine is what AppendEvent makes of an id or name.
func oneLine(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }

// normalise is what a reader makes of data's line breaks.
func normalise(s string) string { return strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s) }

func BenchmarkReaderNext(b *testing.B) {
	var stream []byte
	for i := range 100 {
		stream = AppendEvent(stream, fmt.Sprint(i), "", benchEnvelope)
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		rd := NewReader(bytes.NewReader(stream), 1<<16)
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

// Comments reach OnComment in stream order, between the events around
// them, without the colon and one space; they dispatch nothing.
func TestReaderOnComment(t *testing.T) {
	in := ": ping\n\ndata: a\n\n:close 1001 edge shutting down; resume from seq 7\n:  two spaces\n\n"
	rd := NewReader(iotest.OneByteReader(strings.NewReader(in)), 0)
	var got []string
	rd.OnComment(func(text []byte) { got = append(got, string(text)) })
	e, err := rd.Next()
	if err != nil || string(e.Data) != "a" {
		t.Fatalf("first event %q, %v", e.Data, err)
	}
	if len(got) != 1 || got[0] != "ping" {
		t.Fatalf("comments before the event: %q", got)
	}
	if _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
	want := []string{"ping", "close 1001 edge shutting down; resume from seq 7", " two spaces"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("comments %q, want %q", got, want)
	}
}
