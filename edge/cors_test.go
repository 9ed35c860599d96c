package edge_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/streams"
)

// Browser pages on other origins: preflights for the POST paths allow
// the headers HAIP clients send, SSE answers carry the origin, and a
// configured origin list keeps others out.
func TestCORS(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	open := f.edge(edge.Config{EnableCORS: true})
	listed := f.edge(edge.Config{EnableCORS: true, CORSOrigins: []string{"https://app.example"}})
	off := f.edge(edge.Config{EnableCORS: false})
	tok := f.token("alice", auth.RoleUser)

	preflight := func(e *testEdge, path, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, e.base+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type, x-haip-message, last-event-id")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/haip/messages", "/haip/sse", "/haip/stream"} {
		resp := preflight(open, path, "http://page.example")
		allow := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://page.example" {
			t.Fatalf("%s preflight: %d %v", path, resp.StatusCode, resp.Header)
		}
		for _, h := range []string{"authorization", "content-type", "last-event-id", "x-haip-message"} {
			if !strings.Contains(allow, h) {
				t.Fatalf("%s preflight does not allow %s: %q", path, h, allow)
			}
		}
	}
	if resp := preflight(listed, "/haip/messages", "http://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("unlisted origin allowed: %v", resp.Header)
	}
	if resp := preflight(listed, "/haip/messages", "https://app.example"); resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("listed origin refused: %v", resp.Header)
	}
	if resp := preflight(off, "/haip/messages", "http://page.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS off but allowed: %v", resp.Header)
	}
	// The SSE answer itself names the origin, or EventSource drops it.
	req, _ := http.NewRequest(http.MethodGet, open.base+"/haip/sse?session=cors1&token="+tok, nil)
	req.Header.Set("Origin", "http://page.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://page.example" {
		t.Fatalf("SSE answer without CORS header: %v", resp.Header)
	}
}
