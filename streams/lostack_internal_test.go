package streams

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
)

// ensured starts a server with the topology ensured, and returns it with
// a connection and its JetStream context.
func ensured(t *testing.T) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns := natstest.Server(t)
	nc := natstest.Conn(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(context.Background(), js, Config{}); err != nil {
		t.Fatal(err)
	}
	return ns, nc, js
}

// setNoAck makes a stream store publishes without acknowledging them: to
// the publisher, exactly an ack lost with a dying stream leader.
func setNoAck(t *testing.T, js jetstream.JetStream, stream string, noAck bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.NoAck = noAck
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("set NoAck=%v on %s: %v", noAck, stream, err)
	}
}

// An append whose ack never comes is not stuck for all of its ctx: the try
// times out, the log shows the message stored, and the append reports it
// stored once.
func TestAppendSurvivesLostAck(t *testing.T) {
	t.Parallel()
	_, nc, js := ensured(t)
	ctx := context.Background()
	lg, err := OpenLog(ctx, nc, js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lg.Close(context.Background()) })
	lg.try = 200 * time.Millisecond
	const session = "lost-ack"
	rec := func(id string) Record { return Record{ID: id, Type: "TEXT_MESSAGE_PART"} }
	body := func(uint64) ([]byte, error) { return []byte(`{}`), nil }
	if _, err := lg.Append(ctx, session, Out, rec("a"), body); err != nil {
		t.Fatal(err)
	}

	setNoAck(t, js, SessionStream, true)
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	began := time.Now()
	got, err := lg.Append(actx, session, Out, rec("b"), body)
	if err != nil {
		t.Fatalf("append with its ack lost: %v after %s", err, time.Since(began))
	}
	t.Logf("append with a lost ack took %s", time.Since(began).Round(time.Millisecond))
	if got.Seq != 2 || got.Duplicate {
		t.Fatalf("append with a lost ack: %+v, want seq 2, not a duplicate", got)
	}
	setNoAck(t, js, SessionStream, false)
	entries, _, err := lg.Read(ctx, session, Out, 1, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[1].MsgID != "b" {
		t.Fatalf("log holds %d entries, want a and b once each", len(entries))
	}
}

// A queued work item whose ack is lost is published again until an ack
// comes, and stored once.
func TestPublishIdempotentSurvivesLostAck(t *testing.T) {
	t.Parallel()
	_, _, js := ensured(t)
	ctx := context.Background()
	subj, err := RunSubject("lost-ack", "someone")
	if err != nil {
		t.Fatal(err)
	}
	setNoAck(t, js, RunStream, true)
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- publishIdempotent(pctx, js, subj, []byte(`{}`), "run-x", 200*time.Millisecond) }()

	stored := func() uint64 {
		s, err := js.Stream(ctx, RunStream)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Msgs
	}
	testkit.Eventually(t, 10*time.Second, func() bool { return stored() != 0 }, "the publish was never stored")
	select {
	case err := <-done:
		t.Fatalf("publish returned %v while no ack could come", err)
	default:
	}
	setNoAck(t, js, RunStream, false)
	if err := <-done; err != nil {
		t.Fatalf("publish after the acks came back: %v", err)
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
}

// A run-state write whose ack is lost is retried on the record it left:
// admission reports the run recorded once, and the next change applies.
func TestRunStateSurvivesLostAck(t *testing.T) {
	t.Parallel()
	_, _, js := ensured(t)
	ctx := context.Background()
	runs, err := OpenRuns(ctx, js, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	runs.try = 200 * time.Millisecond
	const s = "lost-ack"
	setNoAck(t, js, "KV_"+RunBucket, true)
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	began := time.Now()
	existing, err := runs.Admit(actx, s, RunState{RunID: "r1"}, 2, nil)
	if err != nil {
		t.Fatalf("admit with its ack lost: %v after %s", err, time.Since(began))
	}
	// The lost write landed: the retry finds it (reported as recorded).
	if existing == nil || existing.RunID != "r1" || existing.Status != RunQueued {
		t.Fatalf("admit with its ack lost: existing %+v", existing)
	}
	setNoAck(t, js, "KV_"+RunBucket, false)
	if before, err := runs.Start(ctx, s, RunState{RunID: "r1"}, "agent-a"); err != nil || before.Status != RunQueued {
		t.Fatalf("start after the lost ack: %+v %v", before, err)
	}
	st, err := runs.Get(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Active) != 1 || st.Active[0].Status != RunRunning {
		t.Fatalf("runs after the lost ack: %+v", st)
	}
}

// Errors a starting cluster gives are retried by Ensure; others are not.
func TestClusterStartingErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, peer offline"}, true},
		{fmt.Errorf("cannot ensure: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008}), true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10004}, true},
		{context.DeadlineExceeded, true},
		{nats.ErrNoResponders, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}, false},
		{&jetstream.APIError{Code: 500, ErrorCode: 10074}, false},
		{errors.New("bad config"), false},
	} {
		if got := clusterStarting(tc.err); got != tc.want {
			t.Errorf("clusterStarting(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
