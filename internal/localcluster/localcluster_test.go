package localcluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/localcluster"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
)

// One topology for every test in this binary: starting it costs seconds.
var shared struct {
	once sync.Once
	c    *localcluster.Cluster
	log  *testkit.Buffer
	err  error
}

func TestMain(m *testing.M) {
	testkit.SkipProcessesIfShort("the cluster tests of internal/localcluster")
	code := m.Run()
	if shared.c != nil {
		if err := shared.c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "close: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// cluster returns the shared topology, starting it on first use.
func cluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	shared.once.Do(func() {
		shared.log = &testkit.Buffer{}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		began := time.Now()
		shared.c, shared.err = localcluster.Start(ctx, localcluster.Options{
			Log: shared.log,
			Env: map[string]string{"DEMO_AGENT_DELAY": "5ms", "AGENT_ACK_WAIT": "5s"},
		})
		t.Logf("topology started in %s", time.Since(began).Round(time.Millisecond))
	})
	if shared.err != nil {
		t.Fatalf("start: %v\nprogress:\n%s", shared.err, shared.log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("progress:\n%s", shared.log.String())
		}
	})
	return shared.c
}

func dial(t *testing.T, c *localcluster.Cluster, edge int, o client.Options) *client.Conn {
	t.Helper()
	tok, err := c.UserToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	o.URL, o.Token = c.EdgeWSURL(edge), tok
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, o)
	if err != nil {
		t.Fatalf("dial edge %d: %v", edge, err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	return conn
}

// askThrough sends text through edge from and reads the whole session log,
// with the demo agent's answer, through edge to.
func askThrough(t *testing.T, c *localcluster.Cluster, from, to int, text string) (session string, log []*haip.Envelope) {
	t.Helper()
	in := dial(t, c, from, client.Options{})
	zero := uint64(0)
	out := dial(t, c, to, client.Options{Session: in.Session(), LastRxSeq: &zero})
	if _, err := in.SendText(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	all := harness.ReadUntil(t, out, 30*time.Second, harness.IsRunFinished)
	harness.CheckAnswer(t, all, text)
	return in.Session(), all
}

// The whole topology works: a text sent through edge 0 is answered by a
// demo agent in a tool worker, and the answer is read through edge 1.
func TestTopologyAnswersAcrossEdges(t *testing.T) {
	c := cluster(t)
	if c.Edges() != 2 || c.ToolWorkers() != 2 {
		t.Fatalf("%d edges, %d tool workers", c.Edges(), c.ToolWorkers())
	}
	if n := strings.Count(c.NATSURLs(), "nats://127.0.0.1:"); n != 3 {
		t.Fatalf("NATS URLs %q", c.NATSURLs())
	}
	for i := range c.Edges() {
		if c.EdgePID(i) == 0 || !strings.HasPrefix(c.EdgeURL(i), "http://127.0.0.1:") {
			t.Fatalf("edge %d: pid %d url %s", i, c.EdgePID(i), c.EdgeURL(i))
		}
	}
	began := time.Now()
	askThrough(t, c, 0, 1, "hello across the cluster")
	t.Logf("answered in %s", time.Since(began).Round(time.Millisecond))
}

// After the whole topology is stopped and started again, StartAll returns
// only when sessions can be opened: the first dial succeeds, and the log
// written before the restart is read back whole.
func TestTopologyRestartAll(t *testing.T) {
	c := cluster(t)
	const text = "remember this across a restart"
	session, before := askThrough(t, c, 1, 0, text)
	edgePID := c.EdgePID(0)

	began := time.Now()
	if err := c.StopAll(); err != nil {
		t.Fatalf("stop all: %v", err)
	}
	if c.EdgePID(0) != 0 || c.NATS().Running(0) {
		t.Fatal("processes still running after StopAll")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.StartAll(ctx); err != nil {
		t.Fatalf("start all: %v", err)
	}
	t.Logf("stopped and started in %s", time.Since(began).Round(time.Millisecond))
	if c.EdgePID(0) == 0 || c.EdgePID(0) == edgePID {
		t.Fatalf("edge pid %d after restart (was %d)", c.EdgePID(0), edgePID)
	}

	zero := uint64(0)
	conn := dial(t, c, 0, client.Options{Session: session, LastRxSeq: &zero})
	after := harness.ReadUntil(t, conn, 20*time.Second, func(*haip.Envelope) bool { return conn.LastSeq() >= uint64(len(before)) })
	for i := range before {
		if after[i].ID != before[i].ID || after[i].Type != before[i].Type {
			t.Fatalf("message %d: %s %s after the restart, %s %s before", i, after[i].ID, after[i].Type, before[i].ID, before[i].Type)
		}
	}
	// And the restarted topology still answers.
	askThrough(t, c, 0, 1, "and after it")
}

// Bad indexes and a second start of a running process are errors, not
// panics or duplicates.
func TestProcessControlErrors(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.KillEdge(7); err == nil {
		t.Fatal("KillEdge(7) succeeded")
	}
	if err := c.KillNode(-1); err == nil {
		t.Fatal("KillNode(-1) succeeded")
	}
	if err := c.StartToolWorker(ctx, 0); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second start of a running worker: %v", err)
	}
	if _, err := c.UserToken(""); err == nil {
		t.Fatal("token without subject")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}

// A killed edge and a restarted tool worker come back as new processes on
// the same URLs, and the topology answers again.
func TestProcessRestarts(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	edgePID, workerPID, url := c.EdgePID(1), c.ToolWorkerPID(0), c.EdgeURL(1)
	if err := c.KillEdge(1); err != nil {
		t.Fatal(err)
	}
	if c.EdgeRunning(1) || c.EdgePID(1) != 0 {
		t.Fatal("edge still running after KillEdge")
	}
	if err := c.StartEdge(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartToolWorker(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if c.EdgePID(1) == edgePID || c.ToolWorkerPID(0) == workerPID || c.EdgeURL(1) != url {
		t.Fatalf("edge pid %d (was %d) url %s (was %s), worker pid %d (was %d)",
			c.EdgePID(1), edgePID, c.EdgeURL(1), url, c.ToolWorkerPID(0), workerPID)
	}
	askThrough(t, c, 1, 0, "after the restarts")
}

func TestProbeSessionIsANameUUID(t *testing.T) {
	if got := haip.NameUUID("haipfabric", "localcluster", "probe"); got != localcluster.ProbeSession {
		t.Fatalf("ProbeSession %s, want %s", localcluster.ProbeSession, got)
	}
}
