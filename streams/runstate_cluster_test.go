package streams_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/internal/clustertest"
	"github.com/haipfabric/haipfabric/streams"
)

// On a replicated (R3) run bucket a lost compare-and-set race answers
// with another code than on R1; concurrent admits, beats and finishes of
// one session's runs must still all land, on a real 3-node cluster.
func TestRunStateConcurrentUpdatesR3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster of processes")
	}
	_, js := clustertest.Start(t).Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Config{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	runs, err := streams.OpenRuns(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 8
	session := "r3-session"
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("run-%d", i)
			if _, err := runs.Admit(ctx, session, streams.RunState{RunID: id}, 0, nil); err != nil {
				errs <- fmt.Errorf("admit %s: %w", id, err)
				return
			}
			if _, err := runs.Start(ctx, session, streams.RunState{RunID: id}, "agent"); err != nil {
				errs <- fmt.Errorf("start %s: %w", id, err)
				return
			}
			if _, err := runs.Beat(ctx, session, id); err != nil {
				errs <- fmt.Errorf("beat %s: %w", id, err)
				return
			}
			if err := runs.Finish(ctx, session, id, streams.RunOK, ""); err != nil {
				errs <- fmt.Errorf("finish %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := runs.Get(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Active) != 0 || len(got.Recent) != writers {
		t.Fatalf("%d active, %d recent runs; want 0 and %d", len(got.Active), len(got.Recent), writers)
	}
	for _, r := range got.Recent {
		if r.Status != streams.RunOK {
			t.Errorf("run %s ended %s", r.RunID, r.Status)
		}
	}
}
