package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/streams"
)

// A message id is de-duplicated within its session and direction only:
// the same id in another session or in the other direction is another
// message; readers get the id back as it was appended, from the log and
// from the live subject.
func TestAppendIDScopedToSessionAndDirection(t *testing.T) {
	t.Parallel()
	nc, _, l := setup(t, streams.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	live, _ := streams.LiveSubject("b", streams.Out)
	sub, err := nc.SubscribeSync(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const id = "same-id"
	for _, w := range []struct {
		session string
		d       streams.Direction
	}{{"a", streams.In}, {"b", streams.In}, {"b", streams.Out}} {
		got, err := l.Append(ctx, w.session, w.d, streams.Record{ID: id}, body)
		if err != nil {
			t.Fatal(err)
		}
		if got.Duplicate || got.Seq != 1 {
			t.Fatalf("%s/%s: %+v, want stored at seq 1", w.session, w.d, got)
		}
		entries, _, err := l.Read(ctx, w.session, w.d, 1, 10, 0)
		if err != nil || len(entries) != 1 || entries[0].MsgID != id {
			t.Fatalf("%s/%s read back %+v %v", w.session, w.d, entries, err)
		}
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := streams.ParseEntry(m); err != nil || e.MsgID != id {
		t.Fatalf("live entry %+v %v", e, err)
	}
	if again, err := l.Append(ctx, "b", streams.In, streams.Record{ID: id}, body); err != nil || !again.Duplicate || again.Seq != 1 {
		t.Fatalf("retry within the session: %+v %v, want a duplicate of seq 1", again, err)
	}
}

// A cancellation names the session and the call: it marks and reaches
// that session's call only.
func TestCancelScopedToSession(t *testing.T) {
	t.Parallel()
	nc, js, _ := setup(t, streams.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tools, err := streams.OpenTools(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(streams.CancelWildcard)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const call = "0f8fad5b-d9cb-469f-a165-70867728950e"
	if err := tools.Cancel(ctx, "bob", call, "mine"); err != nil {
		t.Fatal(err)
	}
	if reason, ok, err := tools.Cancelled(ctx, "bob", call); err != nil || !ok || reason != "mine" {
		t.Fatalf("bob's call: %q %v %v, want cancelled", reason, ok, err)
	}
	if _, ok, err := tools.Cancelled(ctx, "alice", call); err != nil || ok {
		t.Fatalf("alice's call with bob's call id: cancelled %v %v", ok, err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := streams.CancelSubject("bob", call)
	if session, callID, ok := streams.CallFromCancelSubject(m.Subject); m.Subject != want || !ok || session != "bob" || callID != call {
		t.Fatalf("cancel on %s: %q %q %v", m.Subject, session, callID, ok)
	}
	for _, bad := range [][2]string{{"a.b", call}, {"bob", "x.y"}, {"bob", "*"}, {"", call}, {"bob", ""}} {
		if subj, err := streams.CancelSubject(bad[0], bad[1]); err == nil {
			t.Errorf("CancelSubject(%q, %q) = %s, want an error", bad[0], bad[1], subj)
		}
		if err := tools.Cancel(ctx, bad[0], bad[1], "x"); err == nil {
			t.Errorf("Cancel(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

// The same call id (run id) queued by two sessions is two calls (runs); a
// retried publish of one session's is queued once.
func TestQueueIDsScopedToSession(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, streams.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const id = "0f8fad5b-d9cb-469f-a165-70867728950e"
	for _, session := range []string{"alice", "bob", "bob"} {
		if err := streams.PublishToolCall(ctx, js, streams.ToolCall{CallID: id, Tool: "echo", Session: session}); err != nil {
			t.Fatal(err)
		}
		if err := streams.PublishRun(ctx, js, streams.RunRequest{RunID: id, Session: session}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{streams.ToolStream, streams.RunStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if n := s.CachedInfo().State.Msgs; n != 2 {
			t.Fatalf("%s holds %d messages, want 2", name, n)
		}
	}
}
