package edge_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Attacks on the edge's limits: logs filled by clients.

// countWriter counts what is written to it.
type countWriter struct{ n atomic.Int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// Every ERROR envelope a client sent was logged at info with its whole
// payload: a 10 MB POST added 10 MB of log. Now client errors are counted
// in a metric and logged only at debug, truncated and rate-limited.
func TestAttackClientErrorFloodsLog(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	info, debug := &countWriter{}, &countWriter{}
	withLog := func(w io.Writer, level slog.Level) func(*edge.Deps) {
		return func(d *edge.Deps) {
			d.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
		}
	}
	atInfo := f.edgeWith(f.nc, edge.Config{}, withLog(info, slog.LevelInfo))
	atDebug := f.edgeWith(f.nc, edge.Config{}, withLog(debug, slog.LevelDebug))
	tok := f.token("alice", auth.RoleUser)
	const n, size = 10, 900 << 10 // under MAX_MESSAGE_BYTES each; 9 MB in one POST
	session := haip.NewUUID()
	var records [][]byte
	for range n {
		env, err := haip.New(session, haip.ChannelSystem, haip.TypeError, haip.ErrorPayload{Code: "X", Message: strings.Repeat("A", size)})
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, encode(t, env))
	}
	for _, e := range []*testEdge{atInfo, atDebug} {
		status, pr := post(t, e.base+"/haip/messages", tok, nil, records...)
		if status != http.StatusOK {
			t.Fatalf("POST: HTTP %d", status)
		}
		mustAccept(t, pr, n)
	}
	if info.n.Load() > 4<<10 || debug.n.Load() > 4<<10 {
		t.Fatalf("a POST of %d MB of client errors made %d bytes of info log and %d of debug log", n*size>>20, info.n.Load(), debug.n.Load())
	}
	for _, e := range []*testEdge{atInfo, atDebug} {
		if got := metricValue(t, e, "haip_edge_client_errors_total"); got != n {
			t.Fatalf("haip_edge_client_errors_total %v, want %d", got, n)
		}
	}
	// Over WebSocket too.
	r := rawDial(t, tokenURL(atInfo, tok))
	r.handshake()
	r.send(haip.ChannelSystem, haip.TypeError, haip.ErrorPayload{Code: "X", Message: strings.Repeat("B", size)})
	r.pingPong("after ERROR")
	if got := metricValue(t, atInfo, "haip_edge_client_errors_total"); got != n+1 {
		t.Fatalf("haip_edge_client_errors_total %v after a WebSocket ERROR, want %d", got, n+1)
	}
	if info.n.Load() > 4<<10 || debug.n.Load() > 4<<10 {
		t.Fatalf("%d MB of client errors made %d bytes of info log and %d of debug log", n*size>>20, info.n.Load(), debug.n.Load())
	}
}
