package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

type env struct {
	*harness.Fabric
	t  *testing.T
	lg *streams.Log
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupOn(t, natstest.Server(t))
}

// setupOn is setup on the server ns.
func setupOn(t *testing.T, ns *server.Server) *env {
	t.Helper()
	f := harness.NewOn(t, ns, "", streams.Config{})
	return &env{Fabric: f, t: t, lg: f.Log()}
}

// replica runs an agent replica on its own connection; stop ends it.
func (e *env) replica(h worker.RunHandler, cfg worker.AgentConfig) (stop func()) {
	e.t.Helper()
	return e.replicaOn(e.Conn(), h, cfg)
}

// replicaOn runs an agent replica on the connection nc; stop ends it.
func (e *env) replicaOn(nc *nats.Conn, h worker.RunHandler, cfg worker.AgentConfig) (stop func()) {
	e.t.Helper()
	js, _ := jetstream.New(nc)
	a, err := worker.NewAgent(context.Background(), nc, js, h, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.Run(a.Run)
}

func (e *env) queue(session, text string) streams.RunRequest {
	e.t.Helper()
	r := streams.RunRequest{RunID: haip.NewUUID(), Session: session, Text: text, Created: time.Now()}
	if err := streams.PublishRun(context.Background(), e.JS, r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// out reads a session's outbound log.
func (e *env) out(session string) []*haip.Envelope {
	e.t.Helper()
	es, _, err := e.lg.Read(context.Background(), session, streams.Out, 1, 1000, 1<<20)
	if err != nil {
		e.t.Fatal(err)
	}
	var envs []*haip.Envelope
	for _, en := range es {
		env, err := haip.Decode(en.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		envs = append(envs, env)
	}
	return envs
}

func finished(envs []*haip.Envelope) (haip.RunFinishedPayload, bool) {
	for _, env := range envs {
		if env.Type == haip.TypeRunFinished {
			var p haip.RunFinishedPayload
			_ = json.Unmarshal(env.Payload, &p)
			return p, true
		}
	}
	return haip.RunFinishedPayload{}, false
}

// Two replicas on one queue: every run is handled exactly once.
func TestRunsHandledOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var mu sync.Mutex
	seen := map[string]int{}
	h := worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		mu.Lock()
		seen[run.Request.RunID]++
		mu.Unlock()
		_, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK})
		return err
	})
	e.replica(h, worker.AgentConfig{Name: "a"})
	e.replica(h, worker.AgentConfig{Name: "a"})
	var runs []streams.RunRequest
	for i := range 40 {
		runs = append(runs, e.queue(fmt.Sprintf("s%d", i), "hi"))
	}
	testkit.Eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == len(runs) }, "not every run was handled")
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("run %s handled %d times", id, n)
		}
	}
	for _, r := range runs {
		envs := e.out(r.Session)
		if len(envs) != 2 || envs[0].Type != haip.TypeRunStarted || envs[1].RunID != r.RunID {
			t.Fatalf("session %s log: %v", r.Session, envs)
		}
	}
}

// A failing or panicking handler ends its run with RUN_FINISHED ERROR
// and the replica goes on.
func TestHandlerFailureEndsRun(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.replica(worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		switch run.Request.Text {
		case "fail":
			return errors.New("model unavailable")
		case "panic":
			panic("boom")
		}
		_, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK})
		return err
	}), worker.AgentConfig{Name: "f"})
	for _, tc := range []struct{ text, status, summary string }{
		{"fail", "ERROR", "model unavailable"}, {"panic", "ERROR", "handler panic: boom"}, {"ok", "OK", ""},
	} {
		r := e.queue("f-"+tc.text, tc.text)
		var p haip.RunFinishedPayload
		testkit.Eventually(t, 10*time.Second, func() bool { var ok bool; p, ok = finished(e.out(r.Session)); return ok }, tc.text+": no RUN_FINISHED")
		if string(p.Status) != tc.status || p.Summary != tc.summary {
			t.Fatalf("%s: %+v", tc.text, p)
		}
	}
}

