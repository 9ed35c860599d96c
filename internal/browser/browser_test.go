package browser_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/internal/browser"
)

// A page served on loopback: the browser opens it, waits for what its
// script computes, reads the result and takes a screenshot.
func TestBrowserOpenWaitRead(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>t</title><p id=p>hello</p>
<script>setTimeout(() => { window.result = {sum: 2 + 3, text: document.getElementById("p").textContent}; }, 50);</script>`))
	}))
	defer srv.Close()

	b := browser.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := b.Open(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.WaitFor(ctx, 10*time.Second, "window.result"); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Sum  int    `json:"sum"`
		Text string `json:"text"`
	}
	if err := p.Eval(ctx, "window.result", &got); err != nil {
		t.Fatal(err)
	}
	if got.Sum != 5 || got.Text != "hello" {
		t.Fatalf("page computed %+v", got)
	}
	var n int
	if err := p.Eval(ctx, "new Promise((r) => setTimeout(() => r(7), 10))", &n); err != nil || n != 7 {
		t.Fatalf("awaited promise: %d, %v", n, err)
	}
	png, err := p.Screenshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG: %q", png[:min(8, len(png))])
	}
	if err := p.WaitFor(ctx, 100*time.Millisecond, "window.never"); err == nil {
		t.Fatal("WaitFor of a false condition returned nil")
	}
}
