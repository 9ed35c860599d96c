//go:build unix

package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// These tests run a real headless Chromium against a page served from
// another origin than the edge's (testdata/browser/eventsource.html). A
// missing or broken browser fails them (.ci/run installs Chromium); a
// developer without one may skip them on purpose with
// HAIP_SKIP_BROWSER=1, never by accident.

// A browser's own EventSource, with nothing but the edge's id: lines and
// retry:, survives its connections being cut in the middle of an answer
// and then its edge being replaced by another on the same address: the
// log messages it gets are exactly 1..N, in order, once each.
func TestBrowserEventSourceResume(t *testing.T) {
	bin := chromiumPath(t)
	f := newFabric(t, streams.Config{})
	// 100 ms a word: the answer (~40 messages) lasts about 4 s, so that
	// messages still stream live after each reconnection (the edge asks
	// EventSource to retry after 1 s).
	f.Agent(100 * time.Millisecond)
	p := newPage(t)
	// The page is on another origin than the edge's: it must be listed.
	cfg := edge.Config{EnableCORS: true, CORSOrigins: []string{p.srv.URL}}
	e1 := f.ownedEdge(t, "127.0.0.1:0", cfg)
	session := haip.NewUUID()
	token := f.Token("alice", auth.RoleUser)
	start := time.Now()
	b := startChromium(t, bin, p.url(e1.base(), token, session, "hello browser"))

	// 1. The first messages arrive; cut every connection of the edge.
	rs := p.wait(b, 30*time.Second, "6 log messages", func(rs []pageReport) bool { return len(logEvents(rs)) >= 6 })
	atCut1 := seqsOf(logEvents(rs))
	n := e1.cut()
	t.Logf("%5dms cut %d connection(s) of edge 1 after seqs %v", time.Since(start).Milliseconds(), n, atCut1)

	// 2. EventSource reconnects by itself (Last-Event-ID); a few more live
	// messages arrive; then the edge goes away and another takes its
	// address.
	rs = p.wait(b, 15*time.Second, "a reconnection and 3 more log messages", func(rs []pageReport) bool {
		return count(rs, "open") >= 2 && (len(logEvents(rs)) >= len(atCut1)+3 || finished(rs))
	})
	atCut2 := seqsOf(logEvents(rs))
	e1.stop()
	e2 := f.ownedEdge(t, e1.addr, cfg)
	t.Logf("%5dms replaced edge 1 by edge 2 on %s after seqs %v", time.Since(start).Milliseconds(), e2.addr, atCut2[len(atCut1):])

	// 3. It reconnects to the new edge and gets the rest.
	rs = p.wait(b, 15*time.Second, "RUN_FINISHED after a third open", func(rs []pageReport) bool {
		return count(rs, "open") >= 3 && finished(rs)
	})
	logs := logEvents(rs)
	t.Logf("%5dms RUN_FINISHED; after the replacement seqs %v", time.Since(start).Milliseconds(), seqsOf(logs)[len(atCut2):])

	seqs := seqsOf(logs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("log message %d has seq %d, want %d; seqs %v", i, s, i+1, seqs)
		}
	}
	if first, last := logs[0].Type, logs[len(logs)-1].Type; first != string(haip.TypeRunStarted) || last != string(haip.TypeRunFinished) {
		t.Fatalf("log runs from %s to %s, want RUN_STARTED to RUN_FINISHED", first, last)
	}
	if got, want := strings.Join(textsOf(logs), ""), demo.Answer("hello browser"); got != want {
		t.Fatalf("answer %q, want %q", got, want)
	}
	// Every event's id is its seq (control envelopes repeat the last log
	// seq), which is what EventSource sends back as Last-Event-ID.
	for _, r := range rs {
		if r.Kind == "event" && r.LastEventID != r.Seq {
			t.Errorf("%s event with seq %s has lastEventId %q", r.Type, r.Seq, r.LastEventID)
		}
	}
	// Each open starts with a HAI at the seq the page had before it: the
	// edge resumed from the browser's Last-Event-ID.
	opens, lastLog := 0, "0"
	for i, r := range rs {
		switch {
		case r.Kind == "open":
			opens++
			next := nextEvent(rs[i+1:])
			if next == nil || next.Type != string(haip.TypeHAI) || next.Seq != lastLog {
				t.Errorf("open %d (after log seq %s) is followed by %+v, want HAI with seq %s", opens, lastLog, next, lastLog)
			}
		case r.Kind == "event" && !client.IsControl(haip.Type(r.Type)):
			lastLog = r.Seq
		}
	}
	for _, r := range rs {
		if r.Kind == "open" || r.Kind == "error" {
			t.Logf("%5dms %s (readyState %d)", r.Time-start.UnixMilli(), r.Kind, r.ReadyState)
		}
	}
	if opens < 3 {
		t.Fatalf("%d opens, want at least 3 (two reconnections)", opens)
	}
	t.Logf("%d log messages, %d reconnections, %d error events; done in %s",
		len(logs), opens-1, count(rs, "error"), time.Since(start).Round(time.Millisecond))
}

