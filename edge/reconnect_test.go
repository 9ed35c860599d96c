package edge_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// behindProxy is an edge whose NATS connection goes through a proxy that
// can cut it, and a client of it that has received seq 1 of its session.
type behindProxy struct {
	f     *fabric
	proxy *natstest.Proxy
	nc    *nats.Conn // the edge's
	e     *testEdge
	c     *client.Conn
	first []*haip.Envelope
}

func newBehindProxy(t *testing.T) *behindProxy {
	t.Helper()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	b := &behindProxy{f: newFabricOn(t, ns, "", streams.Config{}), proxy: natstest.StartProxy(t, ns)}
	b.nc = b.proxy.Conn(t)
	b.e = b.f.EdgeOn(b.nc, edge.Config{})
	b.c = b.f.Dial(b.e, client.Options{})
	b.f.fill(t, b.c.Session(), 1, 16)
	b.first = harness.ReadUntil(t, b.c, 10*time.Second, func(*haip.Envelope) bool { return b.c.LastSeq() >= 1 })
	return b
}

// Live messages stored while an edge's NATS connection was down never
// reach its subscriptions. After the reconnect the edge re-reads the log
// for every live connection, so a session that went quiet meanwhile still
// shows its last messages, in order, once.
func TestNATSReconnectResyncsLiveConnections(t *testing.T) {
	t.Parallel()
	b := newBehindProxy(t)
	b.proxy.Partition()
	b.f.fill(t, b.c.Session(), 3, 16) // stored and republished while the edge is away
	b.proxy.Resume()
	testkit.Eventually(t, 10*time.Second, b.nc.IsConnected, "the edge's NATS connection did not come back")

	rest := harness.ReadUntil(t, b.c, 10*time.Second, func(*haip.Envelope) bool { return b.c.LastSeq() >= 4 })
	harness.AssertDense(t, append(b.first, rest...), 1)
	if len(b.first)+len(rest) != 4 {
		t.Fatalf("%d messages, want 4", len(b.first)+len(rest))
	}
}

// setAllowDirect turns the session stream's direct gets on or off: off,
// every catch-up read finds no responder, as during a leader election.
func setAllowDirect(t *testing.T, f *fabric, on bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := f.JS.Stream(ctx, streams.SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = on
	if _, err := f.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("AllowDirect=%v: %v", on, err)
	}
}

// A catch-up read that finds JetStream briefly unable to answer is tried
// again: the client sees a pause, not a disconnection, and gets the
// messages in order, once.
func TestCatchupRidesOutJetStreamAway(t *testing.T) {
	t.Parallel()
	b := newBehindProxy(t)
	// Messages the edge misses live, and a log it cannot read for now.
	b.proxy.Partition()
	b.f.fill(t, b.c.Session(), 3, 16)
	setAllowDirect(t, b.f, false)
	reads := metricValue(t, b.e, "haip_edge_catchup_reads_total")
	b.proxy.Resume()
	// The reconnect sends the connection to catch-up; two reads fail.
	testkit.Eventually(t, 10*time.Second, func() bool { return metricValue(t, b.e, "haip_edge_catchup_reads_total") >= reads+2 },
		"no catch-up read was tried after the reconnect")
	setAllowDirect(t, b.f, true)

	rest := harness.ReadUntil(t, b.c, 15*time.Second, func(*haip.Envelope) bool { return b.c.LastSeq() >= 4 })
	harness.AssertDense(t, append(b.first, rest...), 1)
}
