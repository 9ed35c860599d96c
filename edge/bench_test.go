package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
	e := tb.Edge(edge.Config{MaxConnections: conns + 10})
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		cs := make([]*client.Conn, 0, conns)
		for range conns {
			c, err := client.Dial(ctx, client.Options{URL: e.WS, Token: tb.Token("alice", "user")})
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
	e := tb.Edge(edge.Config{})
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Options{URL: e.WS, Token: tb.Token("alice", "user")})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	lg, err := streams.OpenLog(ctx, tb.NC, tb.JS)
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

// BenchmarkToolRoundTrip measures TOOL_CALL sent by a client → TOOL_DONE
// received, through the edge, the tool work queue and 1, 2 or 4 workers
// of the built-in echo tool; calls in flight at once: 8. Reports the
// median round trip and calls per second.
func BenchmarkToolRoundTrip(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			f := newBenchFabric(b)
			for i := range workers {
				f.Tools(fmt.Sprintf("w%d", i), 8)
			}
			e := f.Edge(edge.Config{})
			const inFlight = 8
			conns := make([]*client.Conn, inFlight)
			for i := range conns {
				c, err := client.Dial(context.Background(), client.Options{URL: e.WS, Token: f.Token(fmt.Sprintf("u%d", i), "user")})
				if err != nil {
					b.Fatal(err)
				}
				defer c.CloseNow()
				conns[i] = c
			}
			var mu sync.Mutex
			var rtts []time.Duration
			var next atomic.Int64
			began := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					for next.Add(1) <= int64(b.N) {
						id := haip.NewUUID()
						start := time.Now()
						if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: id, Tool: "echo", Params: json.RawMessage(`{"message":"x"}`)}); err != nil {
							b.Error(err)
							return
						}
						for {
							env, err := c.Read(ctx)
							if err != nil {
								b.Error(err)
								return
							}
							var d haip.ToolDonePayload
							if env.Type == haip.TypeToolDone && env.DecodePayload(&d) == nil && d.CallID == id {
								break
							}
						}
						mu.Lock()
						rtts = append(rtts, time.Since(start))
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
			if len(rtts) > 0 {
				b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds())/1000, "p99-ms")
			}
			b.ReportMetric(float64(len(rtts))/time.Since(began).Seconds(), "calls/s")
		})
	}
}
