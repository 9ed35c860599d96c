//go:build unix

package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/edge/console"
	"github.com/haipfabric/haipfabric/streams"
)

// The web console at /console, driven in a headless Chromium: sign in,
// send a message and see the answer stream in, cut the connection in
// the middle of an answer and see it resume with no seq missing or
// twice, approve a request, rename and delete the session, and the
// operator view with an admin token (two edges, the tools). Every
// response of the page carries the strict CSP, the page breaks no CSP
// rule, and no request leaves 127.0.0.1 or carries a token in its URL.
// With HAIP_SCREENSHOTS=1 it writes the screenshots of the README into
// docs/.
func TestConsoleBrowser(t *testing.T) {
	bin := chromiumPath(t)
	f := newFabric(t, streams.Config{})
	// 100 ms a word: the answer (~40 messages) lasts about 4 s, long
	// enough to cut it in the middle.
	f.Agent(100 * time.Millisecond)
	f.Tools("console-tools", 4)
	e := f.Edge(edge.Config{EnableCORS: true})
	e2 := f.Edge(edge.Config{EnableCORS: true}) // for the operator view: two edges
	alice := f.Token("alice", auth.RoleUser)
	admin := f.Token("ops", auth.RoleAdmin)

	for _, path := range []string{"/console", "/console/app.js", "/console/haip.js", "/console/console.css", "/console/missing.js"} {
		resp, err := http.Get(e.Base + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if got := resp.Header.Get("Content-Security-Policy"); got != console.ContentSecurityPolicy {
			t.Errorf("%s: Content-Security-Policy %q", path, got)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", path, resp.Header)
		}
	}

	b := newConsoleBrowser(t, bin, 1280, 900)
	b.run(chromedp.Navigate(e.Base + "/console"))
	b.waitJS(10*time.Second, "the sign-in form", `!document.getElementById("view-signin").hidden`)
	if b.bool(`!document.getElementById("dev-token").hidden`) {
		t.Error("a development token is offered by an edge configured without one")
	}

	// Sign in; a first session is made and opened.
	b.run(chromedp.SetValue(chromedp.CSS("#token"), alice), chromedp.Click(chromedp.CSS("#signin-submit")))
	b.waitJS(15*time.Second, "the chat connected", `document.getElementById("conn-status").dataset.state === "open"`)
	session := b.string(`document.getElementById("session-pick").value`)
	if session == "" {
		t.Fatal("no session opened")
	}

	// Send with Enter; cut the connection in the middle of the answer.
	b.run(chromedp.Click(chromedp.CSS("#show-seq")), chromedp.SendKeys(chromedp.CSS("#text"), "hello console\r"))
	b.waitJS(15*time.Second, "6 envelopes of the answer", `document.querySelectorAll("#wire li[data-type=TEXT_MESSAGE_PART]").length >= 5`)
	b.run(chromedp.Click(chromedp.CSS("#cut")))
	b.waitJS(15*time.Second, "the end of the run", `!!document.querySelector("#wire li[data-type=RUN_FINISHED]")`)
	seqs := b.ints(`[...document.querySelectorAll("#wire li[data-source=live]")].map(li => Number(li.dataset.seq))`)
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("the page received seqs %v: want 1..%d, once each, in order", seqs, len(seqs))
		}
	}
	logText := b.string(`[...document.querySelectorAll("#conn-log li")].map(li => li.textContent + "\n").join("")`)
	cutAt := between(logText, "cut the connection at seq ", "\n")
	if cutAt == "" || cutAt == "0" || !strings.Contains(logText, "resumed from seq "+cutAt+"\n") {
		t.Fatalf("no visible resume from the seq of the cut (%q):\n%s", cutAt, logText)
	}
	if n, _ := strconv.Atoi(cutAt); n >= len(seqs) {
		t.Fatalf("cut at seq %s, after the whole answer (%d seqs): not in the middle", cutAt, len(seqs))
	}
	t.Logf("answer of %d seqs, cut at seq %s and resumed from it", len(seqs), cutAt)
	pageText := b.string(`document.querySelector("#messages .msg.agent .text").textContent`)
	if want := agentText(t, e.Base, alice, session); pageText != want {
		t.Fatalf("the page shows the answer\n%q\nthe log has\n%q", pageText, want)
	}
	if n := b.int(`document.querySelectorAll("#messages .msg.user").length`); n != 1 {
		t.Fatalf("the user's message is shown %d times (its echo must be dropped)", n)
	}

	// An approval: approve it with its button; the tool runs.
	b.run(chromedp.SendKeys(chromedp.CSS("#text"), "approve add 2 3\r"))
	b.waitJS(15*time.Second, "the approval request", `!!document.querySelector(".approval button.approve:not([disabled])")`)
	b.screenshots("chat")
	b.run(chromedp.Click(chromedp.CSS(".approval button.approve")))
	b.waitJS(15*time.Second, "the decision and the tool's result",
		`document.querySelector(".approval").dataset.decision === "approved" && [...document.querySelectorAll(".tool .result")].some(r => r.textContent.includes("5"))`)
	b.waitJS(15*time.Second, "the second run's end", `document.querySelectorAll("#wire li[data-type=RUN_FINISHED]").length === 2`)

	// Sessions: rename, then delete (two clicks).
	b.run(chromedp.Click(chromedp.CSS(`.tab[data-view=sessions]`)))
	row := fmt.Sprintf(`#session-list li[data-id=%q]`, session)
	b.waitJS(10*time.Second, "the session list", fmt.Sprintf(`!!document.querySelector(%q)`, row))
	// The list is re-rendered when it loads: act on the row in one step.
	b.bool(fmt.Sprintf(`(() => { const r = document.querySelector(%q); r.querySelector("input").value = "renamed in the console";
		r.querySelector('button[aria-label^="Rename"]').click(); return true })()`, row))
	b.waitJS(10*time.Second, "the new name in the session picker", `[...document.querySelectorAll("#session-pick option")].some(o => o.textContent === "renamed in the console")`)
	var details struct{ Session struct{ Name string } }
	apiCall(t, e.Base, alice, "GET", "/api/v1/sessions/details?sessionId="+session, nil, &details)
	if details.Session.Name != "renamed in the console" {
		t.Fatalf("the session is named %q after the rename", details.Session.Name)
	}
	b.bool(fmt.Sprintf(`(() => { const d = () => document.querySelector(%q); d().click(); d().click(); return true })()`, row+" button.delete"))
	b.waitJS(10*time.Second, "the session gone from the list", fmt.Sprintf(`!document.querySelector(%q)`, row))
	if st := apiCall(t, e.Base, alice, "GET", "/api/v1/sessions/details?sessionId="+session, nil, nil); st != http.StatusNotFound {
		t.Fatalf("the deleted session answers %d, want 404", st)
	}

	// The operator view, with an admin token: both edges, the tools.
	b.run(chromedp.Click(chromedp.CSS("#sign-out")))
	b.waitJS(5*time.Second, "the sign-in form", `!document.getElementById("view-signin").hidden`)
	if b.bool(`!!sessionStorage.getItem("haip-console-token") || localStorage.length > 0`) {
		t.Fatal("a token is left in the browser's storage after signing out")
	}
	b.run(chromedp.SetValue(chromedp.CSS("#token"), admin), chromedp.Click(chromedp.CSS("#signin-submit")))
	b.waitJS(15*time.Second, "the operator tab", `!document.getElementById("tab-operator").hidden`)
	b.run(chromedp.Click(chromedp.CSS("#tab-operator")))
	b.waitJS(15*time.Second, "two edges and the tools",
		`document.querySelectorAll("#op-edges [data-edge]").length === 2 && !!document.querySelector("#op-tools li[data-tool=add]")`)
	b.screenshots("operator")
	_ = e2

	b.checkNetwork()
}

