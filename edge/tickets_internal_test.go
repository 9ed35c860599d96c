package edge

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
)

// ticketJS is a JetStream on an embedded nats-server with the topology.
func ticketJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc := natstest.Conn(t, natstest.Server(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	return js
}

// A ticket is redeemed once, by one of many racing redeemers; it is
// refused after ticketTTL and after its token's expiry, whichever comes
// first; a ticket never minted is refused.
func TestTicketStore(t *testing.T) {
	js := ticketJS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ts ticketStore
	now := time.Now()
	alice := auth.Identity{Subject: "alice", Role: auth.RoleUser, Sessions: []string{"s1"}, TokenID: "j1", Expires: now.Add(time.Hour)}

	t.Run("once", func(t *testing.T) {
		ticket, exp, err := ts.mint(ctx, js, alice, now)
		if err != nil {
			t.Fatal(err)
		}
		if want := now.Add(ticketTTL); !exp.Equal(want) {
			t.Fatalf("expires %v, want %v", exp, want)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				id, err := ts.redeem(ctx, js, ticket, now.Add(time.Second))
				switch {
				case err == nil:
					wins.Add(1)
					if id.Subject != "alice" || id.Role != auth.RoleUser || len(id.Sessions) != 1 || id.TokenID != "j1" || !id.Expires.Equal(alice.Expires) {
						t.Errorf("redeemed %+v, want alice's identity", id)
					}
				case !errors.Is(err, errTicket):
					t.Errorf("redeem: %v", err)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("%d redeemers succeeded, want exactly 1", n)
		}
	})

	t.Run("expired", func(t *testing.T) {
		ticket, _, err := ts.mint(ctx, js, alice, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ts.redeem(ctx, js, ticket, now.Add(ticketTTL)); !errors.Is(err, errTicket) {
			t.Fatalf("a ticket past its TTL: %v, want errTicket", err)
		}
		// Spent by the refused attempt: not usable in time either.
		if _, err := ts.redeem(ctx, js, ticket, now); !errors.Is(err, errTicket) {
			t.Fatalf("a refused ticket tried again: %v, want errTicket", err)
		}
	})

	t.Run("token expires first", func(t *testing.T) {
		short := alice
		short.Expires = now.Add(5 * time.Second)
		ticket, exp, err := ts.mint(ctx, js, short, now)
		if err != nil {
			t.Fatal(err)
		}
		if !exp.Equal(short.Expires) {
			t.Fatalf("ticket expires %v, after its token (%v)", exp, short.Expires)
		}
		if _, err := ts.redeem(ctx, js, ticket, now.Add(6*time.Second)); !errors.Is(err, errTicket) {
			t.Fatalf("a ticket past its token's expiry: %v, want errTicket", err)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		for _, bad := range []string{"", "x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "../../etc/passwd"} {
			if _, err := ts.redeem(ctx, js, bad, now); !errors.Is(err, errTicket) {
				t.Fatalf("%q: %v, want errTicket", bad, err)
			}
		}
	})
}

// FuzzTicketIdentity: any stored bytes give an identity that names
// someone with a valid role and has not expired, or errTicket; nothing
// panics.
func FuzzTicketIdentity(f *testing.F) {
	for _, s := range []string{
		`{"sub":"alice","role":"user","exp":"2999-01-01T00:00:00Z","expiresAt":"2999-01-01T00:00:00Z"}`,
		`{"sub":"ops","role":"admin","sessions":["a","b"],"jti":"x","exp":"2999-01-01T00:00:00Z","expiresAt":"2999-01-01T00:00:00Z"}`,
		`{"sub":"","role":"user"}`, `{"sub":"a","role":"root","expiresAt":"2999-01-01T00:00:00Z"}`,
		`{"sub":"a","role":"user","expiresAt":"2000-01-01T00:00:00Z"}`, `null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := ticketIdentity(data, now)
		if err != nil {
			if !errors.Is(err, errTicket) {
				t.Fatalf("%q: %v is not errTicket", data, err)
			}
			return
		}
		if id.Subject == "" || !id.Role.Valid() || (!id.Expires.IsZero() && !now.Before(id.Expires)) {
			t.Fatalf("%q: accepted %+v", data, id)
		}
	})
}
