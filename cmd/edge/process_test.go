package main_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
)

// Binaries built once for every test here.
var bins struct {
	dir        string
	edge       string
	toolworker string
}

func TestMain(m *testing.M) {
	testkit.SkipProcessesIfShort("the process tests of cmd/edge")
	dir, err := os.MkdirTemp("", "haip-bins-")
	if err != nil {
		panic(err)
	}
	bins.dir = dir
	bins.edge = filepath.Join(dir, "edge")
	bins.toolworker = filepath.Join(dir, "toolworker")
	for out, pkg := range map[string]string{bins.edge: ".", bins.toolworker: "../toolworker"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running binary whose output lines are searchable.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []string
	done chan struct{}
	err  error
}

func start(t *testing.T, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	return startIn(t, "", bin, env, args...)
}

// startIn is start in the working directory dir ("": this one).
func startIn(t *testing.T, dir, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LOG_LEVEL=debug")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				p.mu.Lock()
				p.out = append(p.out, sc.Text())
				p.mu.Unlock()
			}
		}()
	}
	go func() {
		wg.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			p.mu.Lock()
			t.Logf("output of %s:\n%s", filepath.Base(bin), strings.Join(p.out, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

// waitLine waits for an output line matching re and returns its first
// submatch.
func (p *proc) waitLine(re *regexp.Regexp, within time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		p.mu.Lock()
		for _, l := range p.out {
			if m := re.FindStringSubmatch(l); m != nil {
				p.mu.Unlock()
				if len(m) > 1 {
					return m[1]
				}
				return m[0]
			}
		}
		p.mu.Unlock()
		select {
		case <-p.done:
			p.t.Fatalf("process exited (%v) before printing %s", p.err, re)
		case <-time.After(10 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no line matching %s within %s", re, within)
		}
	}
}

func (p *proc) signal(s syscall.Signal) { _ = p.cmd.Process.Signal(s) }

func (p *proc) wait(within time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		p.t.Fatalf("process did not exit within %s", within)
		return nil
	}
}

var (
	reListen = regexp.MustCompile(`^websocket: (ws://\S+)$`)
	reUser   = regexp.MustCompile(`^user token: (\S+)$`)
	reNATS   = regexp.MustCompile(`^embedded NATS for workers: (\S+)$`)
)

// testMetricsToken is the METRICS_TOKEN of every edge startEdge starts.
const testMetricsToken = "0123456789abcdef0123456789abcdef-metrics"

// scrape GETs an operator endpoint (/metrics, /stats) of the edge at base
// with its metrics token; the caller closes the body.
func scrape(t *testing.T, base, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testMetricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

type edgeProc struct {
	*proc
	ws, token string
}

func startEdge(t *testing.T, dataDir string, extra map[string]string) *edgeProc {
	t.Helper()
	if extra["NATS_URL"] != "" && extra["JWT_SECRET"] == "" {
		// An edge joining a NATS uses the secret a first edge made in its
		// data dir (it never makes one of its own): make it, as that
		// first edge would have.
		if _, _, err := auth.LoadOrCreateSecret(filepath.Join(dataDir, "jwt-secret")); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"DATA_DIR": dataDir, "PORT": "0", "HOST": "127.0.0.1", "DEMO_AGENT_DELAY": "20ms", "AGENT_ACK_WAIT": "2s",
		"METRICS_TOKEN": testMetricsToken}
	for k, v := range extra {
		env[k] = v
	}
	p := start(t, bins.edge, env)
	ws := p.waitLine(reListen, 60*time.Second)
	return &edgeProc{proc: p, ws: ws, token: p.waitLine(reUser, 5*time.Second)}
}

// dial connects to e as o.Token's user, or as the edge's printed user.
func dial(t *testing.T, e *edgeProc, o client.Options) *client.Conn {
	t.Helper()
	o.URL = e.ws
	if o.Token == "" {
		o.Token = e.token
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err != nil {
		t.Fatalf("dial %s: %v", e.ws, err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// readLog reads log messages until stop, skipping control messages.
func readLog(t *testing.T, c *client.Conn, within time.Duration, stop func(*haip.Envelope) bool) ([]*haip.Envelope, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []*haip.Envelope
	for {
		env, err := c.Read(ctx)
		if err != nil {
			return got, err
		}
		if client.IsControl(env.Type) {
			continue
		}
		got = append(got, env)
		if stop(env) {
			return got, nil
		}
	}
}

// The edge process is SIGKILLed in the middle of an answer and started
// again on its data dir: the client resumes and gets exactly the rest; the
// interrupted run is redelivered and de-duplicated.
func TestProcessKilledAndRestarted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startEdge(t, dir, nil)
	c := dial(t, e, client.Options{})
	if _, err := c.SendText(context.Background(), "kill me"); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, c, 20*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= 6 })
	if err != nil {
		t.Fatal(err)
	}
	e.signal(syscall.SIGKILL)
	_ = e.wait(10 * time.Second)

	e2 := startEdge(t, dir, nil)
	if e2.token == "" {
		t.Fatal("no token after restart")
	}
	c2 := dial(t, e2, client.Options{Session: c.Session(), LastRxSeq: &[]uint64{c.LastSeq()}[0]})
	rest, err := readLog(t, c2, 60*time.Second, harness.IsRunFinished)
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckAnswer(t, append(first, rest...), "kill me")
}

// SIGTERM drains: the client is told where to resume, the process exits
// cleanly, and nothing stored is lost.
func TestProcessSIGTERMDrains(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startEdge(t, dir, map[string]string{"DEMO_AGENT_DELAY": "1ms"})
	c := dial(t, e, client.Options{})
	if _, err := c.SendText(context.Background(), "drain"); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, c, 20*time.Second, harness.IsRunFinished)
	if err != nil {
		t.Fatal(err)
	}
	e.signal(syscall.SIGTERM)
	_, err = readLog(t, c, 20*time.Second, func(*haip.Envelope) bool { return false })
	code, reason := client.CloseStatus(err)
	if code != websocket.StatusGoingAway || !strings.Contains(reason, fmt.Sprintf("resume from seq %d", c.LastSeq())) {
		t.Fatalf("closed with %d %q (%v)", code, reason, err)
	}
	if err := e.wait(30 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	e2 := startEdge(t, dir, map[string]string{"DEMO_AGENT_DELAY": "1ms"})
	c2 := dial(t, e2, client.Options{Session: c.Session(), LastRxSeq: &[]uint64{0}[0]})
	all, err := readLog(t, c2, 20*time.Second, func(*haip.Envelope) bool { return c2.LastSeq() >= uint64(len(first)) })
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckAnswer(t, all, "drain")
}

// SIGTERM in the middle of a slow run: the whole drain, the in-process
// agent's included, fits in SHUTDOWN_TIMEOUT; the run is handed back and
// finished, once, by the next edge on the same data.
func TestProcessSIGTERMMidRunWithinShutdownTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := startEdge(t, dir, map[string]string{"DEMO_AGENT_DELAY": "2s", "SHUTDOWN_TIMEOUT": "2s"})
	c := dial(t, e, client.Options{})
	if _, err := c.SendText(context.Background(), "stop me"); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, c, 20*time.Second, func(env *haip.Envelope) bool { return env.Type == haip.TypeRunStarted })
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	e.signal(syscall.SIGTERM)
	if err := e.wait(12 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	t.Logf("stopped %s after SIGTERM with a run in progress (SHUTDOWN_TIMEOUT=2s)", time.Since(began).Round(time.Millisecond))

	e2 := startEdge(t, dir, map[string]string{"DEMO_AGENT_DELAY": "1ms"})
	last := uint64(first[len(first)-1].Seq)
	c2 := dial(t, e2, client.Options{Session: c.Session(), LastRxSeq: &last})
	rest, err := readLog(t, c2, 60*time.Second, harness.IsRunFinished)
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckAnswer(t, append(first, rest...), "stop me")
}

// Agent replicas in other processes (cmd/toolworker) take runs from the
// same queue as the edge's own: every run is answered exactly once.
func TestAgentReplicasInOtherProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	common := map[string]string{"AGENT_CONCURRENCY": "1", "DEMO_AGENT_DELAY": "5ms"}
	// One user asks all 24 at once: more runs in flight than a user's
	// default allowance (USER_MAX_RUNS).
	edgeEnv := map[string]string{"NATS_LISTEN": "127.0.0.1:0", "DEMO_AGENT_AUTHOR": "edge", "USER_MAX_RUNS": "32"}
	for k, v := range common {
		edgeEnv[k] = v
	}
	e := startEdge(t, dir, edgeEnv)
	natsURL := e.waitLine(reNATS, 5*time.Second)
	for _, name := range []string{"w1", "w2"} {
		env := map[string]string{"NATS_URL": natsURL, "DEMO_AGENT_AUTHOR": name}
		for k, v := range common {
			env[k] = v
		}
		w := start(t, bins.toolworker, env)
		w.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)
	}

	const sessions = 24
	var mu sync.Mutex
	authors := map[string]int{}
	var wg sync.WaitGroup
	for i := range sessions {
		c := dial(t, e, client.Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprintf("question %d", i)
			if _, err := c.SendText(context.Background(), text); err != nil {
				t.Error(err)
				return
			}
			all, err := readLog(t, c, 60*time.Second, harness.IsRunFinished)
			if err != nil {
				t.Error(err)
				return
			}
			harness.CheckAnswer(t, all, text)
			for _, env := range all {
				if env.Type == haip.TypeTextMessageStart {
					var p haip.TextMessageStartPayload
					_ = env.DecodePayload(&p)
					mu.Lock()
					authors[p.Author]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("runs per replica: %v", authors)
	total := 0
	for _, n := range authors {
		total += n
	}
	if total != sessions {
		t.Fatalf("%d answers for %d runs", total, sessions)
	}
	if len(authors) < 2 {
		t.Fatalf("only one replica took runs: %v", authors)
	}
}

// `edge token` mints a token the edge accepts, with the secret the edge
// made; it never makes one of its own, and -h is help, not an error.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := func(env string, args ...string) ([]byte, error) {
		cmd := exec.Command(bins.edge, append([]string{"token"}, args...)...)
		cmd.Env = append(os.Environ(), "DATA_DIR="+dir, env)
		return cmd.CombinedOutput()
	}
	if out, err := token("", "-sub", "bob"); err == nil || !strings.Contains(string(out), "JWT_SECRET") {
		t.Fatalf("token with no secret anywhere: %v %s; want a refusal naming JWT_SECRET", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "jwt-secret")); err == nil {
		t.Fatal("edge token made a secret of its own")
	}
	if out, err := token("", "-h"); err != nil || !strings.Contains(string(out), "usage: edge token") {
		t.Fatalf("token -h: %v %s; want usage and exit 0", err, out)
	}
	secret, _, err := auth.LoadOrCreateSecret(filepath.Join(dir, "jwt-secret")) // as the edge's first start does
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", "JWT_SECRET=" + string(secret)} {
		out, err := token(env, "-sub", "bob", "-role", "agent", "-ttl", "1h")
		if err != nil {
			t.Fatalf("token (%s): %v %s", env, err, out)
		}
		id, err := v.Verify(strings.TrimSpace(string(out)))
		if err != nil || id.Subject != "bob" || id.Role != auth.RoleAgent {
			t.Fatalf("minted token: %+v %v", id, err)
		}
	}
	if _, err := token("", "-role", "user"); err == nil {
		t.Fatal("token without -sub succeeded")
	}
	// A token the edge would refuse is not minted.
	if out, err := token("", "-sub", "bob", "-ttl", "8760h"); err == nil || !strings.Contains(string(out), "JWT_MAX_TTL") {
		t.Fatalf("token -ttl 8760h: %v %s", err, out)
	}
}