// between returns the text of s after the first from, up to to.
func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return v
}

// agentText is the text of the first agent message of session, from the
// stored log.
func agentText(t *testing.T, base, token, session string) string {
	t.Helper()
	var page struct {
		Messages []struct {
			Direction string
			Envelope  struct {
				Type    string
				Channel string
				Payload struct {
					MessageID string `json:"message_id"`
					Text      string
				}
			}
		}
	}
	apiCall(t, base, token, "GET", "/api/v1/sessions/"+session+"/messages?limit=1000", nil, &page)
	var id, text string
	for _, m := range page.Messages {
		p := m.Envelope.Payload
		switch {
		case m.Envelope.Type == "TEXT_MESSAGE_START" && m.Envelope.Channel == "AGENT" && id == "":
			id, text = p.MessageID, p.Text
		case m.Envelope.Type == "TEXT_MESSAGE_PART" && p.MessageID == id && id != "":
			text += p.Text
		}
	}
	return text
}

// consoleBrowser is a headless Chromium driven over the DevTools
// protocol, which records every request the page makes and every CSP
// violation or uncaught error it reports.
type consoleBrowser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	urls     []string
	problems []string
}

func newConsoleBrowser(t *testing.T, bin string, width, height int) *consoleBrowser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(width, height),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	b := &consoleBrowser{t: t, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.urls = append(b.urls, ev.Request.URL)
		case *network.EventWebSocketCreated:
			b.urls = append(b.urls, ev.URL)
		case *runtime.EventExceptionThrown:
			msg := "exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
			b.problems = append(b.problems, msg)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.problems = append(b.problems, "console.error: "+strings.Join(parts, " "))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				b.problems = append(b.problems, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	})
	if err != nil {
		browserUnavailable(t, "chromium does not start: %v", err)
	}
	return b
}

