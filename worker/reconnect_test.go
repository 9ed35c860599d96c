package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// A TOOL_DONE stored while the agent's NATS connection was down never
// comes on its live subscription; the run still gets it from the log and
// finishes, instead of waiting for the tool timeout.
func TestToolDoneStoredWhileAgentDisconnected(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	e := setupOn(t, ns)
	proxy := natstest.StartProxy(t, ns)

	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	e.toolWorker(worker.Tool{Name: "gate", Handler: worker.ToolHandlerFunc(func(ctx context.Context, _ *worker.Call) (any, error) {
		if calls.Add(1) == 1 {
			close(entered)
		}
		select {
		case <-release:
			return "opened", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})}, worker.ToolWorkerConfig{Name: "gate"})
	reg, err := streams.OpenTools(context.Background(), e.JS)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, found, err := reg.Get(context.Background(), "gate")
		return err == nil && found
	}, "the gate tool was never advertised")

	var result atomic.Value
	e.replicaOn(proxy.Conn(t), worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		done, err := run.CallTool(ctx, "gate", map[string]any{})
		if err != nil {
			return err
		}
		result.Store(string(done.Result))
		return nil
	}), worker.AgentConfig{Name: "partitioned", AckWait: 30 * time.Second})
	const session = "partitioned-agent"
	e.queue(session, "open the gate")
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the tool was never called")
	}

	proxy.Partition()
	close(release)
	testkit.Eventually(t, 10*time.Second, func() bool {
		for _, env := range e.out(session) {
			if env.Type == haip.TypeToolDone {
				return true
			}
		}
		return false
	}, "TOOL_DONE was not stored")
	proxy.Resume()

	began := time.Now()
	testkit.Eventually(t, 20*time.Second, func() bool { _, ok := finished(e.out(session)); return ok }, "the run did not finish after the reconnect")
	t.Logf("run finished %s after the reconnect", time.Since(began).Round(time.Millisecond))
	if p, _ := finished(e.out(session)); p.Status != haip.RunStatusOK || result.Load() != `"opened"` {
		t.Fatalf("run ended %+v with result %v", p, result.Load())
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("tool called %d times", n)
	}
}

// A TOOL_CANCEL sent while the tool worker's NATS connection was down
// never comes on the cancel subject; the worker's heartbeat finds the
// cancellation mark and the call ends CANCELLED, not at its timeout.
func TestToolCancelWhileWorkerDisconnected(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	e := setupOn(t, ns)
	proxy := natstest.StartProxy(t, ns)
	entered := make(chan struct{})
	e.toolWorkerOn(proxy.Conn(t), worker.Tool{Name: "wait", Handler: worker.ToolHandlerFunc(func(ctx context.Context, _ *worker.Call) (any, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})}, worker.ToolWorkerConfig{Name: "partitioned", AckWait: 3 * time.Second})
	const session = "partitioned-worker"
	callID := e.call(session, "wait", `{}`)
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the tool was never called")
	}

	proxy.Partition()
	reg, err := streams.OpenTools(context.Background(), e.JS)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Cancel(context.Background(), session, callID, "user asked"); err != nil {
		t.Fatal(err)
	}
	proxy.Resume()
	began := time.Now()
	if d := e.done(session); d.Status != haip.ToolDoneCancelled || d.CallID != callID {
		t.Fatalf("TOOL_DONE %+v %s, want CANCELLED", d, d.Result)
	}
	t.Logf("cancelled %s after the reconnect", time.Since(began).Round(time.Millisecond))
}
