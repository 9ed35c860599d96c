// Package ts_test runs the TypeScript client's tests from go test: the
// npm suite in Node (test/*.test.ts: the client on every transport and the
// official v1 SDK, against edge processes built from this checkout), and
// the client in a headless Chromium against the same kind of edges. Node
// (20 or later), npm and Chromium must be installed: without them these
// tests fail and say so (HAIP_SKIP_BROWSER=1 skips the Chromium part on
// purpose, as for the edge's browser tests).
package ts_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/haipfabric/haipfabric/internal/browser"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// secret signs the tests' tokens; every edge here is started with it.
const secret = "ts-client-go-tests-secret-0123456789abcdef"

// stampFile records, in node_modules, the package-lock.json that npm ci
// installed from: a different lock means node_modules is stale.
const stampFile = ".haip-lock-sha256"

// TestNode runs the npm test script: the client's suite and the v1 SDK's.
func TestNode(t *testing.T) {
	t.Parallel()
	bin := prepare(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := command(ctx, "npm", "test").env("HAIP_EDGE_BIN=" + bin).run()
	if err != nil {
		t.Fatalf("npm test: %v\n%s", err, tail(out, 20000))
	}
	t.Logf("npm test:\n%s", summary(out))
}

// TestBrowser runs test/browser/scenario.ts in Chromium, on each
// transport, against a hub edge (NATS, demo agent, tools) and two more:
// the test kills the first in the middle of an answer and the page's
// client resumes on the second.
func TestBrowser(t *testing.T) {
	t.Parallel()
	bin := prepare(t)
	b := browser.ForTest(t)

	pages := pageServer(t)
	hub := startEdge(t, bin, "hub", pages.URL, "NATS_LISTEN=127.0.0.1:"+strconv.Itoa(freePort(t)), "DEMO_AGENT=true", "DEMO_AGENT_DELAY=20ms", "BUILTIN_TOOLS=true")
	natsURL := "nats://" + hub.natsListen
	for _, tr := range []string{"websocket", "sse", "stream"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			first := startEdge(t, bin, tr+"-first", pages.URL, "NATS_URL="+natsURL, "DEMO_AGENT=false", "BUILTIN_TOOLS=false")
			second := startEdge(t, bin, tr+"-second", pages.URL, "NATS_URL="+natsURL, "DEMO_AGENT=false", "BUILTIN_TOOLS=false")
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			p, err := b.Open(ctx, pages.URL+"/?transport="+tr+"&urls="+first.base+","+second.base)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			fail := func(format string, args ...any) {
				t.Helper()
				if png, err := p.Screenshot(ctx); err == nil {
					path := filepath.Join(t.TempDir(), "page.png")
					_ = os.WriteFile(path, png, 0o644)
				}
				var r json.RawMessage
				_ = p.Eval(ctx, "window.haip", &r)
				t.Fatalf(format+"\npage report: %s", append(args, r)...)
			}
			if err := p.WaitFor(ctx, 30*time.Second, `window.haip && window.haip.state !== "running"`); err != nil {
				fail("%v", err)
			}
			var state string
			_ = p.Eval(ctx, "window.haip.state", &state)
			if state == "cut" {
				first.kill()
			}
			if err := p.WaitFor(ctx, 60*time.Second, `window.haip.state === "done" || window.haip.state === "failed"`); err != nil {
				fail("%v", err)
			}
			var rep struct {
				State  string `json:"state"`
				Error  string `json:"error"`
				Result struct {
					Transport string          `json:"transport"`
					Tool      json.RawMessage `json:"tool"`
					Cut       struct {
						Text, Want, Chunks, URL string
						Seqs                    []int
						LastSeq                 int
						Stored                  int
					}
					Cancel string
					Expiry struct {
						Minted int
						Turns  [][2]string
						Seqs   []int
					}
				} `json:"result"`
			}
			if err := p.Eval(ctx, "window.haip", &rep); err != nil {
				fail("%v", err)
			}
			if rep.State != "done" {
				fail("page failed: %s", rep.Error)
			}
			r := rep.Result
			if r.Transport != tr || string(r.Tool) != `{"result":5}` {
				fail("transport %q, tool result %s", r.Transport, r.Tool)
			}
			if state != "cut" || r.Cut.URL != second.base {
				fail("the first edge was not cut mid-answer (state %q), or the client did not move to the second (%q)", state, r.Cut.URL)
			}
			if r.Cut.Text != r.Cut.Want || r.Cut.Chunks != r.Cut.Text {
				fail("answer after the cut %q (streamed %q), want %q", r.Cut.Text, r.Cut.Chunks, r.Cut.Want)
			}
			dense(t, r.Cut.Seqs, "seqs around the cut")
			if r.Cut.LastSeq != len(r.Cut.Seqs) || r.Cut.Stored != r.Cut.LastSeq {
				fail("last seq %d, stored %d, for %d messages", r.Cut.LastSeq, r.Cut.Stored, len(r.Cut.Seqs))
			}
			if r.Cancel != "CANCELLED" {
				fail("cancelled run ended %q", r.Cancel)
			}
			if r.Expiry.Minted < 3 {
				fail("only %d tokens used", r.Expiry.Minted)
			}
			for _, turn := range r.Expiry.Turns {
				if turn[0] != turn[1] {
					fail("answer %q across token expiry, want %q", turn[0], turn[1])
				}
			}
			dense(t, r.Expiry.Seqs, "seqs across token expiry")
		})
	}
}

