package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// Deps are the parts an edge is built from. NC, JS and Verifier are
// required; the edge does not close them.
type Deps struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Verifier *auth.Verifier
	// Logger receives the edge's logs; nil means silent.
	Logger *slog.Logger
	// Registerer receives the edge's Prometheus metrics, and Gatherer
	// serves /metrics; nil means a private registry of the edge's own.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
}

// Server is one edge: it serves HAIP over WebSocket (and the HTTP
// endpoints around it) on top of the JetStream topology made by
// streams.Ensure. It holds no state that matters: sessions live in
// JetStream, so any number of edges serve the same sessions.
//
// Its methods are safe for concurrent use. Shutdown stops it.
type Server struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *streams.Log
	sessions *streams.Sessions
	runs     *streams.Runs
	router   *worker.Router
	hub      *hub
	verifier *auth.Verifier
	logger   *slog.Logger
	metrics  *metrics
	origins  originPolicy
	gatherer prometheus.Gatherer
	started  time.Time

	active   atomic.Int64 // connections running
	slots    atomic.Int64 // MaxConnections slots reserved: connections running or being set up
	tcpConns atomic.Int64 // the HTTP server's open connections (ConnState)
	total    atomic.Uint64
	msgsIn   atomic.Uint64
	msgsOut  atomic.Uint64
	draining atomic.Bool

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup // one per connection

	// catchupSlots holds a token per catch-up read in flight
	// (CatchupReads).
	catchupSlots chan struct{}
	rates        rateSampler
	clientErrLog logLimiter // debug lines about clients' ERRORs
	pressure     pressure
	stopStats    context.CancelFunc
	statsDone    chan struct{}
	pressureDone chan struct{}
	// natsStatus reports the NATS connection's reconnections; resyncDone
	// is closed when followReconnects has returned.
	natsStatus chan nats.Status
	resyncDone chan struct{}
	closeOnce  sync.Once
}

