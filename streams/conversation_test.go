package streams_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/haipfabric/haipfabric/streams"
)

// TestConversationPaging stores a conversation interleaved with another
// session's and checks that forward and backward pages, of every size,
// return both directions in stored order with nothing lost or twice.
func TestConversationPaging(t *testing.T) {
	_, _, l := setup(t, streams.Config{})
	ctx := context.Background()
	const session, other = "conv-a", "conv-b"
	rng := rand.New(rand.NewPCG(1, 2))
	type key struct {
		d   streams.Direction
		seq uint64
	}
	var want []key
	for i := range 150 {
		d := streams.In
		if rng.IntN(3) > 0 {
			d = streams.Out
		}
		res, err := l.Append(ctx, session, d, streams.Record{ID: fmt.Sprintf("m%d", i)}, body)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, key{d, res.Seq})
		if rng.IntN(2) == 0 {
			if _, err := l.Append(ctx, other, streams.Out, streams.Record{}, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys := func(es []streams.ConversationEntry) []key {
		var out []key
		for _, e := range es {
			out = append(out, key{e.Direction, e.Seq})
		}
		return out
	}
	equal := func(t *testing.T, what string, got, want []key) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: entry %d is %v, want %v", what, i, got[i], want[i])
			}
		}
	}
	for _, size := range []int{1, 7, 50, 150, 1000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			// Forward from the start.
			var got []key
			cur, more := streams.ConversationCursor(""), true
			for pages := 0; more; pages++ {
				if pages > 200 {
					t.Fatal("forward paging does not end")
				}
				p, err := l.Conversation(ctx, session, cur, false, size)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Entries) > size {
					t.Fatalf("page of %d entries, limit %d", len(p.Entries), size)
				}
				got = append(got, keys(p.Entries)...)
				cur, more = p.After, p.HasAfter
			}
			equal(t, "forward", got, want)
			// Backward from the end.
			got = nil
			cur, more = "", true
			for pages := 0; more; pages++ {
				if pages > 200 {
					t.Fatal("backward paging does not end")
				}
				p, err := l.Conversation(ctx, session, cur, true, size)
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Entries) != min(size, len(want)-len(got)) {
					t.Fatalf("backward page of %d entries after %d, limit %d", len(p.Entries), len(got), size)
				}
				got = append(keys(p.Entries), got...)
				cur, more = p.Before, p.HasBefore
			}
			equal(t, "backward", got, want)
		})
	}
	// A backward page's After cursor continues forward where it ended.
	p, err := l.Conversation(ctx, session, "", true, 10)
	if err != nil {
		t.Fatal(err)
	}
	q, err := l.Conversation(ctx, session, p.Before, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "forward from a backward page's Before", keys(q.Entries), keys(p.Entries))
	if _, err := l.Append(ctx, session, streams.In, streams.Record{}, body); err != nil {
		t.Fatal(err)
	}
	r, err := l.Conversation(ctx, session, p.After, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Entries) != 1 || r.Entries[0].Direction != streams.In || r.HasAfter {
		t.Fatalf("after the end: %v (more %v), want the one new entry", keys(r.Entries), r.HasAfter)
	}
}

func TestConversationBadCursor(t *testing.T) {
	_, _, l := setup(t, streams.Config{})
	ctx := context.Background()
	for _, c := range []streams.ConversationCursor{"x", "%%%", "YzEuMS4yLjM", "YzIuMS4wLjA", "YzEuYS4wLjA"} {
		for _, back := range []bool{false, true} {
			if _, err := l.Conversation(ctx, "conv-c", c, back, 10); !errors.Is(err, streams.ErrBadCursor) {
				t.Errorf("cursor %q (backward %v): %v, want ErrBadCursor", c, back, err)
			}
		}
	}
	p, err := l.Conversation(ctx, "conv-empty", "", true, 10)
	if err != nil || len(p.Entries) != 0 || p.HasBefore {
		t.Fatalf("empty conversation: %+v, %v", p, err)
	}
}
