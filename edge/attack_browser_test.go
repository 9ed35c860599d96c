package edge_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/streams"
)

// The tests named TestAttack… replay attacks on an edge (real
// nats-server, real loopback sockets) and pin that each is refused; they
// read as a regression suite, each naming what the attacker did. This file
// holds those an anonymous client could make.

// do sends one HTTP request and returns the answer with its body read
// (at most 64 KiB: a stream that was let through is cut there).
func do(t *testing.T, method, url string, hdr http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		return resp, nil // a stream: do not wait for its end
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, b
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// /stats and /metrics answered anyone. Now they need an admin token or
// the operator's metrics token; /health stays open for load balancers.
func TestAttackOperatorEndpointsWithoutToken(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	const scrape = "0123456789abcdef0123456789abcdef-metrics"
	e := f.edge(edge.Config{MetricsToken: scrape})
	for _, path := range []string{"/stats", "/metrics"} {
		for _, tc := range []struct {
			name   string
			hdr    http.Header
			status int
		}{
			{"no token", nil, http.StatusUnauthorized},
			{"bad token", header("Authorization", "Bearer nope"), http.StatusUnauthorized},
			{"user token", header("Authorization", "Bearer "+f.token("alice", auth.RoleUser)), http.StatusForbidden},
			{"agent token", header("Authorization", "Bearer "+f.token("bot", auth.RoleAgent)), http.StatusForbidden},
			{"admin token", header("Authorization", "Bearer "+f.token("ops", auth.RoleAdmin)), http.StatusOK},
			{"metrics token", header("Authorization", "Bearer "+scrape), http.StatusOK},
		} {
			resp, body := do(t, http.MethodGet, e.base+path, tc.hdr, nil)
			if resp.StatusCode != tc.status {
				t.Errorf("GET %s with %s: HTTP %d, want %d: %.200s", path, tc.name, resp.StatusCode, tc.status, body)
				continue
			}
			if tc.status != http.StatusOK {
				if b := decodeHTTPError(t, body); b.Code == "" || b.Message == "" {
					t.Errorf("GET %s with %s: body %s", path, tc.name, body)
				}
			}
		}
	}
	// A metrics token in the query is not taken: it would end up in logs.
	if resp, _ := do(t, http.MethodGet, e.base+"/metrics?token="+scrape, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("metrics token in the query: HTTP %d, want 401", resp.StatusCode)
	}
	if resp, body := do(t, http.MethodGet, e.base+"/health", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/health without a token: HTTP %d %s", resp.StatusCode, body)
	}
}
