package main_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
)

var reAnyListen = regexp.MustCompile(`^HAIP edge listening on (http://\S+)$`)

// The README's scale-out, run as a newcomer would in one directory: the
// first edge exposes its embedded NATS, a second edge and a tool worker
// join it with NATS_URL, and the first edge's printed token works on the
// second. An edge elsewhere with NATS_URL and no secret refuses to start
// (it would make up its own), and JWT_SECRET=$(cat data/jwt-secret)
// joins it to the same fabric.
func TestReadmeScaleOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	natsURL := "nats://" + natsAddr
	quick := map[string]string{"PORT": "0", "DEMO_AGENT_DELAY": "5ms"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	// NATS_LISTEN=127.0.0.1:4222 go run ./cmd/edge
	first := startIn(t, dir, bins.edge, with(quick, "NATS_LISTEN", natsAddr))
	firstWS := first.waitLine(reListen, 60*time.Second)
	userToken := first.waitLine(reUser, 5*time.Second)
	// NATS_URL=nats://127.0.0.1:4222 go run ./cmd/toolworker
	startIn(t, dir, bins.toolworker, map[string]string{"NATS_URL": natsURL, "DEMO_AGENT_DELAY": "5ms"})
	// a second edge with NATS_URL and another PORT
	second := startIn(t, dir, bins.edge, with(quick, "NATS_URL", natsURL, "DEMO_AGENT", "false", "BUILTIN_TOOLS", "false"))
	secondWS := second.waitLine(reListen, 60*time.Second)

	ask := func(ws, token, text string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, client.Options{URL: ws, Token: token})
		if err != nil {
			t.Fatalf("dial %s: %v", ws, err)
		}
		defer c.CloseNow()
		if _, err := c.SendText(ctx, text); err != nil {
			t.Fatal(err)
		}
		all, err := readLog(t, c, 20*time.Second, harness.IsRunFinished)
		if err != nil {
			t.Fatalf("answer through %s: %v", ws, err)
		}
		harness.CheckAnswer(t, all, text)
	}
	ask(secondWS, userToken, "through the second edge")
	ask(firstWS, userToken, "through the first edge")

	// `edge token` in the same directory mints for both.
	cmd := exec.Command(bins.edge, "token", "-sub", "alice")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("edge token: %v", err)
	}
	ask(secondWS, strings.TrimSpace(string(out)), "with a minted token")

	// Elsewhere, NATS_URL alone is refused rather than given a secret of
	// its own; the first edge's secret as JWT_SECRET joins the fabric.
	other := t.TempDir()
	lone := startIn(t, other, bins.edge, with(quick, "NATS_URL", natsURL))
	if err := lone.wait(30 * time.Second); err == nil {
		t.Fatal("an edge with NATS_URL and no secret started")
	}
	lone.mu.Lock()
	said := strings.Join(lone.out, "\n")
	lone.mu.Unlock()
	if !strings.Contains(said, "JWT_SECRET") {
		t.Fatalf("refusal does not name JWT_SECRET:\n%s", said)
	}
	if _, err := os.Stat(filepath.Join(other, "data", "jwt-secret")); err == nil {
		t.Fatal("the refused edge made a secret")
	}
	secret, err := os.ReadFile(filepath.Join(dir, "data", "jwt-secret"))
	if err != nil {
		t.Fatal(err)
	}
	third := startIn(t, other, bins.edge, with(quick, "NATS_URL", natsURL, "JWT_SECRET", strings.TrimSpace(string(secret)),
		"DEMO_AGENT", "false", "BUILTIN_TOOLS", "false"))
	base := third.waitLine(reAnyListen, 60*time.Second)
	ask("ws"+strings.TrimPrefix(base, "http")+"/haip/websocket", userToken, "through an edge given the secret")
}