// NewServer builds an edge. ctx bounds the start-up calls to JetStream.
func NewServer(ctx context.Context, cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	if deps.NC == nil || deps.JS == nil || deps.Verifier == nil {
		return nil, errors.New("cannot start edge: NC, JS and Verifier are required")
	}
	lg, err := streams.OpenLog(ctx, deps.NC, deps.JS)
	if err != nil {
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	sess, err := streams.OpenSessions(ctx, deps.JS)
	if err != nil {
		_ = lg.Close(ctx)
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	router, err := worker.NewRouter(ctx, deps.JS, lg)
	if err != nil {
		_ = lg.Close(ctx)
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	runs, err := streams.OpenRuns(ctx, deps.JS, time.Duration(cfg.RunStaleAfter))
	if err != nil {
		_ = lg.Close(ctx)
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg, gath := deps.Registerer, deps.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gath = r, r
	}
	m, err := newMetrics(reg)
	if err != nil {
		_ = lg.Close(ctx)
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	statsCtx, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg:          cfg.withDefaults(),
		nc:           deps.NC,
		js:           deps.JS,
		log:          lg,
		sessions:     sess,
		runs:         runs,
		router:       router,
		hub:          newHub(deps.NC),
		verifier:     deps.Verifier,
		logger:       logger.With(slog.String(logKeyComponent, "edge")),
		metrics:      m,
		origins:      newOriginPolicy(cfg),
		gatherer:     gath,
		started:      time.Now(),
		conns:        make(map[*conn]struct{}),
		stopStats:    stop,
		statsDone:    make(chan struct{}),
		pressureDone: make(chan struct{}),
	}
	s.catchupSlots = make(chan struct{}, s.cfg.CatchupReads)
	s.pressure.maxInflight = int64(s.cfg.MaxPendingAppends)
	s.pressure.maxDepth = int64(s.cfg.MaxQueueDepth)
	s.natsStatus, s.resyncDone = deps.NC.StatusChanged(nats.CONNECTED), make(chan struct{})
	go s.followReconnects()
	go every(statsCtx, rateSamplePeriod, s.statsDone, s.sampleRates)
	go every(statsCtx, time.Duration(s.cfg.PressureInterval), s.pressureDone, func() { s.samplePressure(statsCtx) })
	return s, nil
}

// followReconnects re-reads the log for every live connection each time
// the NATS connection is re-established (until Shutdown removes the
// listener): the live messages republished while it was down are lost to
// this edge's subscriptions, and a session that has gone quiet since
// would otherwise never show its last messages.
func (s *Server) followReconnects() {
	defer close(s.resyncDone)
	for range s.natsStatus {
		s.metrics.resyncs.Inc()
		s.logger.Info("NATS connection re-established; live connections re-read the log", slog.String("url", s.nc.ConnectedUrl()))
		s.hub.resyncAll()
	}
}

// Handler returns the HTTP handler of every endpoint:
//
//	GET /haip/websocket, GET / (with Upgrade)  HAIP over WebSocket
//	GET /haip/sse, GET /haip/stream             HAIP as Server-Sent Events
//	POST /haip/stream                           HAIP as NDJSON both ways (full or half duplex)
//	POST /haip/messages, POST /haip/sse,        envelopes sent by POST (one, an array, or NDJSON)
//	  POST /haip/stream with X-HAIP-Message
//	GET /haip/tools                             tools with a live worker, with their schemas
//	GET /haip/sessions/{session}/runs           the session's active and recent runs
//	POST /haip/sessions/{session}/runs/{run}/cancel  RUN_CANCEL over HTTP
//	GET /health                                 JetStream reachable: 200, else 503
//	GET /stats                                  connection and message counters (JSON; admin token or MetricsToken)
//	GET /metrics                                Prometheus metrics (admin token or MetricsToken)
//
// Every request from a browser page passes the origin policy first (see
// Config.CORSOrigins): a foreign origin is refused with 403.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /haip/websocket", s.serveWebSocket)
	mux.HandleFunc("GET /haip/sse", s.serveSSE)
	mux.HandleFunc("GET /haip/stream", s.serveSSE)
	mux.HandleFunc("POST /haip/stream", s.serveStream)
	mux.HandleFunc("POST /haip/sse", s.serveMessages)
	mux.HandleFunc("POST /haip/messages", s.serveMessages)
	mux.HandleFunc("GET /haip/tools", s.serveTools)
	mux.HandleFunc("GET /haip/sessions/{session}/runs", s.serveRuns)
	mux.HandleFunc("POST /haip/sessions/{session}/runs/{run}/cancel", s.serveRunCancel)
	mux.HandleFunc("GET /{$}", s.serveRoot)
	mux.HandleFunc("GET /health", s.serveHealth)
	mux.Handle("GET /stats", s.operator(http.HandlerFunc(s.serveStats)))
	mux.Handle("GET /metrics", s.operator(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeHTTPError(w, http.StatusNotFound, "not_found", codeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
	return s.cors(mux)
}

// Shutdown drains the edge: new connections are refused, every live
// connection is told to resume elsewhere (WebSocket close 1001 with the
// seq to resume from) after the message it is handling is stored, and
// Shutdown waits for them all or for ctx. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("edge shutdown: %w", ctx.Err())
		s.mu.Lock()
		for c := range s.conns {
			c.abort()
		}
		s.mu.Unlock()
	}
	s.closeOnce.Do(func() {
		s.stopStats()
		<-s.statsDone
		<-s.pressureDone
		s.nc.RemoveStatusListener(s.natsStatus)
		<-s.resyncDone
		if cerr := s.log.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

// register adds a connection, which holds the MaxConnections slot admit
// reserved for it. A draining edge refuses it and takes the slot back.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		s.releaseSlot()
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// unregister removes a connection that has ended and frees its slot.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.releaseSlot()
	s.wg.Done()
}

// Labels of connections refused by ConnState.
const (
	transportTCP             = "tcp"
	reasonMaxHTTPConnections = "max_http_connections"
)

// ConnState counts the HTTP server's open TCP connections and closes a
// new one at once when MaxHTTPConnections are open: set it as the
// http.Server's ConnState. It runs on the server's accept loop, so it
// does nothing that blocks. A connection closed here gets no answer (the
// server has not read its request yet); its client sees the connection
// end and may retry, or go to another edge.
func (s *Server) ConnState(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.metrics.httpConns.Inc()
		if s.tcpConns.Add(1) > int64(s.cfg.MaxHTTPConnections) {
			s.metrics.refused.WithLabelValues(transportTCP, reasonMaxHTTPConnections).Inc()
			_ = c.Close() // the server then reports it closed
		}
	case http.StateHijacked, http.StateClosed:
		s.tcpConns.Add(-1)
		s.metrics.httpConns.Dec()
	}
}

// authorize binds a session to the caller: a new session is created with
// the caller as owner; an existing one opens only for its owner, or for
// any agent or admin. The allow-list claim, when present, applies first.
func (s *Server) authorize(ctx context.Context, id auth.Identity, session string) error {
	if err := streams.ValidateSessionID(session); err != nil {
		return err
	}
	if !id.AllowsSession(session) {
		return errForbidden
	}
	if id.MayAccessAnySession() {
		return nil
	}
	rec, _, err := s.sessions.Claim(ctx, session, id.Subject)
	if err != nil {
		return err
	}
	if rec.Owner != id.Subject {
		return errForbidden
	}
	return nil
}

var errForbidden = errors.New("session belongs to another user")

// Attribute keys for logs.
const (
	logKeyComponent = "component"
	logKeyConn      = "conn"
	logKeySession   = "session"
	logKeySubject   = "sub"
	logKeyTransport = "transport"
	logKeyReason    = "reason"
	logKeyErr       = "err"
)
