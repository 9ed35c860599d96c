package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// A run waits for an approval longer than the stream's duplicate window,
// its replica stops, and another takes it over after the decision: what
// the first stored (RUN_STARTED, its text, the request) is not stored
// again, and the run goes on from the decision once.
func TestApprovalTakenOverAfterDuplicateWindow(t *testing.T) {
	t.Parallel()
	const window = 500 * time.Millisecond
	f := harness.NewOn(t, natstest.Server(t), "", streams.Config{DuplicateWindow: window})
	e := &env{Fabric: f, t: t, lg: f.Log()}
	approvals, err := streams.OpenApprovals(context.Background(), f.JS)
	if err != nil {
		t.Fatal(err)
	}
	handler := worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: run.Request.RunID, Text: "before"}); err != nil {
			return err
		}
		d, err := run.RequestApproval(ctx, worker.ApprovalRequest{What: "go on?", Timeout: time.Minute})
		if err != nil {
			return err
		}
		_, err = run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: run.Request.RunID, Text: fmt.Sprint("approved=", d.Approved)})
		return err
	})
	first := e.replica(handler, worker.AgentConfig{Name: "r", DrainWait: 50 * time.Millisecond})
	r := e.queue("approval-takeover", "x")
	var aps []streams.Approval
	testkit.Eventually(t, 10*time.Second, func() bool {
		aps, _ = approvals.List(context.Background(), r.Session)
		return len(aps) == 1 && aps[0].Seq > 0
	}, "no approval asked")
	began := time.Now()
	first()
	// Past the duplicate window: a re-sent id would be stored again.
	testkit.Eventually(t, 10*time.Second, func() bool { return time.Since(began) > 2*window }, "the window never passed")
	if _, err := approvals.Decide(context.Background(), r.Session, aps[0].ID, "approve", "", "tester"); err != nil {
		t.Fatal(err)
	}
	e.replica(handler, worker.AgentConfig{Name: "r"})
	testkit.Eventually(t, 20*time.Second, func() bool { _, ok := finished(e.out(r.Session)); return ok }, "the run never finished")
	envs := e.out(r.Session)
	var types []string
	for i, env := range envs {
		if uint64(env.Seq) != uint64(i+1) {
			t.Fatalf("seq %d at %d", env.Seq, i)
		}
		types = append(types, string(env.Type))
	}
	want := []string{"RUN_STARTED", "TEXT_MESSAGE_PART", "TOOL_CALL", "TOOL_DONE", "TEXT_MESSAGE_PART", "RUN_FINISHED"}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("stored %v, want %v", types, want)
	}
}
