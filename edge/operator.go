package edge

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// The operator overview (GET /api/v1/operator/overview, admin token or
// MetricsToken, like /stats): every edge of the fabric with its
// connections, its messages in and out per second over the last minutes
// and its recent disconnect reasons, plus the live tools with their
// workers, the work-queue depth and the runs queued or running. The
// edge that is asked collects the others' parts over core NATS
// (streams.OperatorSubject), the way presence is asked, waiting
// operatorWait: an edge that does not answer in time is left out.
// Nothing of this is stored: each edge keeps its last rateHistory
// samples and disconnectHistory disconnects in memory.

// Bounds of the operator view.
const (
	// rateHistory is how many per-second rate samples an edge keeps (5
	// minutes).
	rateHistory = 300
	// disconnectHistory is how many recent disconnects an edge keeps.
	disconnectHistory = 32
	// operatorConnList is the most connections one edge lists.
	operatorConnList = 100
	// operatorWait is how long the overview waits for other edges.
	operatorWait = 150 * time.Millisecond
)

// operatorState is an edge's memory for the operator view. The zero
// value is ready; safe for concurrent use.
type operatorState struct {
	once sync.Once
	id   string

	mu          sync.Mutex
	rates       []RateSample // ring of rateHistory, next at rateNext
	rateNext    int
	disconnects []DisconnectRecord // ring of disconnectHistory
	discNext    int
}

// RateSample is one second of an edge's traffic.
type RateSample struct {
	At  int64   `json:"t"` // Unix milliseconds
	In  float64 `json:"in"`
	Out float64 `json:"out"`
}

// DisconnectRecord is one connection's end.
type DisconnectRecord struct {
	At        int64  `json:"at"` // Unix milliseconds
	Transport string `json:"transport"`
	Label     string `json:"label"`
	Code      int    `json:"code"`
	Reason    string `json:"reason,omitempty"`
	User      string `json:"user,omitempty"`
}

// EdgeOverview is one edge's part of the overview.
type EdgeOverview struct {
	ID                   string             `json:"id"`
	StartedAt            int64              `json:"startedAt"`
	Draining             bool               `json:"draining"`
	ActiveConnections    int64              `json:"activeConnections"`
	ByTransport          map[string]int     `json:"byTransport"`
	Connections          []ConnOverview     `json:"connections"`
	MessagesInPerSecond  float64            `json:"messagesInPerSecond"`
	MessagesOutPerSecond float64            `json:"messagesOutPerSecond"`
	Rates                []RateSample       `json:"rates"`
	Disconnects          []DisconnectRecord `json:"disconnects"`
}

// ConnOverview is one live connection.
type ConnOverview struct {
	Transport string `json:"transport"`
	User      string `json:"user"`
}

// OperatorOverview is the body of GET /api/v1/operator/overview.
type OperatorOverview struct {
	Edges      []EdgeOverview `json:"edges"`
	Tools      []ToolOverview `json:"tools"`
	QueueDepth int64          `json:"queueDepth"`
	RunsActive int64          `json:"runsActive"`
	ToolCalls  int64          `json:"toolCallsActive"`
	At         int64          `json:"at"`
}

// ToolOverview is a live tool and the workers serving it.
type ToolOverview struct {
	Name    string   `json:"name"`
	Workers []string `json:"workers"`
}

func (o *operatorState) edgeID() string {
	o.once.Do(func() { o.id = haip.NewUUID()[:8] })
	return o.id
}

// sample records one second of traffic (the stats goroutine, each
// rateSamplePeriod).
func (o *operatorState) sample(at time.Time, in, out float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := RateSample{At: at.UnixMilli(), In: in, Out: out}
	if len(o.rates) < rateHistory {
		o.rates = append(o.rates, s)
		return
	}
	o.rates[o.rateNext] = s
	o.rateNext = (o.rateNext + 1) % rateHistory
}

// disconnected records a connection's end.
func (o *operatorState) disconnected(transport, user string, d *disconnect) {
	r := DisconnectRecord{At: time.Now().UnixMilli(), Transport: transport, Label: d.label, Code: int(d.code), Reason: d.reason, User: user}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.disconnects) < disconnectHistory {
		o.disconnects = append(o.disconnects, r)
		return
	}
	o.disconnects[o.discNext] = r
	o.discNext = (o.discNext + 1) % disconnectHistory
}

