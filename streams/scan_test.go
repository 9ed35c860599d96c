package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
)

func TestScan(t *testing.T) {
	t.Parallel()
	_, _, l := setup(t, streams.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	appendN(t, l, "scan", 25, 10)
	appendN(t, l, "other", 5, 10)

	collect := func(from uint64, opts streams.ScanOptions, stopAt uint64) ([]uint64, error) {
		var got []uint64
		err := l.Scan(ctx, "scan", streams.Out, from, opts, func(e streams.Entry) bool {
			got = append(got, e.Seq)
			return e.Seq != stopAt
		})
		return got, err
	}
	dense := func(t *testing.T, got []uint64, first, last uint64) {
		t.Helper()
		if len(got) != int(last-first+1) {
			t.Fatalf("got %d messages %v, want %d..%d", len(got), got, first, last)
		}
		for i, seq := range got {
			if seq != first+uint64(i) {
				t.Fatalf("got %v, want %d..%d in order", got, first, last)
			}
		}
	}

	got, err := collect(7, streams.ScanOptions{Batch: 4}, 0)
	if err != nil {
		t.Fatal(err)
	}
	dense(t, got, 7, 25)

	got, err = collect(1, streams.ScanOptions{Batch: 3}, 10)
	if err != nil {
		t.Fatal(err)
	}
	dense(t, got, 1, 10)

	// A caller's own read (the edge's paced one) does every read.
	reads := 0
	paced := func(ctx context.Context, cursor uint64) ([]streams.Entry, bool, error) {
		reads++
		return l.Read(ctx, "scan", streams.Out, cursor, 5, 1<<20)
	}
	got, err = collect(3, streams.ScanOptions{Read: paced}, 0)
	if err != nil {
		t.Fatal(err)
	}
	dense(t, got, 3, 25)
	if reads < 5 {
		t.Fatalf("%d reads through the hook, want at least 5", reads)
	}

	// A known start skips the lookup; entries before fromSeq are skipped.
	p, err := l.Find(ctx, "scan", streams.Out, 4)
	if err != nil {
		t.Fatal(err)
	}
	got, err = collect(6, streams.ScanOptions{Start: p}, 0)
	if err != nil {
		t.Fatal(err)
	}
	dense(t, got, 6, 25)

	if _, err := collect(26, streams.ScanOptions{}, 0); !errors.Is(err, streams.ErrBeyondEnd) {
		t.Fatalf("scan past the end: %v, want ErrBeyondEnd", err)
	}
	if _, err := collect(1, streams.ScanOptions{Read: func(context.Context, uint64) ([]streams.Entry, bool, error) {
		return nil, false, errors.New("read refused")
	}}, 0); err == nil {
		t.Fatal("a failed read was not reported")
	}
}

func TestScanOldest(t *testing.T) {
	t.Parallel()
	_, _, l := setup(t, streams.Config{MaxAge: time.Second, DuplicateWindow: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	appendN(t, l, "old", 3, 10)
	testkit.Eventually(t, 20*time.Second, func() bool {
		b, err := l.Bounds(ctx, "old", streams.Out)
		return err == nil && b.Empty() && b.Last.Seq == 3
	}, "log never emptied by retention with its tail kept")
	appendN(t, l, "old", 2, 10)
	var got []uint64
	err := l.Scan(ctx, "old", streams.Out, 1, streams.ScanOptions{}, func(e streams.Entry) bool { return true })
	if !errors.Is(err, streams.ErrTooOld) {
		t.Fatalf("scan of a dropped seq: %v, want ErrTooOld", err)
	}
	err = l.Scan(ctx, "old", streams.Out, 1, streams.ScanOptions{Oldest: true}, func(e streams.Entry) bool {
		got = append(got, e.Seq)
		return true
	})
	if err != nil || len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Fatalf("scan from the oldest kept: %v, %v; want [4 5]", got, err)
	}
}