// A page on an origin the edge does not serve, holding a user's token,
// got everything through a real browser: a no-cors text/plain POST stored
// its envelope, a JSON POST passed its preflight, a WebSocket and an
// EventSource opened. Now the edge refuses each (the default: no
// CORS_ORIGINS), and nothing reaches the session log.
func TestAttackBrowserForeignPage(t *testing.T) {
	bin := chromiumPath(t)
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{EnableCORS: true}) // cmd/edge's default
	p := newPage(t)
	session := haip.NewUUID()
	q := url.Values{"edge": {e.Base}, "token": {f.Token("alice", auth.RoleUser)}, "session": {session}}
	b := startChromium(t, bin, p.srv.URL+"/foreign.html?"+q.Encode())
	rs := p.wait(b, 60*time.Second, "the page to finish", func(rs []pageReport) bool { return count(rs, "done") == 1 })
	for _, r := range rs {
		if r.Kind != "attempt" {
			continue
		}
		t.Logf("%-12s ok=%v status=%d %s", r.Type, r.OK, r.Status, r.Error)
		if r.OK && r.Type != "post-simple" { // a no-cors request always "succeeds": its answer is opaque
			t.Errorf("the browser let a foreign page through: %s", r)
		}
	}
	if got := count(rs, "attempt"); got != 4 {
		t.Fatalf("%d attempts reported, want 4:\n%s", got, summary(rs))
	}
	if n := logLen(t, f, session, streams.In); n != 0 {
		t.Fatalf("a foreign page stored %d messages in the session", n)
	}
}

// The page and its reports work without an edge: it loads, and its
// EventSource reports the refused connection and stays CONNECTING (it
// will retry), which the resume test relies on while no edge listens.
func TestBrowserPageReports(t *testing.T) {
	bin := chromiumPath(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := newPage(t)
	start := time.Now()
	b := startChromium(t, bin, p.url(closed, "no-token", haip.NewUUID(), ""))
	rs := p.wait(b, 30*time.Second, "load and an error", func(rs []pageReport) bool {
		return count(rs, "load") == 1 && count(rs, "error") >= 1
	})
	for _, r := range rs {
		switch r.Kind {
		case "error":
			if r.ReadyState != 0 {
				t.Errorf("EventSource readyState %d after a refused connection, want 0 (CONNECTING)", r.ReadyState)
			}
		case "open", "event":
			t.Errorf("unexpected report %+v", r)
		}
	}
	t.Logf("%s; page loaded after %dms, first error after %dms", rs[0].UserAgent,
		rs[0].Time-start.UnixMilli(), rs[slices.IndexFunc(rs, func(r pageReport) bool { return r.Kind == "error" })].Time-start.UnixMilli())
}

// pageReport is one thing the page saw (see eventsource.html).
type pageReport struct {
	I           int             `json:"i"`
	Time        int64           `json:"t"` // page clock, ms
	Kind        string          `json:"kind"`
	Type        string          `json:"type,omitempty"`
	Seq         string          `json:"seq,omitempty"`
	LastEventID string          `json:"lastEventId,omitempty"`
	Text        string          `json:"text,omitempty"`
	ReadyState  int             `json:"readyState,omitempty"`
	Status      int             `json:"status,omitempty"`
	OK          bool            `json:"ok,omitempty"`
	Results     json.RawMessage `json:"results,omitempty"`
	Error       string          `json:"error,omitempty"`
	Data        string          `json:"data,omitempty"`
	UserAgent   string          `json:"userAgent,omitempty"`
}

func (r pageReport) String() string {
	switch r.Kind {
	case "event":
		return fmt.Sprintf("#%d event %s seq=%s id=%s", r.I, r.Type, r.Seq, r.LastEventID)
	case "post":
		return fmt.Sprintf("#%d post %s %d ok=%v %s %s", r.I, r.Type, r.Status, r.OK, r.Results, r.Error)
	default:
		b, _ := json.Marshal(r)
		return fmt.Sprintf("#%d %s", r.I, b)
	}
}

// page serves eventsource.html and collects what it reports.
type page struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	reports []pageReport
	changed chan struct{} // closed and replaced on every report
}

