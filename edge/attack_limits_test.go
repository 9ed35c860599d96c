package edge_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Attacks on the edge's limits: connections past MAX_CONNECTIONS, logs
// filled by clients.

// A burst of connections got past MAX_CONNECTIONS (52 of 50): the count
// was checked at admission but raised later. Now a slot is reserved at
// admission: at most MAX_CONNECTIONS of a burst are upgraded, the others
// get 503, and the slots come back when the connections end.
func TestAttackMaxConnectionsBurst(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	const max, burst = 3, 40
	e := f.edge(edge.Config{MaxConnections: max})
	url := tokenURL(e, f.token("alice", auth.RoleUser))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		open     []*websocket.Conn
		refused  atomic.Int32
		failures []string
	)
	start := make(chan struct{})
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, url, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				open = append(open, ws)
			case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
				refused.Add(1)
			default:
				failures = append(failures, err.Error())
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d dials failed otherwise: %v", len(failures), failures[0])
	}
	if len(open) > max || len(open) == 0 || int(refused.Load()) != burst-len(open) {
		t.Fatalf("%d of a burst of %d upgraded (%d refused), MAX_CONNECTIONS %d", len(open), burst, refused.Load(), max)
	}
	for _, ws := range open {
		_ = ws.CloseNow()
	}
	// Every slot comes back: MAX_CONNECTIONS connections open again.
	waitFor(t, 10*time.Second, func() bool { return e.srv.Stats(context.Background()).ActiveConnections == 0 }, "connections still active after their clients left")
	for range max {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, _, err := websocket.Dial(ctx, url, nil)
		cancel()
		if err != nil {
			t.Fatalf("a slot was not given back: %v", err)
		}
		defer ws.CloseNow()
	}
}

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
