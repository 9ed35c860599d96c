package main_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/clustertest"
	"github.com/haipfabric/haipfabric/internal/localcluster"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

type clusterEdge struct {
	*edgeProc
	base string // http://host:port
}

// topology starts the local cluster topology of o (NATS nodes with R3
// streams, edges, tool workers; see internal/localcluster) for the test
// and returns it with its edges, each with a user token. The edges' proc
// is nil: the harness owns their processes.
func topology(t *testing.T, o localcluster.Options) (*localcluster.Cluster, []*clusterEdge) {
	t.Helper()
	o.Env = map[string]string{"LOG_LEVEL": "debug"}
	began := time.Now()
	cl := clustertest.StartTopology(t, o)
	t.Logf("topology up in %s", time.Since(began).Round(time.Millisecond))
	tok, err := cl.UserToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	edges := make([]*clusterEdge, cl.Edges())
	for i := range edges {
		edges[i] = &clusterEdge{edgeProc: &edgeProc{ws: cl.EdgeWSURL(i), token: tok}, base: cl.EdgeURL(i)}
	}
	return cl, edges
}

// bounded is a context for one step of a test.
func bounded(t *testing.T, within time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	return ctx
}

// dialUntil dials until it succeeds or within passes: while JetStream
// elects leaders the edge may refuse the handshake.
func dialUntil(t *testing.T, e *clusterEdge, o client.Options, within time.Duration) *client.Conn {
	t.Helper()
	o.URL, o.Token = e.ws, e.token
	began := time.Now()
	deadline := began.Add(within)
	var failures []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.Dial(ctx, o)
		cancel()
		if err == nil {
			if len(failures) > 0 {
				t.Logf("dial succeeded after %d refusals over %s (first: %s; last: %s)", len(failures),
					time.Since(began).Round(time.Millisecond), failures[0], failures[len(failures)-1])
			}
			t.Cleanup(func() { _ = c.CloseNow() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v (after %d refusals)", e.ws, err, len(failures))
		}
		failures = append(failures, err.Error())
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// readResuming reads log messages until stop; whenever the connection
// drops it dials again with LastRxSeq = the last seq received, so the
// result is what one reader would see without the drops. It returns the
// messages and the number of resumes.
func readResuming(t *testing.T, e *clusterEdge, c *client.Conn, within time.Duration, stop func(*client.Conn, *haip.Envelope) bool) ([]*haip.Envelope, int) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got []*haip.Envelope
	resumes := 0
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		env, err := c.Read(ctx)
		cancel()
		if err != nil {
			if time.Now().After(deadline) || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("read: %v after %d messages (last seq %d)", err, len(got), c.LastSeq())
			}
			code, reason := client.CloseStatus(err)
			t.Logf("connection dropped at seq %d (%d %q: %v); resuming", c.LastSeq(), code, reason, err)
			last := c.LastSeq()
			_ = c.CloseNow()
			c = dialUntil(t, e, client.Options{Session: c.Session(), LastRxSeq: &last}, time.Until(deadline))
			resumes++
			continue
		}
		if client.IsControl(env.Type) {
			continue
		}
		got = append(got, env)
		if stop(c, env) {
			return got, resumes
		}
	}
}

// waitHealthy polls the edge's /health until it answers 200.
func waitHealthy(t *testing.T, e *clusterEdge, within time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: 3 * time.Second}
	var last error
	testkit.Eventually(t, within, func() bool {
		resp, err := hc.Get(e.base + "/health")
		if err != nil {
			last = err
			return false
		}
		resp.Body.Close()
		last = errors.New(resp.Status)
		return resp.StatusCode == http.StatusOK
	}, "edge /health not 200", func() string { return fmt.Sprint(last) })
}

// One of three NATS nodes, the leader of the session-log stream, is
// SIGKILLed while the agent streams an answer: the client gets every
// message once, dense, and the edge is healthy after the node is back.
func TestClusterNodeKilledMidAnswer(t *testing.T) {
	t.Parallel()
	began := time.Now()
	cl, edges := topology(t, localcluster.Options{Edges: 1, ToolWorkers: -1,
		EdgeEnv: map[string]string{"DEMO_AGENT": "true", "DEMO_AGENT_DELAY": "30ms", "AGENT_ACK_WAIT": "3s"}})
	e := edges[0]
	c := dialUntil(t, e, client.Options{}, 20*time.Second)
	const text = "a node dies while I answer"
	if _, err := c.SendText(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, c, 20*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= 5 })
	if err != nil {
		t.Fatal(err)
	}
	victim, err := cl.NATS().WaitStreamLeader(bounded(t, 10*time.Second), streams.SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := cl.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s (leader of %s) at seq %d", cl.NATS().Name(victim), streams.SessionStream, c.LastSeq())
	rest, resumes := readResuming(t, e, c, 45*time.Second, func(_ *client.Conn, env *haip.Envelope) bool { return harness.IsRunFinished(env) })
	t.Logf("answer finished %s after the kill, %d resumes, %d messages", time.Since(killed).Round(time.Millisecond), resumes, len(first)+len(rest))
	harness.CheckAnswer(t, append(first, rest...), text)

	// RestartNode returns once sessions can be opened through the edge.
	if err := cl.RestartNode(bounded(t, 60*time.Second), victim); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, e, 20*time.Second)
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// The whole NATS cluster is stopped and started again after an answer,
// under a running edge: a new client reading from seq 0 gets the same log,
// dense, with the same ids.
func TestClusterRestartAll(t *testing.T) {
	t.Parallel()
	began := time.Now()
	cl, edges := topology(t, localcluster.Options{Edges: 1, ToolWorkers: -1,
		EdgeEnv: map[string]string{"DEMO_AGENT": "true", "DEMO_AGENT_DELAY": "1ms", "AGENT_ACK_WAIT": "3s"}})
	e := edges[0]
	c := dialUntil(t, e, client.Options{}, 20*time.Second)
	const text = "remember this across a restart"
	if _, err := c.SendText(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	before, err := readLog(t, c, 20*time.Second, harness.IsRunFinished)
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckAnswer(t, before, text)
	_ = c.CloseNow()

	stopped := time.Now()
	if err := cl.StopNodes(); err != nil {
		t.Fatal(err)
	}
	// StartNodes returns once sessions can be opened through the edge,
	// not merely when its /health answers 200.
	if err := cl.StartNodes(bounded(t, 90*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster stopped and started in %s", time.Since(stopped).Round(time.Millisecond))
	waitHealthy(t, e, 30*time.Second)

	zero := uint64(0)
	c2 := dialUntil(t, e, client.Options{Session: c.Session(), LastRxSeq: &zero}, 20*time.Second)
	after, _ := readResuming(t, e, c2, 30*time.Second, func(c *client.Conn, _ *haip.Envelope) bool { return c.LastSeq() >= uint64(len(before)) })
	harness.CheckAnswer(t, after, text)
	if len(after) != len(before) {
		t.Fatalf("%d messages after the restart, %d before", len(after), len(before))
	}
	for i := range before {
		if after[i].ID != before[i].ID || after[i].Seq != before[i].Seq || after[i].Type != before[i].Type {
			t.Fatalf("message %d: %s %d %s after the restart, %s %d %s before", i,
				after[i].ID, after[i].Seq, after[i].Type, before[i].ID, before[i].Seq, before[i].Type)
		}
	}
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}
