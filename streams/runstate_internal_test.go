package streams

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/natstest"
)

// The run bucket's lifecycle: the limit, idempotent admission, start,
// cancel, finish, and a stale run no longer counted.
func TestRunStates(t *testing.T) {
	t.Parallel()
	_, _, js := ensured(t)
	ctx := context.Background()
	runs, err := OpenRuns(ctx, js, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runs.now = func() time.Time { return clock }
	const s = "session-1"

	for _, id := range []string{"r1", "r2"} {
		if ex, err := runs.Admit(ctx, s, RunState{RunID: id}, 2, nil); err != nil || ex != nil {
			t.Fatalf("admit %s: %v %v", id, ex, err)
		}
	}
	if _, err := runs.Admit(ctx, s, RunState{RunID: "r3"}, 2, nil); !errors.Is(err, ErrRunLimit) {
		t.Fatalf("third run: %v, want ErrRunLimit", err)
	}
	if ex, err := runs.Admit(ctx, s, RunState{RunID: "r1"}, 2, nil); err != nil || ex == nil || ex.Status != RunQueued {
		t.Fatalf("re-admitting r1: %+v %v", ex, err)
	}
	if before, err := runs.Start(ctx, s, RunState{RunID: "r1"}, "agent-a"); err != nil || before.Status != RunQueued {
		t.Fatalf("start: %+v %v", before, err)
	}
	if before, err := runs.Cancel(ctx, s, "r1", "user asked"); err != nil || before.Status != RunRunning {
		t.Fatalf("cancel: %+v %v", before, err)
	}
	if st, err := runs.Beat(ctx, s, "r1"); err != nil || st != RunCancelling {
		t.Fatalf("beat: %s %v", st, err)
	}
	if _, err := runs.Cancel(ctx, s, "nope", ""); !errors.Is(err, ErrRunNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
	if err := runs.Finish(ctx, s, "r1", RunCancelled, ""); err != nil {
		t.Fatal(err)
	}
	if err := runs.Finish(ctx, s, "r1", RunOK, ""); err != nil { // idempotent
		t.Fatal(err)
	}
	if st, err := runs.State(ctx, s, "r1"); err != nil || st.Status != RunCancelled || st.Reason != "user asked" || st.Agent != "agent-a" {
		t.Fatalf("r1 after finish: %+v %v", st, err)
	}

	// r2 has waited past the stale bound with no heartbeat: it stops
	// counting, and is recorded as ERROR.
	clock = clock.Add(2 * time.Minute)
	if _, err := runs.Admit(ctx, s, RunState{RunID: "r3"}, 1, nil); err != nil {
		t.Fatalf("admit after r2 went stale: %v", err)
	}
	if st, err := runs.State(ctx, s, "r2"); err != nil || st.Status != RunError || st.Reason != StaleRunReason {
		t.Fatalf("stale r2: %+v %v", st, err)
	}
	// An agent taking r2 now learns it was given up.
	if before, err := runs.Start(ctx, s, RunState{RunID: "r2"}, "agent-b"); err != nil || before.Active() {
		t.Fatalf("start stale r2: %+v %v", before, err)
	}
}

// Concurrent admissions from several writers never exceed the limit.
func TestRunLimitConcurrent(t *testing.T) {
	t.Parallel()
	ns, _, _ := ensured(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for w := range 4 {
		wjs, _ := jetstream.New(natstest.Conn(t, ns))
		runs, err := OpenRuns(ctx, wjs, 0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				_, err := runs.Admit(ctx, "busy", RunState{RunID: string(rune('a'+w)) + string(rune('0'+i))}, 3, nil)
				if err == nil {
					mu.Lock()
					admitted++
					mu.Unlock()
				} else if !errors.Is(err, ErrRunLimit) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if admitted != 3 {
		t.Fatalf("%d runs admitted with a limit of 3", admitted)
	}
}
