package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// A run's tool calls travel under the run's user, so they land in that
// user's shard of the tool's queue.
func TestRunUserCarriedToToolCalls(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.toolWorker(worker.Tool{Name: "whoami", Handler: worker.ToolHandlerFunc(func(_ context.Context, call *worker.Call) (any, error) {
		return call.User, nil
	})}, worker.ToolWorkerConfig{Name: "who"})
	waitAdvertised(t, e, "whoami")
	dones := make(chan haip.ToolDonePayload, 1)
	e.replica(worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		done, err := run.CallTool(ctx, "whoami", map[string]any{})
		dones <- done
		return err
	}), worker.AgentConfig{Name: "who"})
	r := streams.RunRequest{RunID: haip.NewUUID(), Session: "carried", Text: "who am I?", User: "carol", Created: time.Now()}
	if err := streams.PublishRun(context.Background(), e.JS, r); err != nil {
		t.Fatal(err)
	}
	var got haip.ToolDonePayload
	select {
	case got = <-dones:
	case <-time.After(20 * time.Second):
		t.Fatal("the run never called the tool")
	}
	if got.Status != haip.ToolDoneOK || string(got.Result) != `"carol"` {
		t.Fatalf("the tool saw the call as %+v %s, want carol's", got, got.Result)
	}
}

// Runs and calls queued on the subjects of the queues before they were
// sharded (an edge of an older release) are still taken.
func TestWorkQueuedBeforeShardsIsTaken(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	run, _ := json.Marshal(streams.RunRequest{RunID: haip.NewUUID(), Session: "old-run", Text: "hi", Created: time.Now()})
	call, _ := json.Marshal(streams.ToolCall{CallID: haip.NewUUID(), Tool: "old", Session: "old-call", Created: time.Now()})
	runSubj, _ := streams.LegacyRunSubject("old-run")
	callSubj, _ := streams.LegacyToolSubject("old")
	for subj, data := range map[string][]byte{runSubj: run, callSubj: call} {
		if _, err := e.JS.Publish(ctx, subj, data); err != nil {
			t.Fatal(err)
		}
	}
	e.replica(worker.RunHandlerFunc(func(context.Context, *worker.Run) error { return nil }), worker.AgentConfig{Name: "upgraded"})
	e.toolWorker(worker.Tool{Name: "old", Handler: worker.ToolHandlerFunc(func(context.Context, *worker.Call) (any, error) {
		return "taken", nil
	})}, worker.ToolWorkerConfig{Name: "upgraded"})
	testkit.Eventually(t, 20*time.Second, func() bool { _, ok := finished(e.out("old-run")); return ok }, "the old run was not taken")
	if d := e.done("old-call"); d.Status != haip.ToolDoneOK || string(d.Result) != `"taken"` {
		t.Fatalf("old call ended %+v %s", d, d.Result)
	}
}

// waitAdvertised waits until a worker serves tool.
func waitAdvertised(t *testing.T, e *env, tool string) {
	t.Helper()
	reg, err := streams.OpenTools(context.Background(), e.JS)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, found, err := reg.Get(context.Background(), tool)
		return err == nil && found
	}, "tool "+tool+" was never advertised")
}
