// Package clustertest adapts package localcluster to tests: a loopback
// 3-node NATS JetStream cluster (three real nats-server processes on
// 127.0.0.1, configured by the repository's nats.conf, each with its own
// store directory), or the whole topology with edges and tool workers.
// Everything is stopped and removed when the test ends; a failure in the
// harness fails the test, and a failed test logs the processes' logs.
//
// The binaries are built once per test binary from the module (nats-server
// from the github.com/nats-io/nats-server/v2 version go.mod requires).
package clustertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/localcluster"
)

// Size is the number of nodes.
const Size = localcluster.Size

// ReadyTimeout bounds how long Start, Restart and StartAll wait for the
// nodes to serve JetStream.
const ReadyTimeout = 60 * time.Second

// startTimeout bounds a whole Start: building the binaries (a cold build
// cache compiles nats-server) and waiting for readiness.
const startTimeout = 5 * time.Minute

// Cluster is a running loopback cluster of NATS nodes.
type Cluster struct {
	t testing.TB
	n *localcluster.NATS
}

// Start builds nats-server if needed, starts three nodes and waits until
// every node serves JetStream with an elected meta leader. Everything is
// stopped and removed when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// No Dir: the harness makes a temporary one (removed by Close) and
	// shares one binary cache between tests.
	n, err := localcluster.StartNATS(ctx, localcluster.Options{ReadyTimeout: ReadyTimeout})
	if err != nil {
		t.Fatalf("start NATS cluster: %v", err)
	}
	c := &Cluster{t: t, n: n}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range Size {
				logTail(t, n.Name(i), n.LogPath(i))
			}
		}
		if err := n.Close(); err != nil {
			t.Logf("stop NATS cluster: %v", err)
		}
	})
	return c
}

// StartTopology starts the whole local topology of o (see
// localcluster.Start) and closes it when the test ends. On failure it
// logs the processes' logs.
func StartTopology(t testing.TB, o localcluster.Options) *localcluster.Cluster {
	t.Helper()
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = ReadyTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := localcluster.Start(ctx, o)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		defer func() {
			if err := c.Close(); err != nil {
				t.Logf("stop cluster: %v", err)
			}
		}()
		if t.Failed() {
			n := c.NATS()
			for i := range Size {
				logTail(t, n.Name(i), n.LogPath(i))
			}
			for i := range c.Edges() {
				logTail(t, fmt.Sprintf("edge-%d", i+1), c.EdgeLogPath(i))
			}
			for i := range c.ToolWorkers() {
				logTail(t, fmt.Sprintf("toolworker-%d", i+1), c.ToolWorkerLogPath(i))
			}
		}
	})
	return c
}

// logTail logs the last lines of a process's log.
func logTail(t testing.TB, name, path string) {
	t.Logf("log of %s (last 40 lines of %s):\n%s", name, path, localcluster.TailFile(path, 40))
}

// ctx bounds one wait of a test by ReadyTimeout.
func (c *Cluster) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ReadyTimeout)
}

// NATS is the underlying harness, for what this wrapper does not offer.
func (c *Cluster) NATS() *localcluster.NATS { return c.n }

// Connect opens a client to every node (it reconnects for ever), closed
// when the test ends, and its JetStream context.
func (c *Cluster) Connect() (*nats.Conn, jetstream.JetStream) {
	c.t.Helper()
	nc, err := nats.Connect(c.ClientURLs(), nats.MaxReconnects(-1))
	if err != nil {
		c.t.Fatalf("connect to the cluster: %v", err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return nc, js
}

// ClientURLs is every node's client URL, comma-separated (for NATS_URL).
func (c *Cluster) ClientURLs() string { return c.n.URLs() }

// ClientURL is node i's client URL.
func (c *Cluster) ClientURL(i int) string { return c.n.URL(i) }

// MonitorURL is node i's monitoring base URL (http://127.0.0.1:port).
func (c *Cluster) MonitorURL(i int) string { return c.n.MonitorURL(i) }

// Name is node i's server name (nats-1, nats-2, nats-3).
func (c *Cluster) Name(i int) string { return c.n.Name(i) }

// Running reports whether node i's process is running.
func (c *Cluster) Running(i int) bool { return c.n.Running(i) }

// Kill SIGKILLs node i and waits for the process to exit.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if err := c.n.Kill(i); err != nil {
		c.t.Fatal(err)
	}
}

// Stop stops node i gracefully (SIGTERM, then SIGKILL after 15 s).
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if err := c.n.Stop(i); err != nil {
		c.t.Logf("stop %s: %v", c.n.Name(i), err)
	}
}

// Restart starts node i again with the same configuration and store
// directory (killing it first if it runs) and waits until it serves
// JetStream and is current with the cluster.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.n.Restart(ctx, i); err != nil {
		c.t.Fatalf("restart %s: %v", c.n.Name(i), err)
	}
}

// StopAll stops every node gracefully, concurrently.
func (c *Cluster) StopAll() {
	c.t.Helper()
	if err := c.n.StopAll(); err != nil {
		c.t.Logf("stop all: %v", err)
	}
}

// StartAll starts every node that is not running, then waits until all
// three serve JetStream with an elected meta leader and every stream and
// consumer has a leader.
func (c *Cluster) StartAll() {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.n.StartAll(ctx); err != nil {
		c.t.Fatalf("start all: %v", err)
	}
}

// WaitReady waits until every running node serves JetStream and knows the
// meta leader.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.n.WaitReady(ctx); err != nil {
		c.t.Fatalf("wait ready: %v", err)
	}
}

// StreamLeader returns the index of the node leading stream (in the global
// account), asking the running nodes' /jsz; ok is false when no running
// node names a leader.
func (c *Cluster) StreamLeader(stream string) (int, bool) {
	ctx, cancel := c.ctx()
	defer cancel()
	return c.n.StreamLeader(ctx, stream)
}

// WaitStreamLeader polls until stream has a leader among the running nodes
// and returns its index.
func (c *Cluster) WaitStreamLeader(stream string, within time.Duration) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	i, err := c.n.WaitStreamLeader(ctx, stream)
	if err != nil {
		c.t.Fatalf("wait for a leader of %s: %v", stream, err)
	}
	return i
}
