package streams_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// setup starts the test kit's fabric with the topology of cfg and opens
// a log on its connection.
func setup(t testing.TB, cfg streams.Config) (*nats.Conn, jetstream.JetStream, *streams.Log) {
	t.Helper()
	f := harness.New(t, cfg)
	return f.NC, f.JS, f.Log()
}

func openLog(t *testing.T, nc *nats.Conn, js jetstream.JetStream) *streams.Log {
	t.Helper()
	l, err := streams.OpenLog(context.Background(), nc, js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func body(seq uint64) ([]byte, error) { return []byte(fmt.Sprintf(`{"seq":"%d"}`, seq)), nil }

func TestValidateSessionID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "0f8fad5b-d9cb-469f-a165-70867728950e", "A_b-9", strings.Repeat("x", 128)} {
		if err := streams.ValidateSessionID(id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
	for _, id := range []string{"", "a.b", "a*", "a>", ">", "*", "a b", "a\tb", "é", "a\x00", "a\nb", strings.Repeat("x", 129), "$JS", "a/b"} {
		err := streams.ValidateSessionID(id)
		if !errors.Is(err, streams.ErrInvalidSessionID) {
			t.Errorf("%q accepted (err %v)", id, err)
		}
		if _, err := streams.LogSubject(id, streams.Out); err == nil {
			t.Errorf("LogSubject(%q) built a subject", id)
		}
		if _, err := streams.LiveSubject(id, streams.In); err == nil {
			t.Errorf("LiveSubject(%q) built a subject", id)
		}
		if _, err := streams.RunSubject(id, "someone"); err == nil {
			t.Errorf("RunSubject(%q) built a subject", id)
		}
	}
	if _, err := streams.LogSubject("ok", streams.Direction("x")); err == nil {
		t.Error("bad direction accepted")
	}
}

func FuzzSubjects(f *testing.F) {
	for _, s := range []string{"abc", "a.b", "a*", ">", "0f8fad5b-d9cb-469f-a165-70867728950e", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		subj, err := streams.LogSubject(id, streams.Out)
		if err != nil {
			return
		}
		// A built subject has exactly four tokens and no wildcard.
		toks := strings.Split(subj, ".")
		if len(toks) != 4 || toks[2] != id || strings.ContainsAny(subj, "*> \t\r\n") {
			t.Fatalf("subject %q from id %q escapes its place", subj, id)
		}
	})
}

func TestEnsureIdempotent(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, streams.Config{MaxAge: time.Hour})
	ctx := context.Background()
	for range 2 {
		if err := streams.Ensure(ctx, js, streams.Config{MaxAge: 2 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, streams.SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Fatalf("max age not updated: %s", got)
	}
	if err := streams.Ensure(ctx, js, streams.Config{Replicas: 9}); err == nil {
		t.Fatal("bad config accepted")
	}
}

func TestAppendDenseTwoWriters(t *testing.T) {
	t.Parallel()
	nc, js, l1 := setup(t, streams.Config{})
	l2 := openLog(t, nc, js) // a second process's view: no shared cache or locks
	ctx := context.Background()
	const perWriter = 300
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w, l := range []*streams.Log{l1, l2, l1, l2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if _, err := l.Append(ctx, "s1", streams.Out, streams.Record{ID: fmt.Sprintf("w%d-%d", w, i)}, body); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Another session interleaved, so stream seqs are not dense.
	for i := range 100 {
		if _, err := l1.Append(ctx, "other", streams.Out, streams.Record{}, body); err != nil {
			t.Fatal(i, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, err := l1.Bounds(ctx, "s1", streams.Out)
	if err != nil {
		t.Fatal(err)
	}
	if b.First.Seq != 1 || b.Last.Seq != 4*perWriter {
		t.Fatalf("bounds %+v", b)
	}
	var next uint64 = 1
	from := uint64(1)
	for {
		es, more, err := l2.Read(ctx, "s1", streams.Out, from, 97, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Seq != next {
				t.Fatalf("seq %d, want %d", e.Seq, next)
			}
			if string(e.Data) != fmt.Sprintf(`{"seq":"%d"}`, e.Seq) {
				t.Fatalf("body %s does not carry its seq %d", e.Data, e.Seq)
			}
			next++
			from = e.StreamSeq + 1
		}
		if !more {
			break
		}
	}
	if next != 4*perWriter+1 {
		t.Fatalf("read %d messages", next-1)
	}
}

func TestAppendIdempotent(t *testing.T) {
	t.Parallel()
	nc, js, l := setup(t, streams.Config{})
	ctx := context.Background()
	a1, err := l.Append(ctx, "s", streams.In, streams.Record{ID: "id-1"}, body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, "s", streams.In, streams.Record{ID: "id-2"}, body); err != nil {
		t.Fatal(err)
	}
	// Same process retry, and a retry from another process with a stale view.
	for _, w := range []*streams.Log{l, openLog(t, nc, js)} {
		a, err := w.Append(ctx, "s", streams.In, streams.Record{ID: "id-1"}, body)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Duplicate || a.Seq != a1.Seq {
			t.Fatalf("retry stored again: %+v (first %+v)", a, a1)
		}
	}
	b, _ := l.Bounds(ctx, "s", streams.In)
	if b.Last.Seq != 2 {
		t.Fatalf("last %d, want 2", b.Last.Seq)
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	_, _, l := setup(t, streams.Config{})
	ctx := context.Background()
	const n = 2000
	for i := range n {
		if _, err := l.Append(ctx, "f", streams.Out, streams.Record{}, body); err != nil {
			t.Fatal(err)
		}
		// Uneven interleaving with other sessions.
		for j := range i % 7 {
			if _, err := l.Append(ctx, "g"+strconv.Itoa(j), streams.Out, streams.Record{}, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []uint64{1, 2, 3, 500, 999, 1000, 1001, 1777, n - 1, n} {
		p, err := l.Find(ctx, "f", streams.Out, k)
		if err != nil {
			t.Fatalf("find %d: %v", k, err)
		}
		es, _, err := l.Read(ctx, "f", streams.Out, p.StreamSeq, 1, 0)
		if err != nil || len(es) != 1 || es[0].Seq != k {
			t.Fatalf("find %d gave %+v, read %+v %v", k, p, es, err)
		}
	}
	if _, err := l.Find(ctx, "f", streams.Out, n+1); !errors.Is(err, streams.ErrBeyondEnd) {
		t.Fatalf("beyond end: %v", err)
	}
	if _, err := l.Find(ctx, "nosuch", streams.Out, 1); !errors.Is(err, streams.ErrBeyondEnd) {
		t.Fatalf("empty log: %v", err)
	}
}

func TestRetentionKeepsNumbering(t *testing.T) {
	t.Parallel()
	nc, js, l := setup(t, streams.Config{MaxAge: time.Second, DuplicateWindow: 500 * time.Millisecond})
	ctx := context.Background()
	for range 5 {
		if _, err := l.Append(ctx, "r", streams.Out, streams.Record{}, body); err != nil {
			t.Fatal(err)
		}
	}
	// Let the tail flusher record 5, then let retention empty the log.
	testkit.Eventually(t, 20*time.Second, func() bool {
		b, err := l.Bounds(ctx, "r", streams.Out)
		return err == nil && b.Empty() && b.Last.Seq == 5
	}, "log never emptied by retention with its tail kept")
	if _, err := l.Find(ctx, "r", streams.Out, 3); !errors.Is(err, streams.ErrTooOld) {
		t.Fatalf("find expired: %v", err)
	}
	// The writer with a stale cache, then a fresh one, continue the numbering.
	for i, w := range []*streams.Log{l, openLog(t, nc, js)} {
		want := uint64(6 + i)
		a, err := w.Append(ctx, "r", streams.Out, streams.Record{}, body)
		if err != nil {
			t.Fatal(err)
		}
		if a.Seq != want {
			t.Fatalf("numbering restarted: %d, want %d", a.Seq, want)
		}
	}
}

func TestSessionsClaim(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, streams.Config{})
	ctx := context.Background()
	s, err := streams.OpenSessions(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	created := make(chan string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, c, err := s.Claim(ctx, "sess", fmt.Sprintf("user%d", i))
			if err != nil {
				t.Error(err)
				return
			}
			if c {
				created <- rec.Owner
			}
		}()
	}
	wg.Wait()
	close(created)
	var owners []string
	for o := range created {
		owners = append(owners, o)
	}
	if len(owners) != 1 {
		t.Fatalf("%d creators: %v", len(owners), owners)
	}
	rec, found, err := s.Get(ctx, "sess")
	if err != nil || !found || rec.Owner != owners[0] {
		t.Fatalf("get: %+v %v %v", rec, found, err)
	}
	if _, _, err := s.Get(ctx, "bad.id"); err == nil {
		t.Fatal("bad id accepted")
	}
}

// appendN appends n messages of size bytes to session's out log.
func appendN(t *testing.T, l *streams.Log, session string, n, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pad := strings.Repeat("x", size)
	for range n {
		if _, err := l.Append(ctx, session, streams.Out, streams.Record{Type: "T"}, func(seq uint64) ([]byte, error) {
			return []byte(fmt.Sprintf(`{"seq":%d,"p":"%s"}`, seq, pad)), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// consumers is the number of consumers on the session stream.
func consumers(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	s, err := js.Stream(context.Background(), streams.SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// readAll reads the log from stream seq from to the end with r, checking
// that seqs run densely from first, and returns the last entry.
func readAll(t *testing.T, r *streams.Reader, from, first uint64, batch, maxBytes int) streams.Entry {
	t.Helper()
	ctx := context.Background()
	var last streams.Entry
	want := first
	for {
		es, more, err := r.Read(ctx, from, batch, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > batch {
			t.Fatalf("read %d messages, asked at most %d", len(es), batch)
		}
		for _, e := range es {
			if e.Seq != want {
				t.Fatalf("got seq %d, want %d", e.Seq, want)
			}
			if e.Type != "T" {
				t.Fatalf("seq %d: type %q", e.Seq, e.Type)
			}
			want++
			last = e
			from = e.StreamSeq + 1
		}
		if !more {
			return last
		}
		if len(es) == 0 {
			t.Fatal("no messages but more")
		}
	}
}

func TestReaderSwitchesToConsumer(t *testing.T) {
	t.Parallel()
	_, js, l := setup(t, streams.Config{})
	appendN(t, l, "r1", 700, 10)
	appendN(t, l, "other", 5, 10) // interleaved subjects must not show up
	appendN(t, l, "r1", 100, 10)
	r, err := l.NewReader("r1", streams.Out, streams.ReaderOptions{ConsumerThreshold: 100})
	if err != nil {
		t.Fatal(err)
	}
	es, more, err := r.Read(context.Background(), 1, 64, 1<<20)
	if err != nil || len(es) != 64 || !more {
		t.Fatalf("first read: %d messages, more %v, err %v", len(es), more, err)
	}
	if !r.UsesConsumer() || consumers(t, js) != 1 {
		t.Fatalf("no consumer after a read with 736 left (uses %v, %d on the stream)", r.UsesConsumer(), consumers(t, js))
	}
	last := readAll(t, r, es[63].StreamSeq+1, 65, 64, 1<<20)
	if last.Seq != 800 {
		t.Fatalf("last seq %d, want 800", last.Seq)
	}
	// Appended after the reader reached the end: still read, in order.
	// (They reach the consumer a moment after their store is acked: a
	// read at once may not see them yet, and says so with more=false.)
	appendN(t, l, "r1", 3, 10)
	next := uint64(801)
	testkit.Eventually(t, 10*time.Second, func() bool {
		es, _, err := r.Read(context.Background(), last.StreamSeq+1, 64, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Seq != next {
				t.Fatalf("read seq %d, want %d", e.Seq, next)
			}
			next++
			last = e
		}
		return last.Seq == 803
	}, "the three appended after the end were not read")
	r.Close(context.Background())
	if n := consumers(t, js); n != 0 {
		t.Fatalf("%d consumers left after Close", n)
	}
	if _, _, err := r.Read(context.Background(), last.StreamSeq+1, 64, 1<<20); err == nil {
		t.Fatal("read after Close succeeded")
	}
}

func TestReaderRewindDropsConsumer(t *testing.T) {
	t.Parallel()
	_, js, l := setup(t, streams.Config{})
	appendN(t, l, "r2", 300, 10)
	r, err := l.NewReader("r2", streams.Out, streams.ReaderOptions{ConsumerThreshold: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	ctx := context.Background()
	a, _, err := r.Read(ctx, 1, 20, 1<<20)
	if err != nil || !r.UsesConsumer() {
		t.Fatalf("first read: %v, consumer %v", err, r.UsesConsumer())
	}
	b, _, err := r.Read(ctx, a[19].StreamSeq+1, 20, 1<<20)
	if err != nil || len(b) != 20 || b[0].Seq != 21 {
		t.Fatalf("consumer read: %d messages, err %v", len(b), err)
	}
	// Back to seq 30 (a message that waited for credit): read again from
	// there, with direct gets from now on.
	c, more, err := r.Read(ctx, b[9].StreamSeq, 20, 1<<20)
	if err != nil || len(c) != 20 || c[0].Seq != 30 || !more {
		t.Fatalf("rewound read: %d messages from %d, more %v, err %v", len(c), c[0].Seq, more, err)
	}
	if r.UsesConsumer() || consumers(t, js) != 0 {
		t.Fatalf("consumer kept after a rewind (uses %v, %d on the stream)", r.UsesConsumer(), consumers(t, js))
	}
	if last := readAll(t, r, c[19].StreamSeq+1, 50, 20, 1<<20); last.Seq != 300 {
		t.Fatalf("last seq %d, want 300", last.Seq)
	}
}

func TestReaderBytesBound(t *testing.T) {
	t.Parallel()
	_, _, l := setup(t, streams.Config{})
	appendN(t, l, "r3", 50, 1000)
	appendN(t, l, "r3", 1, 8000) // seq 51: alone over the bytes bound
	appendN(t, l, "r3", 50, 1000)
	r, err := l.NewReader("r3", streams.Out, streams.ReaderOptions{ConsumerThreshold: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	ctx := context.Background()
	from, want := uint64(1), uint64(1)
	for want <= 101 {
		es, _, err := r.Read(ctx, from, 100, 4000)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 || (len(es) > 4 && want != 51) {
			t.Fatalf("read from seq %d: %d messages of ~1 KB with a 4,000-byte bound", want, len(es))
		}
		for _, e := range es {
			if e.Seq != want {
				t.Fatalf("got seq %d, want %d", e.Seq, want)
			}
			want++
			from = e.StreamSeq + 1
		}
	}
}

func TestReaderBinaryEntries(t *testing.T) {
	t.Parallel()
	_, _, l := setup(t, streams.Config{})
	ctx := context.Background()
	for i := range 40 {
		bin := []byte{byte(i), 1, 2, 3}
		if _, err := l.Append(ctx, "r4", streams.Out, streams.Record{Type: "T", Bin: bin}, body); err != nil {
			t.Fatal(err)
		}
	}
	r, err := l.NewReader("r4", streams.Out, streams.ReaderOptions{ConsumerThreshold: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	from, n := uint64(1), 0
	for n < 40 {
		es, _, err := r.Read(ctx, from, 8, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			want, _ := body(e.Seq)
			if string(e.Data) != string(want) || len(e.Bin) != 4 || e.Bin[0] != byte(n) {
				t.Fatalf("seq %d: data %q bin %v", e.Seq, e.Data, e.Bin)
			}
			n++
			from = e.StreamSeq + 1
		}
	}
}
