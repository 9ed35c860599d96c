package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/builtin"
)

// What consuming the work queues costs, run with
// go test -run '^$' -bench . -benchtime 1x ./worker/ (idle) or the
// default benchtime (throughput).

// idleWindow is how long BenchmarkIdleTraffic counts: two fetch expiries,
// so every poll renews its pull request within it.
const idleWindow = 2 * time.Minute

// benchFabric is an ensured embedded server for a benchmark.
func benchFabric(b *testing.B) (*server.Server, jetstream.JetStream) {
	b.Helper()
	f := harness.New(b, streams.Config{})
	return f.NS, f.JS
}

func benchAgent(b *testing.B, ns *server.Server, h worker.RunHandler, cfg worker.AgentConfig) {
	b.Helper()
	nc := natstest.Conn(b, ns)
	js, _ := jetstream.New(nc)
	a, err := worker.NewAgent(context.Background(), nc, js, h, cfg)
	if err != nil {
		b.Fatal(err)
	}
	testkit.Go(b, a.Run)
}

func benchTools(b *testing.B, ns *server.Server, tools []worker.Tool, cfg worker.ToolWorkerConfig) {
	b.Helper()
	nc := natstest.Conn(b, ns)
	js, _ := jetstream.New(nc)
	tw, err := worker.NewToolWorker(context.Background(), nc, js, tools, cfg)
	if err != nil {
		b.Fatal(err)
	}
	testkit.Go(b, tw.Run)
}

// BenchmarkIdleTraffic is what an idle process costs the server: one
// agent replica and one worker of the three built-in tools, no work. It
// reports the messages per second the server receives from them
// (pull requests, acks, registry refreshes) and sends them (heartbeats,
// expired pulls, replies).
func BenchmarkIdleTraffic(b *testing.B) {
	ns, _ := benchFabric(b)
	benchAgent(b, ns, worker.RunHandlerFunc(func(context.Context, *worker.Run) error { return nil }), worker.AgentConfig{Name: "idle"})
	benchTools(b, ns, builtin.Tools(), worker.ToolWorkerConfig{Name: "idle"})
	time.Sleep(2 * time.Second) // measurement: let start-up traffic pass
	before, err := ns.Varz(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	time.Sleep(idleWindow) // measurement window, not synchronisation
	after, err := ns.Varz(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(after.InMsgs-before.InMsgs)/idleWindow.Seconds(), "in-msgs/s")
	b.ReportMetric(float64(after.OutMsgs-before.OutMsgs)/idleWindow.Seconds(), "out-msgs/s")
}

// BenchmarkRunsOneUser is how fast one replica (Concurrency 4) takes one
// user's queued runs: with a handler that returns at once (bound by the
// fabric) and one that takes 20 ms (bound by the handler slots).
func BenchmarkRunsOneUser(b *testing.B) {
	for _, work := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("handler=%s", work), func(b *testing.B) {
			ns, js := benchFabric(b)
			for i := range b.N {
				r := streams.RunRequest{RunID: haip.NewUUID(), Session: fmt.Sprintf("s%d", i%100), Text: "hi", Created: time.Now()}
				if err := streams.PublishRun(context.Background(), js, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			benchAgent(b, ns, worker.RunHandlerFunc(func(ctx context.Context, _ *worker.Run) error { return pause(ctx, work) }),
				worker.AgentConfig{Name: "bench", Concurrency: 4})
			drained(b, js, streams.RunStream)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
		})
	}
}

// BenchmarkToolCallsOneUser is how fast one worker (Concurrency 8) takes
// one user's queued calls of a tool: returning at once, or after 20 ms.
func BenchmarkToolCallsOneUser(b *testing.B) {
	for _, work := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("handler=%s", work), func(b *testing.B) {
			ns, js := benchFabric(b)
			for i := range b.N {
				c := streams.ToolCall{CallID: haip.NewUUID(), Tool: "work", Session: fmt.Sprintf("s%d", i%100), Created: time.Now()}
				if err := streams.PublishToolCall(context.Background(), js, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			benchTools(b, ns, []worker.Tool{{Name: "work", Handler: worker.ToolHandlerFunc(func(ctx context.Context, _ *worker.Call) (any, error) {
				return "done", pause(ctx, work)
			})}}, worker.ToolWorkerConfig{Name: "bench", Concurrency: 8})
			drained(b, js, streams.ToolStream)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drained waits until every message of a work-queue stream is acked.
func drained(b *testing.B, js jetstream.JetStream, stream string) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		s, err := js.Stream(context.Background(), stream)
		if err != nil {
			b.Fatal(err)
		}
		if s.CachedInfo().State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d messages still in %s", s.CachedInfo().State.Msgs, stream)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}
