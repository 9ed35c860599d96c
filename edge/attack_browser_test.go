package edge_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// The tests named TestAttack… replay attacks on an edge (real
// nats-server, real loopback sockets) and pin that each is refused; they
// read as a regression suite, each naming what the attacker did. This file
// holds those a hostile web page or an anonymous client could make.

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

// A page on any origin (or a sandboxed one, Origin: null) was answered
// with its own origin and Access-Control-Allow-Credentials: true, on
// every endpoint. By default the edge now answers no CORS headers to a
// foreign origin and refuses its requests (403), preflights included.
func TestAttackCORSEchoesAnyOrigin(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{EnableCORS: true}) // cmd/edge's default: ENABLE_CORS on, no CORS_ORIGINS
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()
	hello, _ := haip.Encode(helloEnvelope(session))
	for _, origin := range []string{"http://evil.example", "null"} {
		for _, tc := range []struct {
			method, path string
			hdr          http.Header
			body         []byte
		}{
			{http.MethodOptions, "/haip/messages", header("Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type"), nil},
			{http.MethodPost, "/haip/messages", header("Authorization", "Bearer "+tok, "Content-Type", "application/json"), hello},
			{http.MethodGet, "/haip/sse?session=" + session + "&token=" + tok, nil, nil},
			{http.MethodGet, "/stats", nil, nil},
		} {
			hdr := tc.hdr.Clone()
			if hdr == nil {
				hdr = http.Header{}
			}
			hdr.Set("Origin", origin)
			resp, body := do(t, tc.method, e.Base+tc.path, hdr, tc.body)
			if acao, acac := resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Access-Control-Allow-Credentials"); acao != "" || acac != "" {
				t.Errorf("%s %s from %s: Access-Control-Allow-Origin %q, -Credentials %q; want neither", tc.method, tc.path, origin, acao, acac)
			}
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s from %s: HTTP %d, want 403", tc.method, tc.path, origin, resp.StatusCode)
				continue
			}
			if b := decodeHTTPError(t, body); b.Code != "ORIGIN_NOT_ALLOWED" || b.Message == "" {
				t.Errorf("%s %s from %s: body %s", tc.method, tc.path, origin, body)
			}
		}
	}
}

// A page on any origin opened a WebSocket to the edge (the upgrade
// skipped the origin check). Now a foreign or null Origin is refused
// before the upgrade; a client with no Origin, or the edge's own origin,
// still connects.
func TestAttackWebSocketFromForeignOrigin(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{EnableCORS: true})
	url := tokenURL(e, f.Token("alice", auth.RoleUser))
	for _, origin := range []string{"http://evil.example", "null", "http://127.0.0.1.evil.example"} {
		status, b, raw := refusal(t, url, header("Origin", origin))
		if status != http.StatusForbidden || b.Code != "ORIGIN_NOT_ALLOWED" {
			t.Errorf("Origin %s: HTTP %d %s, want 403 ORIGIN_NOT_ALLOWED", origin, status, raw)
		}
	}
	for _, origin := range []string{"", e.Base} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header("Origin", origin)})
		cancel()
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("Origin %q: %v (HTTP %d)", origin, err, status)
		}
		_ = ws.CloseNow()
	}
}

// Any page could POST envelopes (and stream requests, and run
// cancellations) with a form's or text/plain content type, which a
// browser sends cross-origin without a preflight. Now every POST with a
// body must say JSON or NDJSON (415 otherwise), and nothing is stored.
func TestAttackPostWithoutJSONContentType(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	session := haip.NewUUID()
	text := userText(t, session, "forged")
	runID := haip.NewUUID()
	for _, ct := range []string{"text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		for _, tc := range []struct {
			path string
			hdr  http.Header
			body []byte
		}{
			{"/haip/messages", nil, text[0]},
			{"/haip/sse", header("X-HAIP-Message", "true"), text[0]},
			{"/haip/stream?session=" + session, nil, nil},
			{"/haip/sessions/" + session + "/runs/" + runID + "/cancel", nil, []byte("x")},
		} {
			hdr := tc.hdr.Clone()
			if hdr == nil {
				hdr = http.Header{}
			}
			hdr.Set("Authorization", "Bearer "+tok)
			if ct != "" {
				hdr.Set("Content-Type", ct)
			}
			resp, body := do(t, http.MethodPost, e.Base+tc.path, hdr, tc.body)
			if resp.StatusCode != http.StatusUnsupportedMediaType {
				t.Errorf("POST %s as %q: HTTP %d, want 415", tc.path, ct, resp.StatusCode)
				continue
			}
			if b := decodeHTTPError(t, body); b.Code != string(haip.CodeUnsupportedType) || !strings.Contains(b.Message, "application/json") {
				t.Errorf("POST %s as %q: body %s", tc.path, ct, body)
			}
		}
	}
	if n := logLen(t, f, session, streams.In); n != 0 {
		t.Fatalf("%d messages stored from refused POSTs", n)
	}
}

// /stats and /metrics answered anyone. Now they need an admin token or
// the operator's metrics token; /health stays open for load balancers.
func TestAttackOperatorEndpointsWithoutToken(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	const scrape = "0123456789abcdef0123456789abcdef-metrics"
	e := f.Edge(edge.Config{MetricsToken: scrape})
	for _, path := range []string{"/stats", "/metrics"} {
		for _, tc := range []struct {
			name   string
			hdr    http.Header
			status int
		}{
			{"no token", nil, http.StatusUnauthorized},
			{"bad token", header("Authorization", "Bearer nope"), http.StatusUnauthorized},
			{"user token", header("Authorization", "Bearer "+f.Token("alice", auth.RoleUser)), http.StatusForbidden},
			{"agent token", header("Authorization", "Bearer "+f.Token("bot", auth.RoleAgent)), http.StatusForbidden},
			{"admin token", header("Authorization", "Bearer "+f.Token("ops", auth.RoleAdmin)), http.StatusOK},
			{"metrics token", header("Authorization", "Bearer "+scrape), http.StatusOK},
		} {
			resp, body := do(t, http.MethodGet, e.Base+path, tc.hdr, nil)
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
	if resp, _ := do(t, http.MethodGet, e.Base+"/metrics?token="+scrape, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("metrics token in the query: HTTP %d, want 401", resp.StatusCode)
	}
	if resp, body := do(t, http.MethodGet, e.Base+"/health", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/health without a token: HTTP %d %s", resp.StatusCode, body)
	}
}
