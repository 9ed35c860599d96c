package edge_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/streams"
)

// mintTicket asks POST /api/v1/tickets with token; it returns the status
// and the ticket.
func mintTicket(t *testing.T, base, token string) (int, string, int64) {
	t.Helper()
	var out struct {
		Ticket    string `json:"ticket"`
		ExpiresAt int64  `json:"expiresAt"`
	}
	status := apiCall(t, base, token, "POST", "/api/v1/tickets", map[string]any{}, &out)
	return status, out.Ticket, out.ExpiresAt
}

// sseStatus opens GET /haip/sse with query q (no Authorization header)
// and returns the status; the stream is closed at once.
func sseStatus(t *testing.T, base string, q url.Values) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/haip/sse?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = resp.Body.Close()
	return resp.StatusCode
}

// A ticket opens one stream of its owner's session, once, on any edge;
// it cannot be minted without a token in the Authorization header, does
// not open another user's session, and is not taken by a POST.
func TestTicket(t *testing.T) {
	f := newFabric(t, streams.Config{})
	e1 := f.Edge(edge.Config{})
	e2 := f.Edge(edge.Config{})
	alice, bob := f.Token("alice", auth.RoleUser), f.Token("bob", auth.RoleUser)
	var created struct{ SessionID string }
	if st := apiCall(t, e1.Base, alice, "POST", "/api/v1/sessions/create", map[string]any{"name": "t"}, &created); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	sess := created.SessionID

	t.Run("no token", func(t *testing.T) {
		if st, _, _ := mintTicket(t, e1.Base, ""); st != http.StatusUnauthorized {
			t.Fatalf("minted without a token: %d", st)
		}
		if st := apiCall(t, e1.Base, "", "POST", "/api/v1/tickets?token="+url.QueryEscape(alice), map[string]any{}, nil); st != http.StatusUnauthorized {
			t.Fatalf("minted with a token in the URL: %d, want 401", st)
		}
	})

	t.Run("once, on any edge", func(t *testing.T) {
		st, ticket, exp := mintTicket(t, e1.Base, alice)
		if st != http.StatusCreated || ticket == "" {
			t.Fatalf("mint: %d %q", st, ticket)
		}
		if d := time.Until(time.UnixMilli(exp)); d <= 0 || d > 31*time.Second {
			t.Fatalf("ticket valid for %v, want at most 30 s", d)
		}
		q := url.Values{"session": {sess}, "ticket": {ticket}}
		if st := sseStatus(t, e2.Base, q); st != http.StatusOK {
			t.Fatalf("first use on another edge: %d, want 200", st)
		}
		if st := sseStatus(t, e1.Base, q); st != http.StatusUnauthorized {
			t.Fatalf("second use: %d, want 401", st)
		}
	})

	t.Run("another owner's session", func(t *testing.T) {
		_, ticket, _ := mintTicket(t, e1.Base, bob)
		st := sseStatus(t, e1.Base, url.Values{"session": {sess}, "ticket": {ticket}})
		if st != http.StatusForbidden && st != http.StatusNotFound {
			t.Fatalf("bob's ticket on alice's session: %d, want 403 or 404", st)
		}
	})

	t.Run("not for requests with headers", func(t *testing.T) {
		_, ticket, _ := mintTicket(t, e1.Base, alice)
		if st := apiCall(t, e1.Base, "", "POST", "/haip/messages?ticket="+ticket, map[string]any{}, nil); st != http.StatusUnauthorized {
			t.Fatalf("a POST took a ticket: %d, want 401", st)
		}
		if st := apiCall(t, e1.Base, "", "GET", "/api/v1/sessions?ticket=garbage", nil, nil); st != http.StatusUnauthorized {
			t.Fatalf("a made-up ticket: %d, want 401", st)
		}
	})
}
