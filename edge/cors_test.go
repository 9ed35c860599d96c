package edge_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Browser pages: a listed origin gets preflights that allow the headers
// HAIP clients send, its origin and credentials on every answer (SSE
// included, or EventSource drops it); "*" lets any origin in without
// credentials; the edge's own origin needs nothing; the rest is refused
// (TestAttackCORSEchoesAnyOrigin).
func TestCORS(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	const app = "https://app.example"
	listed := f.Edge(edge.Config{EnableCORS: true, CORSOrigins: []string{"HTTPS://App.Example:443/", "http://[::1]:3000"}})
	star := f.Edge(edge.Config{EnableCORS: true, CORSOrigins: []string{"*"}})
	def := f.Edge(edge.Config{EnableCORS: true})
	off := f.Edge(edge.Config{EnableCORS: false, CORSOrigins: []string{app}})
	tok := f.Token("alice", auth.RoleUser)

	preflight := func(e *testEdge, path, origin string) *http.Response {
		resp, _ := do(t, http.MethodOptions, e.Base+path, header("Origin", origin, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization, content-type, x-haip-message, last-event-id"), nil)
		return resp
	}
	for _, path := range []string{"/haip/messages", "/haip/sse", "/haip/stream"} {
		resp := preflight(listed, path, app)
		allow := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != app ||
			resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("%s preflight: %d %v", path, resp.StatusCode, resp.Header)
		}
		for _, h := range []string{"authorization", "content-type", "last-event-id", "x-haip-message"} {
			if !strings.Contains(allow, h) {
				t.Fatalf("%s preflight does not allow %s: %q", path, h, allow)
			}
		}
	}
	if resp := preflight(listed, "/haip/messages", "http://[::1]:3000"); resp.Header.Get("Access-Control-Allow-Origin") != "http://[::1]:3000" {
		t.Fatalf("listed IPv6 origin refused: %d %v", resp.StatusCode, resp.Header)
	}
	for _, e := range []*testEdge{listed, def, off} {
		if resp := preflight(e, "/haip/messages", "http://evil.example"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("unlisted origin: %d %v", resp.StatusCode, resp.Header)
		}
	}
	if resp := preflight(off, "/haip/messages", app); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CORS off but a listed origin was served: %d %v", resp.StatusCode, resp.Header)
	}

	// "*": any origin, never with credentials; never "null".
	if resp := preflight(star, "/haip/messages", "http://page.example"); resp.StatusCode != http.StatusNoContent ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf(`"*" preflight: %d %v`, resp.StatusCode, resp.Header)
	}
	if resp := preflight(star, "/haip/messages", "null"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf(`"*" served Origin null: %d %v`, resp.StatusCode, resp.Header)
	}

	// The SSE answer itself names the origin, or EventSource drops it.
	session := haip.NewUUID()
	resp, _ := do(t, http.MethodGet, listed.Base+"/haip/sse?session="+session+"&token="+tok, header("Origin", app), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("SSE answer to a listed origin: %d %v", resp.StatusCode, resp.Header)
	}
	// A POST from a listed origin, and one from the edge's own origin
	// (which browsers label with Origin too), are served.
	for _, tc := range []struct {
		e      *testEdge
		origin string
	}{{listed, app}, {def, def.Base}, {off, off.Base}} {
		hello, _ := haip.Encode(helloEnvelope(haip.NewUUID()))
		resp, body := do(t, http.MethodPost, tc.e.Base+"/haip/messages",
			header("Origin", tc.origin, "Authorization", "Bearer "+tok, "Content-Type", "application/json"), hello)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST from %s: %d %s", tc.origin, resp.StatusCode, body)
		}
	}
}

// CORS_ORIGINS takes exact origins or "*"; anything else is a
// configuration error, named.
func TestCORSOriginsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example", true},
		{"http://127.0.0.1:3000", true},
		{"HTTPS://App.Example:443/", true},
		{"http://[::1]:3000", true},
		{"*", true},
		{" https://app.example ", true},
		{"null", false},
		{"app.example", false},
		{"https://app.example/path", false},
		{"https://*.example", false},
		{"ftp://app.example", false},
		{"https://user@app.example", false},
	} {
		err := edge.Config{EnableCORS: true, CORSOrigins: []string{tc.origin}}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("CORS_ORIGINS %q: Validate() = %v, want ok %v", tc.origin, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "CORS_ORIGINS") {
			t.Errorf("CORS_ORIGINS %q: error %q does not name the setting", tc.origin, err)
		}
	}
	if err := (edge.Config{MetricsToken: "short"}).Validate(); err == nil || !strings.Contains(err.Error(), "METRICS_TOKEN") {
		t.Errorf("a 5-byte METRICS_TOKEN: %v", err)
	}
}