// The browser example (examples/chat.html) chats with the demo agent.
func TestBrowserExample(t *testing.T) {
	t.Parallel()
	bin := prepare(t)
	b := browser.ForTest(t)
	pages := pageServer(t)
	hub := startEdge(t, bin, "example", pages.URL, "DEMO_AGENT=true", "DEMO_AGENT_DELAY=5ms", "BUILTIN_TOOLS=true")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := b.Open(ctx, pages.URL+"/examples/chat.html#edge="+hub.base+"&token="+mint(t, "example-user", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.WaitFor(ctx, 20*time.Second, `document.getElementById("status").textContent.startsWith("open")`); err != nil {
		t.Fatal(err)
	}
	if err := p.Eval(ctx, `document.getElementById("text").value = "hello from the page"; document.getElementById("f").requestSubmit(); true`, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(demo.Answer("hello from the page"))
	if err := p.WaitFor(ctx, 20*time.Second, `document.getElementById("log").textContent.includes(`+string(want)+`)`); err != nil {
		var text string
		_ = p.Eval(ctx, `document.body.innerText`, &text)
		t.Fatalf("%v\npage: %s", err, text)
	}
}

func dense(t *testing.T, seqs []int, what string) {
	t.Helper()
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("%s: message %d has seq %d: %v", what, i, s, seqs)
		}
	}
}

var (
	prepOnce sync.Once
	prepBin  string
	prepErr  error
)

// prepare checks Node and npm, installs the package's dependencies when
// node_modules is missing or stale, builds the tests, and builds the edge
// binary; it returns the binary's path. Done once per test process.
func prepare(t *testing.T) string {
	t.Helper()
	prepOnce.Do(func() { prepBin, prepErr = doPrepare() })
	if prepErr != nil {
		t.Fatal(prepErr)
	}
	return prepBin
}

func doPrepare() (string, error) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s is not on PATH: the TypeScript client's tests need Node 20 or later and npm (.ci/run installs them)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := command(ctx, "node", "--version").run()
	if err != nil {
		return "", fmt.Errorf("node --version: %v: %s", err, out)
	}
	if m := regexp.MustCompile(`^v(\d+)\.`).FindSubmatch(bytes.TrimSpace(out)); m == nil || atoi(string(m[1])) < 20 {
		return "", fmt.Errorf("node %s is too old: the TypeScript client's tests need Node 20 or later", bytes.TrimSpace(out))
	}
	lock, err := os.ReadFile("package-lock.json")
	if err != nil {
		return "", fmt.Errorf("cannot read package-lock.json: %w", err)
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join("node_modules", stampFile)
	if got, _ := os.ReadFile(stamp); strings.TrimSpace(string(got)) != want {
		if out, err := command(ctx, "npm", "ci", "--no-audit", "--no-fund").run(); err != nil {
			return "", fmt.Errorf("npm ci: %v\n%s", err, tail(out, 8000))
		}
		if err := os.WriteFile(stamp, []byte(want+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("cannot write %s: %w", stamp, err)
		}
	}
	if out, err := command(ctx, "npm", "run", "build:test").run(); err != nil {
		return "", fmt.Errorf("npm run build:test: %v\n%s", err, tail(out, 8000))
	}
	bin, err := filepath.Abs(filepath.Join("build", "edge")) // build/ is the tests' own (git-ignored)
	if err != nil {
		return "", fmt.Errorf("cannot place the edge binary: %w", err)
	}
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := command(ctx, gocmd, "build", "-o", bin, "../../cmd/edge").run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/edge: %v\n%s", err, out)
	}
	return bin, nil
}

// cmd is a command run in the package directory with a bounded output.
type cmd struct {
	c *exec.Cmd
}

func command(ctx context.Context, name string, args ...string) *cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = os.Environ()
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	return &cmd{c: c}
}

