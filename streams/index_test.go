package streams_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/haipfabric/haipfabric/streams"
)

func openSessions(t testing.TB) (*streams.Sessions, *streams.Log) {
	t.Helper()
	_, js, l := setup(t, streams.Config{})
	s, err := streams.OpenSessions(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	return s, l
}

func listAll(t *testing.T, s *streams.Sessions, owner, tag string, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("listing does not end")
		}
		p, err := s.List(context.Background(), owner, tag, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Sessions) > limit {
			t.Fatalf("page of %d, limit %d", len(p.Sessions), limit)
		}
		for _, r := range p.Sessions {
			ids = append(ids, r.ID)
		}
		if p.Next == "" {
			return ids
		}
		cursor = p.Next
	}
}

// TestSessionListNewestFirst: each user sees their own sessions, newest
// first, by tag, without deleted ones, across pages of every size.
func TestSessionListNewestFirst(t *testing.T) {
	s, _ := openSessions(t)
	ctx := context.Background()
	var alice, red []string
	for i := range 30 {
		rec := streams.SessionRecord{ID: fmt.Sprintf("a%02d", i), Owner: "alice", Name: fmt.Sprint("chat ", i)}
		if i%3 == 0 {
			rec.Tags = []string{"red"}
		}
		if _, created, err := s.Create(ctx, rec); err != nil || !created {
			t.Fatalf("create %s: %v %v", rec.ID, created, err)
		}
		if _, _, err := s.Create(ctx, streams.SessionRecord{ID: fmt.Sprintf("b%02d", i), Owner: "bob", Tags: []string{"red"}}); err != nil {
			t.Fatal(err)
		}
		alice = append([]string{rec.ID}, alice...)
		if i%3 == 0 {
			red = append([]string{rec.ID}, red...)
		}
	}
	// Taken ids are not created again, whoever asks.
	if rec, created, err := s.Create(ctx, streams.SessionRecord{ID: "a05", Owner: "bob"}); err != nil || created || rec.Owner != "alice" {
		t.Fatalf("create a taken id: %+v %v %v", rec, created, err)
	}
	for _, limit := range []int{1, 4, 30, 100} {
		if got := listAll(t, s, "alice", "", limit); !slices.Equal(got, alice) {
			t.Fatalf("limit %d: %v, want %v", limit, got, alice)
		}
		if got := listAll(t, s, "alice", "red", limit); !slices.Equal(got, red) {
			t.Fatalf("tag red, limit %d: %v, want %v", limit, got, red)
		}
	}
	// Deleting and retagging.
	if _, err := s.MarkDeleted(ctx, "a29"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkDeleted(ctx, "a29"); !errors.Is(err, streams.ErrSessionNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Update(ctx, "a03", func(r *streams.SessionRecord) error { r.Tags = nil; r.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "a01", func(r *streams.SessionRecord) error { r.Tags = []string{"red", "blue"}; return nil }); err != nil {
		t.Fatal(err)
	}
	wantRed := []string{"a01", "a27", "a24", "a21", "a18", "a15", "a12", "a09", "a06", "a00"}
	if got := listAll(t, s, "alice", "red", 3); !slices.Equal(got, wantRed) {
		t.Fatalf("tag red after changes: %v, want %v", got, wantRed)
	}
	if got := listAll(t, s, "alice", "", 7); len(got) != 29 || got[0] != "a28" {
		t.Fatalf("after delete: %v", got)
	}
	rec, found, err := s.Get(ctx, "a03")
	if err != nil || !found || rec.Name != "renamed" || rec.Updated.IsZero() || rec.Owner != "alice" {
		t.Fatalf("updated record: %+v %v %v", rec, found, err)
	}
	// A deleted id is never created again.
	if rec, created, err := s.Create(ctx, streams.SessionRecord{ID: "a29", Owner: "bob"}); err != nil || created || rec.Deleted.IsZero() {
		t.Fatalf("recreate a deleted id: %+v %v %v", rec, created, err)
	}
	for _, bad := range []string{"x", "bDEu", "bDEuMA", "bDEuLTE"} {
		if _, err := s.List(ctx, "alice", "", bad, 10); !errors.Is(err, streams.ErrBadListCursor) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
	for _, tags := range [][]string{{""}, {"a", "a"}, {"x\n"}, make([]string, streams.MaxTags+1)} {
		if _, err := s.Update(ctx, "a02", func(r *streams.SessionRecord) error { r.Tags = tags; return nil }); !errors.Is(err, streams.ErrBadLabel) {
			t.Errorf("tags %q: %v", tags, err)
		}
	}
}

// TestLastActivity reads when each session last stored a message.
func TestLastActivity(t *testing.T) {
	_, l := openSessions(t)
	ctx := context.Background()
	if _, err := l.Append(ctx, "act-a", streams.In, streams.Record{}, body); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, "act-a", streams.Out, streams.Record{}, body); err != nil {
		t.Fatal(err)
	}
	got, err := l.LastActivity(ctx, []string{"act-a", "act-none"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["act-a"].IsZero() {
		t.Fatalf("last activity: %v", got)
	}
}

// FuzzSessionListCursor: any cursor either reads a page or is refused
// with ErrBadListCursor; none panics.
func FuzzSessionListCursor(f *testing.F) {
	s, _ := openSessions(f)
	f.Add("")
	f.Add("bDEuMTA")
	f.Add("bDEuMA")
	f.Add("bDEuMTg0NDY3NDQwNzM3MDk1NTE2MTU")
	f.Fuzz(func(t *testing.T, cursor string) {
		_, err := s.List(context.Background(), "fuzz", "", cursor, 5)
		if err != nil && !errors.Is(err, streams.ErrBadListCursor) {
			t.Fatalf("cursor %q: %v", cursor, err)
		}
	})
}
