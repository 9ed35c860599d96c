package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// toolWorker runs one tool on its own connection; stop ends the worker.
func (e *env) toolWorker(tool worker.Tool, cfg worker.ToolWorkerConfig) (stop func()) {
	e.t.Helper()
	return e.toolWorkerOn(e.Conn(), tool, cfg)
}

// toolWorkerOn runs one tool on the connection nc; stop ends the worker.
func (e *env) toolWorkerOn(nc *nats.Conn, tool worker.Tool, cfg worker.ToolWorkerConfig) (stop func()) {
	e.t.Helper()
	js, _ := jetstream.New(nc)
	tw, err := worker.NewToolWorker(context.Background(), nc, js, []worker.Tool{tool}, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.Run(tw.Run)
}

func (e *env) call(session, tool, params string) string {
	e.t.Helper()
	id := haip.NewUUID()
	if err := streams.PublishToolCall(context.Background(), e.JS, streams.ToolCall{CallID: id, Tool: tool, Params: json.RawMessage(params), Session: session}); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// done waits for a call's TOOL_DONE in the session's log.
func (e *env) done(session string) haip.ToolDonePayload {
	e.t.Helper()
	var d haip.ToolDonePayload
	testkit.Eventually(e.t, 20*time.Second, func() bool {
		for _, env := range e.out(session) {
			if env.Type == haip.TypeToolDone {
				_ = env.DecodePayload(&d)
				return true
			}
		}
		return false
	}, "no TOOL_DONE")
	return d
}

var blocking = worker.ToolHandlerFunc(func(ctx context.Context, _ *worker.Call) (any, error) {
	<-ctx.Done()
	return nil, ctx.Err()
})

// Params that fail the tool's JSON Schema end the call with an ERROR
// naming the problem; the handler never runs.
func TestToolParamsSchema(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var ran atomic.Int32
	e.toolWorker(worker.Tool{
		Name:         "typed",
		ParamsSchema: json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer","minimum":1}},"required":["n"],"additionalProperties":false}`),
		Handler: worker.ToolHandlerFunc(func(context.Context, *worker.Call) (any, error) {
			ran.Add(1)
			return "ran", nil
		}),
	}, worker.ToolWorkerConfig{Name: "s"})
	for i, params := range []string{`{"n":"x"}`, `{}`, `{"n":0}`, `{"n":1,"extra":true}`} {
		session := "schema" + string(rune('a'+i))
		e.call(session, "typed", params)
		if d := e.done(session); d.Status != haip.ToolDoneError || !strings.Contains(string(d.Result), "params do not match the schema of typed") {
			t.Fatalf("%s: %+v %s", params, d, d.Result)
		}
	}
	e.call("schema-ok", "typed", `{"n":3}`)
	if d := e.done("schema-ok"); d.Status != haip.ToolDoneOK || string(d.Result) != `"ran"` {
		t.Fatalf("valid params: %+v %s", d, d.Result)
	}
	if ran.Load() != 1 {
		t.Fatalf("handler ran %d times", ran.Load())
	}
	if _, err := worker.NewToolWorker(context.Background(), natstest.Conn(t, e.NS), e.JS, []worker.Tool{{Name: "bad", ParamsSchema: json.RawMessage(`{"type":7}`), Handler: blocking}}, worker.ToolWorkerConfig{}); err == nil {
		t.Fatal("a malformed schema was accepted")
	}
}

// A call that outlives CallTimeout ends with TOOL_DONE ERROR.
func TestToolCallTimeout(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.toolWorker(worker.Tool{Name: "slow", Handler: blocking}, worker.ToolWorkerConfig{Name: "t", CallTimeout: 200 * time.Millisecond})
	e.call("timeout", "slow", `{}`)
	if d := e.done("timeout"); d.Status != haip.ToolDoneError || string(d.Result) != `{"error":"timed out after 200ms"}` {
		t.Fatalf("%+v %s", d, d.Result)
	}
}

// A call whose worker keeps going away is attempted MaxDeliver times, then
// ended with ERROR instead of staying in the queue.
func TestToolMaxDeliver(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var started atomic.Int32
	tool := worker.Tool{Name: "flaky", Handler: worker.ToolHandlerFunc(func(ctx context.Context, _ *worker.Call) (any, error) {
		started.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	})}
	cfg := worker.ToolWorkerConfig{Name: "m", MaxDeliver: 2, DrainWait: 10 * time.Millisecond}
	e.call("maxdeliver", "flaky", `{}`)
	for attempt := int32(1); attempt <= 2; attempt++ {
		stop := e.toolWorker(tool, cfg)
		testkit.Eventually(t, 10*time.Second, func() bool { return started.Load() == attempt }, "attempt never started")
		stop() // the worker goes away mid-call: the call is handed back
	}
	e.toolWorker(tool, cfg)
	if d := e.done("maxdeliver"); d.Status != haip.ToolDoneError || string(d.Result) != `{"error":"gave up after 2 attempts"}` {
		t.Fatalf("%+v %s", d, d.Result)
	}
	if n := started.Load(); n != 2 {
		t.Fatalf("%d attempts", n)
	}
}