func (c *cmd) env(kv ...string) *cmd {
	c.c.Env = append(c.c.Env, kv...)
	return c
}

func (c *cmd) run() ([]byte, error) {
	var out bytes.Buffer
	c.c.Stdout, c.c.Stderr = &out, &out
	err := c.c.Run()
	return out.Bytes(), err
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// summary keeps the test runner's result lines.
func summary(out []byte) string {
	var keep []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "not ok") || strings.HasPrefix(l, "# ") || strings.Contains(l, "# Subtest") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	return atoi(port)
}

// pageServer serves the package directory (the compiled client in dist/
// and build/, the examples), the scenario's page at /, and tokens
// (/token?ttl=seconds).
func pageServer(t *testing.T) *httptest.Server {
	t.Helper()
	files := http.FileServer(http.Dir("."))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, `<!doctype html><meta charset=utf-8><title>haip client</title><script type=module src="/build/test/browser/scenario.js"></script>`)
		case "/token":
			ttl := atoi(r.URL.Query().Get("ttl"))
			w.Header().Set("Cache-Control", "no-store")
			_, _ = io.WriteString(w, mint(t, "browser-user", time.Duration(ttl)*time.Second))
		default:
			files.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// mint signs a user token whose exp is ttl from now (negative: already
// past, within the edge's 30 s clock-skew allowance).
func mint(t *testing.T, sub string, ttl time.Duration) string {
	now := time.Now()
	iat := now
	if ttl < 10*time.Second {
		iat = now.Add(ttl - 10*time.Second)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "role": "user", "iat": iat.Unix(), "nbf": iat.Unix(), "exp": now.Add(ttl).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Errorf("mint: %v", err)
	}
	return tok
}

// edgeProc is an edge process, stopped when the test ends.
type edgeProc struct {
	base       string
	natsListen string
	cmd        *exec.Cmd
	done       chan struct{}
	once       sync.Once
}

var listening = regexp.MustCompile(`HAIP edge listening on (http://\S+)`)

// startEdge starts the edge binary with a page origin allowed and env.
func startEdge(t *testing.T, bin, name, origin string, env ...string) *edgeProc {
	t.Helper()
	c := exec.Command(bin)
	c.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOST=127.0.0.1", "PORT=0", "DATA_DIR=" + t.TempDir(), "JWT_SECRET=" + secret,
		"CORS_ORIGINS=" + origin, "LOG_LEVEL=warn", "SHUTDOWN_TIMEOUT=2s"}, env...)
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatalf("start edge %s: %v", name, err)
	}
	e := &edgeProc{cmd: c, done: make(chan struct{})}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NATS_LISTEN="); ok {
			e.natsListen = v
		}
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		_ = c.Wait()
		close(e.done)
	}()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("edge %s stderr (tail):\n%s", name, tail(stderr.Bytes(), 4000))
		}
	})
	select {
	case e.base = <-found:
	case <-e.done:
		t.Fatalf("edge %s exited: %s", name, tail(stderr.Bytes(), 4000))
	case <-time.After(30 * time.Second):
		t.Fatalf("edge %s did not start within 30 s: %s", name, tail(stderr.Bytes(), 4000))
	}
	return e
}

// kill ends the edge at once: its connections are cut.
func (e *edgeProc) kill() {
	_ = e.cmd.Process.Kill()
	<-e.done
}

// stop ends the edge gracefully (a drain), or kills it after a bound.
func (e *edgeProc) stop() {
	e.once.Do(func() {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			e.kill()
		}
	})
}
