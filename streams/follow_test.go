package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/streams"
)

// TestFollower follows a log from its middle while a writer adds to it:
// each message once, in order, across the catch-up and live delivery.
func TestFollower(t *testing.T) {
	t.Parallel()
	_, _, l := setup(t, streams.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	appendN(t, l, "f", 10, 10)
	f, err := l.NewFollower("f", streams.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writerDone := make(chan error, 1)
	go func() {
		for range 20 {
			if _, err := l.Append(ctx, "f", streams.Out, streams.Record{}, body); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	var got []uint64
	err = f.Follow(ctx, 5, streams.FollowOptions{Quiet: 200 * time.Millisecond}, func(e streams.Entry) bool {
		got = append(got, e.Seq)
		return e.Seq < 30
	})
	if err != nil {
		t.Fatal(err)
	}
	if werr := <-writerDone; werr != nil {
		t.Fatal(werr)
	}
	for i, seq := range got {
		if seq != uint64(5+i) {
			t.Fatalf("got %v, want 5..30 once each in order", got)
		}
	}
	if len(got) != 26 {
		t.Fatalf("got %d messages, want 26 (5..30)", len(got))
	}

	// Following again, from a seq not written yet, until idle.
	start := time.Now()
	err = f.Follow(ctx, 31, streams.FollowOptions{Quiet: 100 * time.Millisecond, UntilIdle: true}, func(streams.Entry) bool {
		t.Error("a message that was never written")
		return false
	})
	if err != nil || time.Since(start) > 10*time.Second {
		t.Fatalf("idle follow: %v after %s", err, time.Since(start))
	}

	// ctx ends the follow.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := f.Follow(cctx, 31, streams.FollowOptions{}, func(streams.Entry) bool { return true }); !errors.Is(err, context.Canceled) {
		t.Fatalf("follow after ctx ended: %v, want context.Canceled", err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	var b streams.Backoff
	want := streams.MinBackoff
	for range 10 {
		if d := b.Next(); d != want {
			t.Fatalf("wait %s, want %s", d, want)
		}
		want = min(2*want, streams.MaxBackoff)
	}
	b.Reset()
	if d := b.Next(); d != streams.MinBackoff {
		t.Fatalf("after Reset: %s, want %s", d, streams.MinBackoff)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait with an ended ctx reported a retry")
	}
}