// history returns the rate samples and disconnects, oldest first.
func (o *operatorState) history() ([]RateSample, []DisconnectRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rates := append(append(make([]RateSample, 0, len(o.rates)), o.rates[o.rateNext:]...), o.rates[:o.rateNext]...)
	discs := append(append(make([]DisconnectRecord, 0, len(o.disconnects)), o.disconnects[o.discNext:]...), o.disconnects[:o.discNext]...)
	return rates, discs
}

// edgeOverview is this edge's part.
func (s *Server) edgeOverview() EdgeOverview {
	rin, rout := s.rates.get()
	rates, discs := s.ops.history()
	e := EdgeOverview{
		ID: s.ops.edgeID(), StartedAt: s.started.UnixMilli(), Draining: s.draining.Load(),
		ActiveConnections: s.active.Load(), ByTransport: map[string]int{}, Connections: []ConnOverview{},
		MessagesInPerSecond: rin, MessagesOutPerSecond: rout, Rates: rates, Disconnects: discs,
	}
	s.mu.Lock()
	for c := range s.conns {
		kind := c.t.kind()
		e.ByTransport[kind]++
		if len(e.Connections) < operatorConnList {
			e.Connections = append(e.Connections, ConnOverview{Transport: kind, User: c.ident.Subject})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(e.Connections, func(a, b ConnOverview) int {
		return strings.Compare(a.Transport+"\x00"+a.User, b.Transport+"\x00"+b.User)
	})
	return e
}

// subscribeOperator starts answering other edges' overview questions.
// The subscription ends with the others (unsubscribeSessions).
func (s *Server) subscribeOperator() error {
	sub, err := s.nc.Subscribe(streams.OperatorSubject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		data, err := json.Marshal(s.edgeOverview())
		if err != nil {
			return
		}
		_ = m.Respond(data)
	})
	if err != nil {
		return err
	}
	s.sessionSubs = append(s.sessionSubs, sub)
	return nil
}

// overview collects every edge's part that answers within operatorWait,
// this edge's first, and the fabric-wide figures.
func (s *Server) overview(ctx context.Context) OperatorOverview {
	self := s.edgeOverview()
	ov := OperatorOverview{Edges: []EdgeOverview{self}, Tools: []ToolOverview{}, At: time.Now().UnixMilli()}
	inbox := s.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	if sub, err := s.nc.ChanSubscribe(inbox, ch); err == nil {
		defer func() { _ = sub.Unsubscribe() }()
		if err := s.nc.PublishRequest(streams.OperatorSubject, inbox, nil); err == nil {
			t := time.NewTimer(operatorWait)
			defer t.Stop()
		collect:
			for {
				select {
				case m := <-ch:
					var e EdgeOverview
					if json.Unmarshal(m.Data, &e) == nil && e.ID != self.ID {
						ov.Edges = append(ov.Edges, e)
					}
				case <-t.C:
					break collect
				case <-ctx.Done():
					break collect
				}
			}
		}
	}
	slices.SortFunc(ov.Edges[1:], func(a, b EdgeOverview) int { return strings.Compare(a.ID, b.ID) })
	if tools, err := s.router.Tools().List(ctx); err == nil {
		at := map[string]int{}
		for _, t := range tools {
			i, ok := at[t.Name]
			if !ok {
				i = len(ov.Tools)
				at[t.Name] = i
				ov.Tools = append(ov.Tools, ToolOverview{Name: t.Name, Workers: []string{}})
			}
			if t.Worker != "" && !slices.Contains(ov.Tools[i].Workers, t.Worker) {
				ov.Tools[i].Workers = append(ov.Tools[i].Workers, t.Worker)
			}
		}
	}
	if d, err := s.queues.Depth(ctx, resolveTimeout); err == nil {
		ov.QueueDepth = d
	}
	for name, n := range map[string]*int64{streams.RunStream: &ov.RunsActive, streams.ToolStream: &ov.ToolCalls} {
		if st, err := s.js.Stream(ctx, name); err == nil {
			if info, err := st.Info(ctx); err == nil {
				*n = int64(info.State.Msgs)
			}
		}
	}
	return ov
}

// serveOverview answers GET /api/v1/operator/overview (behind operator).
func (s *Server) serveOverview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	ov := s.overview(ctx)
	s.logger.Debug("operator overview", slog.Int("edges", len(ov.Edges)))
	writeJSON(w, http.StatusOK, ov)
}
