package main_test

import (
	"context"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/localcluster"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
)

// In a cluster, an edge is SIGKILLed while the agent (in a toolworker
// process) streams: the client resumes on the other edge and gets the
// rest, nothing lost or repeated.
func TestClusterEdgeKilled(t *testing.T) {
	t.Parallel()
	cl, edges := topology(t, localcluster.Options{Edges: 2, ToolWorkers: 1,
		ToolWorkerEnv: map[string]string{"DEMO_AGENT_DELAY": "30ms", "AGENT_ACK_WAIT": "3s", "BUILTIN_TOOLS": "false"}})
	e1, e2 := edges[0], edges[1]

	conn := dialUntil(t, e1, client.Options{}, 30*time.Second)
	if _, err := conn.SendText(context.Background(), "edge dies"); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, conn, 30*time.Second, func(*haip.Envelope) bool { return conn.LastSeq() >= 5 })
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.KillEdge(0); err != nil {
		t.Fatal(err)
	}
	last := conn.LastSeq()
	conn2 := dialUntil(t, e2, client.Options{Session: conn.Session(), LastRxSeq: &last}, 30*time.Second)
	rest, _ := readResuming(t, e2, conn2, 60*time.Second, func(_ *client.Conn, env *haip.Envelope) bool { return harness.IsRunFinished(env) })
	harness.CheckAnswer(t, append(first, rest...), "edge dies")
}

// In a cluster, a tool worker is SIGKILLed mid-call: another worker
// completes the call and the session holds exactly one TOOL_DONE.
func TestClusterToolWorkerKilled(t *testing.T) {
	t.Parallel()
	cl, edges := topology(t, localcluster.Options{Edges: 1, ToolWorkers: -1})
	toolWorkerKilledMidCall(t, edges[0].edgeProc, cl.NATSURLs())
}
