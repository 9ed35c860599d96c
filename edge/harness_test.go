package edge_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// fabric is the test kit's fabric, with what only the edge tests add to
// it (filling a log, an edge on an address of its own).
type fabric struct{ *harness.Fabric }

// testEdge is an edge of the test kit's fabric.
type testEdge = harness.Edge

func newFabric(t testing.TB, cfg streams.Config) *fabric {
	t.Helper()
	return &fabric{harness.New(t, cfg)}
}

func newFabricAt(t testing.TB, dir string, cfg streams.Config) *fabric {
	t.Helper()
	return &fabric{harness.NewAt(t, dir, cfg)}
}

// newFabricOn makes a fabric of the server ns (whose store is in dir).
func newFabricOn(t testing.TB, ns *server.Server, dir string, cfg streams.Config) *fabric {
	t.Helper()
	return &fabric{harness.NewOn(t, ns, dir, cfg)}
}

// eachTransport runs fn as a parallel subtest for each transport of the
// client (client.Transports), so a new transport inherits every test.
func eachTransport(t *testing.T, fn func(t *testing.T, tr string)) {
	t.Helper()
	for _, tr := range client.Transports() {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			fn(t, tr)
		})
	}
}