func newPage(t *testing.T) *page {
	t.Helper()
	p := &page{t: t, changed: make(chan struct{})}
	mux := http.NewServeMux()
	for _, name := range []string{"eventsource.html", "foreign.html"} {
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			http.ServeFile(w, r, "testdata/browser/"+name)
		})
	}
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var batch []pageReport
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			batch = []pageReport{{I: -1, Kind: "bad", Error: "report: " + err.Error()}}
		}
		p.mu.Lock()
		p.reports = append(p.reports, batch...)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *page) url(edgeBase, token, session, text string) string {
	q := url.Values{"edge": {edgeBase}, "token": {token}, "session": {session}}
	if text != "" {
		q.Set("text", text)
	}
	return p.srv.URL + "/eventsource.html?" + q.Encode()
}

// snapshot returns the reports in the order the page made them, and a
// channel closed at the next report.
func (p *page) snapshot() ([]pageReport, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := slices.Clone(p.reports)
	slices.SortStableFunc(rs, func(a, b pageReport) int { return a.I - b.I })
	return rs, p.changed
}

// wait returns the reports once cond holds on them; it fails the test
// when the page reports a failure, the browser exits, or within passes.
func (p *page) wait(b *chromium, within time.Duration, what string, cond func([]pageReport) bool) []pageReport {
	p.t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		rs, changed := p.snapshot()
		for _, r := range rs {
			if r.Kind == "bad" || r.Kind == "fail" || (r.Kind == "post" && !r.OK) {
				p.t.Fatalf("the page reports a failure: %s\nreports:\n%s", r, summary(rs))
			}
			if r.Kind == "error" && r.ReadyState == 2 {
				p.t.Fatalf("EventSource gave up (readyState CLOSED): the edge answered /haip/sse with an error status or not as text/event-stream\nreports:\n%s", summary(rs))
			}
		}
		if cond(rs) {
			return rs
		}
		select {
		case <-changed:
		case <-b.done:
			if len(rs) == 0 {
				browserUnavailable(p.t, "chromium exited (%v) before the page reported anything:\n%s", b.err, b.out.tail())
			}
			p.t.Fatalf("chromium exited (%v) while waiting for %s; reports:\n%s", b.err, what, summary(rs))
		case <-timer.C:
			if len(rs) == 0 {
				p.t.Fatalf("no report from the page within %s; chromium said:\n%s", within, b.out.tail())
			}
			p.t.Fatalf("waited %s for %s; reports:\n%s", within, what, summary(rs))
		}
	}
}

func summary(rs []pageReport) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  ")
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func count(rs []pageReport, kind string) int {
	n := 0
	for _, r := range rs {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

// logEvents returns the events of session-log messages (not control).
func logEvents(rs []pageReport) []pageReport {
	var out []pageReport
	for _, r := range rs {
		if r.Kind == "event" && !client.IsControl(haip.Type(r.Type)) {
			out = append(out, r)
		}
	}
	return out
}

func finished(rs []pageReport) bool {
	return slices.ContainsFunc(rs, func(r pageReport) bool { return r.Kind == "event" && r.Type == string(haip.TypeRunFinished) })
}

func nextEvent(rs []pageReport) *pageReport {
	for i := range rs {
		if rs[i].Kind == "event" {
			return &rs[i]
		}
	}
	return nil
}

func seqsOf(rs []pageReport) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i], _ = strconv.ParseUint(r.Seq, 10, 64)
	}
	return out
}

