package llm_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/worker/llm"
	"github.com/haipfabric/haipfabric/worker/llm/llmtest"
)

// BenchmarkCoalesce streams one answer of 1,000 deltas of 4 bytes (about
// a token each) per iteration through the fake provider, the LLM agent,
// the session log and an edge to a client, for each coalescing window:
// "flat out" as fast as the fake sends (a fast local model, or the load of
// many runs at once), "200/s" paced like a fast hosted model. It reports
// the parts stored per answer and the time to the whole answer.
func BenchmarkCoalesce(b *testing.B) {
	for _, pace := range []struct {
		name  string
		delay time.Duration
		n     int
	}{{"flat-out", 0, 1000}, {"200perSec", 5 * time.Millisecond, 200}} {
		for _, w := range []struct {
			name   string
			window time.Duration
		}{{"every-delta", -1}, {"5ms", 5 * time.Millisecond}, {"25ms", 25 * time.Millisecond}, {"100ms", 100 * time.Millisecond}} {
			b.Run(pace.name+"/"+w.name, func(b *testing.B) {
				deltas := make([]string, pace.n)
				for i := range deltas {
					deltas[i] = "tok "
				}
				r := newRig(b, llm.ProviderOpenAI, func(int, llmtest.Request) llmtest.Reply { return llmtest.Reply{Text: deltas, Delay: pace.delay} },
					func(c *llm.Config) { c.FlushWindow = w.window })
				parts := 0
				b.ResetTimer()
				for b.Loop() {
					b.StopTimer()
					c := harness.Dial(b, r.e, client.Options{})
					b.StartTimer()
					if _, err := c.SendText(context.Background(), "go"); err != nil {
						b.Fatal(err)
					}
					got := harness.ReadUntil(b, c, 60*time.Second, harness.IsRunFinished)
					var text strings.Builder
					for _, e := range got {
						if e.Type == haip.TypeTextMessagePart {
							parts++
							var p haip.TextMessagePartPayload
							_ = e.DecodePayload(&p)
							text.WriteString(p.Text)
						}
					}
					if text.Len() != 4*pace.n {
						b.Fatalf("answer of %d bytes", text.Len())
					}
					b.StopTimer()
					_ = c.CloseNow()
					b.StartTimer()
				}
				b.ReportMetric(float64(parts)/float64(b.N), "parts/answer")
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/answer")
			})
		}
	}
}
