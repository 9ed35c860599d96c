package edge_test

import (
	"context"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
)

// Live messages stored while an edge's NATS connection was down never
// reach its subscriptions. After the reconnect the edge re-reads the log
// for every live connection, so a session that went quiet meanwhile still
// shows its last messages, in order, once.
func TestNATSReconnectResyncsLiveConnections(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	f := newFabricOn(t, ns, "", streams.Config{})
	proxy := natstest.StartProxy(t, ns)
	nc := proxy.Conn(t)
	e := f.edgeOn(nc, edge.Config{})
	c := f.dial(e, client.Options{})
	session := c.Session()

	f.fill(t, session, 1, 16)
	first := readUntil(t, c, 10*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= 1 })

	proxy.Cut()
	natstest.Eventually(t, 10*time.Second, func() bool { return !nc.IsConnected() }, "the edge's NATS connection did not notice the cut")
	f.fill(t, session, 3, 16) // stored and republished while the edge is away
	proxy.Resume()
	natstest.Eventually(t, 10*time.Second, nc.IsConnected, "the edge's NATS connection did not come back")

	rest := readUntil(t, c, 10*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= 4 })
	assertDense(t, append(first, rest...), 1)
	if len(first)+len(rest) != 4 {
		t.Fatalf("%d messages, want 4", len(first)+len(rest))
	}
}

// setAllowDirect turns the session stream's direct gets on or off: off,
// every catch-up read finds no responder, as during a leader election.
func setAllowDirect(t *testing.T, f *fabric, on bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, streams.SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.AllowDirect = on
	if _, err := f.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("AllowDirect=%v: %v", on, err)
	}
}

// A catch-up read that finds JetStream briefly unable to answer is tried
// again: the client sees a pause, not a disconnection, and gets the
// messages in order, once.
func TestCatchupRidesOutJetStreamAway(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	f := newFabricOn(t, ns, "", streams.Config{})
	proxy := natstest.StartProxy(t, ns)
	nc := proxy.Conn(t)
	e := f.edgeOn(nc, edge.Config{})
	c := f.dial(e, client.Options{})
	session := c.Session()
	f.fill(t, session, 1, 16)
	first := readUntil(t, c, 10*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= 1 })

	// Messages the edge misses live, and a log it cannot read for now.
	proxy.Cut()
	natstest.Eventually(t, 10*time.Second, func() bool { return !nc.IsConnected() }, "the edge's NATS connection did not notice the cut")
	f.fill(t, session, 3, 16)
	setAllowDirect(t, f, false)
	reads := metricValue(t, e, "haip_edge_catchup_reads_total")
	proxy.Resume()
	// The reconnect sends the connection to catch-up; two reads fail.
	natstest.Eventually(t, 10*time.Second, func() bool { return metricValue(t, e, "haip_edge_catchup_reads_total") >= reads+2 },
		"no catch-up read was tried after the reconnect")
	setAllowDirect(t, f, true)

	rest := readUntil(t, c, 15*time.Second, func(*haip.Envelope) bool { return c.LastSeq() >= 4 })
	assertDense(t, append(first, rest...), 1)
}