func textsOf(rs []pageReport) []string {
	var out []string
	for _, r := range rs {
		if r.Type == string(haip.TypeTextMessagePart) {
			out = append(out, r.Text)
		}
	}
	return out
}

// ownedEdge is an edge served by an http.Server and listener of the
// test's own, so that the test can cut its connections, and stop it and
// serve another edge on the same address.
type ownedEdge struct {
	srv  *edge.Server
	hs   *http.Server
	ln   net.Listener
	addr string // host:port

	mu    sync.Mutex
	conns map[net.Conn]struct{}

	served   chan struct{}
	stopOnce sync.Once
}

// ownedEdge starts an edge on its own NATS connection, as f.Edge does,
// listening on addr ("127.0.0.1:0" for any port).
func (f *fabric) ownedEdge(t *testing.T, addr string, cfg edge.Config) *ownedEdge {
	t.Helper()
	nc := natstest.Conn(t, f.NS)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deps := edge.Deps{NC: nc, JS: js, Verifier: f.Verifier(0)}
	if os.Getenv("HAIP_TEST_EDGE_LOG") != "" {
		deps.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := edge.NewServer(ctx, cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = srv.Shutdown(ctx)
		t.Fatalf("listen on %s: %v", addr, err)
	}
	e := &ownedEdge{srv: srv, ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}, served: make(chan struct{})}
	e.hs = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, s http.ConnState) {
			srv.ConnState(c, s)
			e.mu.Lock()
			defer e.mu.Unlock()
			switch s {
			case http.StateNew:
				e.conns[c] = struct{}{}
			case http.StateClosed, http.StateHijacked:
				delete(e.conns, c)
			}
		},
	}
	go func() {
		defer close(e.served)
		_ = e.hs.Serve(ln)
	}()
	t.Cleanup(e.stop)
	return e
}

func (e *ownedEdge) base() string { return "http://" + e.addr }

// cut closes every connection of the edge at once, as a network that
// fails would: no close, no drain. It returns how many it closed.
func (e *ownedEdge) cut() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		_ = c.Close()
	}
	return len(e.conns)
}

// stop takes the edge away: nothing listens on its address any more, its
// idle connections are closed, its streams drain (they end; EventSource
// retries), and the server is shut down.
func (e *ownedEdge) stop() {
	e.stopOnce.Do(func() {
		_ = e.ln.Close()                 // no new connection reaches this edge (a draining edge answers 503)
		e.hs.SetKeepAlivesEnabled(false) // closes idle ones; no request after the current one
		<-e.served
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(ctx)
		if err := e.hs.Shutdown(ctx); err != nil {
			_ = e.hs.Close()
		}
	})
}

// chromiumPath finds a Chromium to run, or fails (skips under
// HAIP_SKIP_BROWSER=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	browserUnavailable(t, "no chromium on PATH (apt-get install chromium)")
	return ""
}

func browserUnavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("HAIP_SKIP_BROWSER") == "1" {
		t.Skipf("HAIP_SKIP_BROWSER=1: no browser test: "+format, args...)
	}
	t.Fatalf("browser test cannot run: "+format+" (install Debian's chromium, as .ci/run does, or set HAIP_SKIP_BROWSER=1 to skip the browser tests on purpose)", args...)
}

// chromium is a headless Chromium showing one page, killed (with every
// process it started) when the test ends.
type chromium struct {
	out  *tailBuffer
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
}

func startChromium(t *testing.T, bin, pageURL string) *chromium {
	t.Helper()
	b := &chromium{out: &tailBuffer{max: 16 << 10}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), pageURL)
	cmd.Stdout, cmd.Stderr = b.out, b.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers too
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		browserUnavailable(t, "start %s: %v", bin, err)
	}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-b.done
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers that outlived it
		if t.Failed() {
			t.Logf("chromium output (tail):\n%s", b.out.tail())
		}
	})
	return b
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.max; over > 0 {
		w.b = w.b[over:]
	}
	return len(p), nil
}

// tail returns what was kept, without the D-Bus complaints of a machine
// with no session bus.
func (w *tailBuffer) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for line := range strings.Lines(string(w.b)) {
		if !strings.Contains(line, ":ERROR:dbus/") {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