// A replica that shuts down mid-run hands the run back; the replica that
// takes it over emits the same messages, which are stored once.
func TestRedeliveredRunStoredOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	started := make(chan struct{}, 1)
	block := worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		for i := range 3 {
			if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: run.Request.RunID, Text: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		started <- struct{}{}
		<-ctx.Done() // stuck until the replica stops
		return ctx.Err()
	})
	stop := e.replica(block, worker.AgentConfig{Name: "r", DrainWait: 50 * time.Millisecond})
	r := e.queue("redeliver", "x")
	<-started
	stop()
	e.replica(worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		for i := range 3 {
			if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: run.Request.RunID, Text: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		_, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK})
		return err
	}), worker.AgentConfig{Name: "r"})
	testkit.Eventually(t, 20*time.Second, func() bool { _, ok := finished(e.out(r.Session)); return ok }, "redelivered run never finished")
	envs := e.out(r.Session)
	if len(envs) != 5 {
		t.Fatalf("%d messages stored, want RUN_STARTED, 3 parts and RUN_FINISHED once: %v", len(envs), envs)
	}
	for i, env := range envs {
		if uint64(env.Seq) != uint64(i+1) {
			t.Fatalf("seq %d at %d", env.Seq, i)
		}
	}
}

// A malformed run request is removed from the queue, not retried forever.
func TestMalformedRunTerminated(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.replica(worker.RunHandlerFunc(func(context.Context, *worker.Run) error {
		t.Error("handler called for a malformed request")
		return nil
	}), worker.AgentConfig{Name: "m"})
	if _, err := e.JS.Publish(context.Background(), "haip.runs.bad", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	cons, err := e.JS.Consumer(context.Background(), streams.RunStream, "m")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.Delivered.Consumer >= 1
	}, "malformed request still pending")
}

// A replica that dies mid-run (its connection drops: no ack, no nak) has
// the run redelivered after AckWait; once MaxDeliver attempts have died,
// the next replica ends the run with RUN_ERROR and RUN_FINISHED ERROR
// instead of leaving it running forever, and the run state says ERROR.
func TestRunEndedAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := worker.AgentConfig{Name: "dying", AckWait: time.Second, MaxDeliver: 1, DrainWait: 10 * time.Millisecond}

	// The first replica takes the run and "dies": its connection closes.
	nc := natstest.Conn(t, e.NS)
	js, _ := jetstream.New(nc)
	started := make(chan struct{}, 1)
	a, err := worker.NewAgent(context.Background(), nc, js, worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := e.Run(a.Run)
	r := e.queue("dies", "hi")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("run not taken")
	}
	nc.Close()
	stop()

	// The next replica gets the second delivery: past MaxDeliver.
	var ran atomic.Bool
	e.replica(worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		ran.Store(true)
		return nil
	}), cfg)
	var p haip.RunFinishedPayload
	testkit.Eventually(t, 20*time.Second, func() bool { var ok bool; p, ok = finished(e.out(r.Session)); return ok }, "run never ended")
	if p.Status != haip.RunStatusError || p.Summary != "gave up after 1 attempts" || ran.Load() {
		t.Fatalf("ended %+v (handler ran again: %v)", p, ran.Load())
	}
	envs := e.out(r.Session)
	if len(envs) != 3 || envs[0].Type != haip.TypeRunStarted || envs[1].Type != haip.TypeRunError || envs[2].Type != haip.TypeRunFinished {
		t.Fatalf("log %v, want RUN_STARTED, RUN_ERROR, RUN_FINISHED", envs)
	}
	runs, err := streams.OpenRuns(context.Background(), e.JS, 0)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		st, err := runs.State(context.Background(), r.Session, r.RunID)
		return err == nil && st.Status == streams.RunError
	}, "run state not ERROR")
}