func (b *consoleBrowser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v\n%s", err, b.diag())
	}
}

// evalJS returns the value of the page's expression expr.
func evalJS[T any](b *consoleBrowser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("browser: %s: %v\n%s", expr, err, b.diag())
	}
	return v
}

func (b *consoleBrowser) bool(expr string) bool     { b.t.Helper(); return evalJS[bool](b, expr) }
func (b *consoleBrowser) int(expr string) int       { b.t.Helper(); return evalJS[int](b, expr) }
func (b *consoleBrowser) ints(expr string) []int    { b.t.Helper(); return evalJS[[]int](b, expr) }
func (b *consoleBrowser) string(expr string) string { b.t.Helper(); return evalJS[string](b, expr) }

// waitJS waits until the page's expression expr is true.
func (b *consoleBrowser) waitJS(within time.Duration, what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !b.bool(expr) {
		if time.Now().After(deadline) {
			b.t.Fatalf("waited %v for %s\n%s", within, what, b.diag())
		}
		select {
		case <-tick.C:
		case <-b.ctx.Done():
			b.t.Fatalf("browser gone while waiting for %s", what)
		}
	}
}

// diag is what the page shows and reported, for a failure message.
func (b *consoleBrowser) diag() string {
	text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#conn-log li")].map(li => li.textContent).join("\n") + "\n---\n" + document.body.innerText.slice(0, 3000)`))
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("problems: %q\npage:\n%s", b.problems, text)
}

// checkNetwork fails the test if the page asked anything of another
// host than 127.0.0.1, put a token in a URL, or broke a CSP rule.
func (b *consoleBrowser) checkNetwork() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.urls) == 0 {
		b.t.Fatal("no request recorded")
	}
	tickets := 0
	for _, raw := range b.urls {
		u, err := url.Parse(raw)
		if err != nil {
			b.t.Errorf("request to %q", raw)
			continue
		}
		if u.Scheme == "data" {
			continue
		}
		if u.Hostname() != "127.0.0.1" {
			b.t.Errorf("a request left 127.0.0.1: %s", raw)
		}
		if u.Query().Has("token") {
			b.t.Errorf("a token in a URL: %s", u.Path)
		}
		if u.Query().Has("ticket") {
			tickets++
		}
	}
	if tickets < 2 {
		b.t.Errorf("%d WebSockets opened with a ticket, want at least 2 (the first and the resume)", tickets)
	}
	for _, p := range b.problems {
		b.t.Errorf("the page reported: %s", p)
	}
	b.t.Logf("%d requests, all to 127.0.0.1; %d with a ticket", len(b.urls), tickets)
}

// evalAwait waits for the page's promise expr.
func evalAwait(b *consoleBrowser, expr string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise)); err != nil {
		b.t.Fatal(err)
	}
}

// screenshots writes docs/console-<name>.png (1280 px wide) and
// docs/console-<name>-narrow.png (390 px) when HAIP_SCREENSHOTS=1.
func (b *consoleBrowser) screenshots(name string) {
	b.t.Helper()
	if os.Getenv("HAIP_SCREENSHOTS") != "1" {
		return
	}
	for _, s := range []struct {
		suffix        string
		width, height int64
		mobile        bool
	}{{"", 1280, 900, false}, {"-narrow", 390, 844, true}} {
		opts := []chromedp.EmulateViewportOption{}
		if s.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		b.run(chromedp.EmulateViewport(s.width, s.height, opts...))
		// Let layout settle on the new size: wait for two animation frames.
		evalAwait(b, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`)
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			b.t.Fatal(err)
		}
		path := filepath.Join("..", "docs", "console-"+name+s.suffix+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.t.Logf("wrote %s (%d bytes)", path, len(png))
	}
	b.run(chromedp.EmulateViewport(1280, 900))
}
