package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// Measurements of the sessions API, recorded in docs/BENCHMARKS.md:
//
//	go test -run '^$' -bench 'API' -benchtime 1x ./edge/

// percentiles reports the p50 and p99 of ds in milliseconds.
func percentiles(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	p := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(p(0.50), name+"-p50-ms")
	b.ReportMetric(p(0.99), name+"-p99-ms")
}

// BenchmarkAPIQueryRoundTrip: a blocking query of the sessions API, from
// the request to its answer, against the same question asked over a
// WebSocket (SendText to RUN_FINISHED), alternating, in one run, with
// the demo agent answering at once.
func BenchmarkAPIQueryRoundTrip(b *testing.B) {
	const rounds = 300
	f := newBenchFabric(b)
	f.Agent(-1)
	cfg := edge.Config{}
	cfg.NoUserLimits()
	e := f.Edge(cfg)
	tok := f.Token("bench", auth.RoleUser)
	var created struct{ SessionID string }
	apiCall(b, e.Base, tok, "POST", "/api/v1/sessions/create", nil, &created)
	ws := harness.Dial(b, e, client.Options{URL: e.WS, Token: tok, Session: haip.NewUUID()})
	ctx := context.Background()
	for b.Loop() {
		var api, sock []time.Duration
		for i := range rounds {
			began := time.Now()
			var res struct{ Result string }
			if st := apiCall(b, e.Base, tok, "POST", "/api/v1/sessions/query", map[string]any{"sessionId": created.SessionID, "query": fmt.Sprint("q", i)}, &res); st != http.StatusOK {
				b.Fatalf("query: %d", st)
			}
			api = append(api, time.Since(began))
			began = time.Now()
			if _, err := ws.SendText(ctx, fmt.Sprint("q", i)); err != nil {
				b.Fatal(err)
			}
			harness.ReadUntil(b, ws, 10*time.Second, harness.IsRunFinished)
			sock = append(sock, time.Since(began))
		}
		percentiles(b, "api", api)
		percentiles(b, "ws", sock)
	}
}

// BenchmarkAPIListPage: the time of one page of GET /api/v1/sessions, the
// newest and one deep in the list (by cursor), as one user's sessions
// grow to 100, 1,000 and 10,000: it must not grow with the total.
func BenchmarkAPIListPage(b *testing.B) {
	f := newBenchFabric(b)
	e := f.Edge(edge.Config{})
	tok := f.Token("lister", auth.RoleUser)
	sessions, err := streams.OpenSessions(context.Background(), f.JS)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	made := 0
	for b.Loop() {
		for _, total := range []int{100, 1000, 10000} {
			for ; made < total; made++ {
				rec := streams.SessionRecord{ID: fmt.Sprintf("list-%05d", made), Owner: "lister", Name: fmt.Sprint("chat ", made)}
				if _, _, err := sessions.Create(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
			// The cursor of the oldest 20: found once, by paging through.
			cursor := ""
			for seen := 0; seen < total-20; {
				var page struct {
					Sessions   []map[string]any
					NextCursor *string
				}
				n := min(100, total-20-seen)
				apiCall(b, e.Base, tok, "GET", fmt.Sprintf("/api/v1/sessions?limit=%d&cursor=%s", n, cursor), nil, &page)
				seen += len(page.Sessions)
				cursor = *page.NextCursor
			}
			var newest, deep []time.Duration
			for range 50 {
				var page struct {
					Sessions   []map[string]any
					NextCursor *string
				}
				began := time.Now()
				apiCall(b, e.Base, tok, "GET", "/api/v1/sessions?limit=20", nil, &page)
				newest = append(newest, time.Since(began))
				if len(page.Sessions) != 20 {
					b.Fatalf("page of %d", len(page.Sessions))
				}
				began = time.Now()
				apiCall(b, e.Base, tok, "GET", "/api/v1/sessions?limit=20&cursor="+cursor, nil, &page)
				deep = append(deep, time.Since(began))
				if len(page.Sessions) != 20 {
					b.Fatalf("deep page of %d", len(page.Sessions))
				}
			}
			percentiles(b, fmt.Sprintf("newest-%d", total), newest)
			percentiles(b, fmt.Sprintf("deep-%d", total), deep)
		}
	}
}
