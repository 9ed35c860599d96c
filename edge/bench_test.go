package edge_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Measurements of the delivery path, recorded in docs/ARCHITECTURE.md:
//
//	go test -run '^$' -bench . -benchtime 1x ./edge/

func newBenchFabric(b *testing.B) *fabric { return newFabric(b, streams.Config{}) }

// BenchmarkIdleConnections opens handshaken WebSocket connections, each on
// its own session, and reports heap and goroutines per connection. Client
// and edge share the process, so the figures count both ends.
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 1000
	tb := newBenchFabric(b)
	e := tb.edge(edge.Config{MaxConnections: conns + 10})
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		cs := make([]*client.Conn, 0, conns)
		for range conns {
			c, err := client.Dial(ctx, client.Options{URL: e.ws, Token: tb.token("alice", "user")})
			if err != nil {
				b.Fatal(err)
			}
			cs = append(cs, c)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/conns, "heap-B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/conns, "goroutines/conn")
		for _, c := range cs {
			_ = c.CloseNow()
		}
	}
}

// BenchmarkLiveDelivery measures agent append -> client receive through
// the edge for one session: messages per second and mean latency.
func BenchmarkLiveDelivery(b *testing.B) {
	tb := newBenchFabric(b)
	e := tb.edge(edge.Config{})
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Options{URL: e.ws, Token: tb.token("alice", "user")})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	lg, err := streams.OpenLog(ctx, tb.nc, tb.js)
	if err != nil {
		b.Fatal(err)
	}
	defer lg.Close(ctx)
	text := strings.Repeat("x", 200)
	done := make(chan error, 1)
	n := b.N
	start := time.Now()
	go func() {
		for c.LastSeq() < uint64(n) {
			if _, err := c.Read(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.ResetTimer()
	for range n {
		env, _ := haip.New(c.Session(), haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: c.Session(), Text: text})
		if _, err := lg.AppendEnvelope(ctx, c.Session(), streams.Out, env); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
}
