package main_test

import (
	"context"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/clustertest"
)

// In a cluster, an edge is SIGKILLed while the agent (in a toolworker
// process) streams: the client resumes on the other edge and gets the
// rest, nothing lost or repeated.
func TestClusterEdgeKilled(t *testing.T) {
	t.Parallel()
	c := clustertest.Start(t)
	noWork := map[string]string{"DEMO_AGENT": "false", "BUILTIN_TOOLS": "false"}
	e1, e2 := startClusterEdge(t, c, noWork), startClusterEdge(t, c, noWork)
	w := start(t, bins.toolworker, map[string]string{"NATS_URL": c.ClientURLs(), "DEMO_AGENT_DELAY": "30ms", "AGENT_ACK_WAIT": "3s", "BUILTIN_TOOLS": "false"})
	w.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)

	conn := dialUntil(t, e1, client.Options{}, 30*time.Second)
	if _, err := conn.SendText(context.Background(), "edge dies"); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, conn, 30*time.Second, func(*haip.Envelope) bool { return conn.LastSeq() >= 5 })
	if err != nil {
		t.Fatal(err)
	}
	e1.signal(syscall.SIGKILL)
	_ = e1.wait(10 * time.Second)
	last := conn.LastSeq()
	conn2 := dialUntil(t, e2, client.Options{Session: conn.Session(), LastRxSeq: &last}, 30*time.Second)
	rest, _ := readResuming(t, e2, conn2, 60*time.Second, func(_ *client.Conn, env *haip.Envelope) bool { return isFinished(env) })
	checkAnswer(t, append(first, rest...), "edge dies")
}

// In a cluster, a tool worker is SIGKILLed mid-call: another worker
// completes the call and the session holds exactly one TOOL_DONE.
func TestClusterToolWorkerKilled(t *testing.T) {
	t.Parallel()
	c := clustertest.Start(t)
	e := startClusterEdge(t, c, map[string]string{"DEMO_AGENT": "false", "BUILTIN_TOOLS": "false"})
	waitHealthy(t, e, 30*time.Second)
	toolWorkerKilledMidCall(t, e.edgeProc, c.ClientURLs())
}
