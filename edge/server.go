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
	"github.com/haipfabric/haipfabric/edge/console"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
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
	fabric   *streams.Fabric
	log      *streams.Log
	sessions *streams.Sessions
	runs     *streams.Runs
	queues   *streams.Queues
	router   *streams.Router
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
	limits       *userLimits
	// checks are the parts of the process /health reports on (AddCheck).
	checksMu sync.Mutex
	checks   map[string]func() error
	// lastSweep is when idle users' counters were last dropped (stats
	// goroutine only).
	lastSweep    time.Time
	stopStats    context.CancelFunc
	statsDone    chan struct{}
	pressureDone chan struct{}
	// natsStatus reports the NATS connection's reconnections; resyncDone
	// is closed when followReconnects has returned.
	natsStatus chan nats.Status
	resyncDone chan struct{}
	closeOnce  sync.Once
	// sessionSubs answer other edges about sessions (presence.go).
	sessionSubs []*nats.Subscription
	// drainCh is closed when Shutdown begins: long requests (state
	// streams) end on it.
	drainCh   chan struct{}
	drainOnce sync.Once
	// tickets are the browser tickets (tickets.go); ops the operator
	// view's samples (operator.go).
	tickets ticketStore
	ops     operatorState
}

// NewServer builds an edge. ctx bounds the start-up calls to JetStream.
func NewServer(ctx context.Context, cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	if deps.NC == nil || deps.JS == nil || deps.Verifier == nil {
		return nil, errors.New("cannot start edge: NC, JS and Verifier are required")
	}
	fab, err := streams.Open(ctx, deps.NC, deps.JS, &streams.Options{RunStaleAfter: time.Duration(cfg.RunStaleAfter)})
	if err != nil {
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
		_ = fab.Close(ctx)
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	statsCtx, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg:          cfg.withDefaults(),
		nc:           deps.NC,
		js:           deps.JS,
		fabric:       fab,
		log:          fab.Log(),
		sessions:     fab.Sessions().WithLimit(cfg.withDefaults().UserMaxSessions),
		runs:         fab.Runs(),
		queues:       fab.Queues(),
		router:       fab.Router(),
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
		drainCh:      make(chan struct{}),
		pressureDone: make(chan struct{}),
	}
	if err := errors.Join(s.subscribeSessions(), s.subscribeOperator()); err != nil {
		s.unsubscribeSessions()
		stop()
		_ = fab.Close(ctx)
		return nil, fmt.Errorf("cannot start edge: %w", err)
	}
	s.catchupSlots = make(chan struct{}, s.cfg.CatchupReads)
	s.limits = newUserLimits(s.cfg)
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
//	GET /haip/schema/…                          the published JSON Schemas (envelope.json, payloads/<TYPE>.json)
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
	s.apiRoutes(mux)
	mux.HandleFunc("POST /api/v1/tickets", s.serveTicket)
	s.gizmoRoutes(mux)
	console.Mount(mux, console.Options{DevToken: s.cfg.ConsoleDevToken})
	mux.HandleFunc("GET /{$}", s.serveRoot)
	mux.HandleFunc("GET /haip/schema/", s.serveSchema) // haip.SchemaPath
	mux.HandleFunc("GET /health", s.serveHealth)
	mux.Handle("GET /stats", s.operator(http.HandlerFunc(s.serveStats)))
	mux.Handle("GET /api/v1/operator/overview", s.operator(http.HandlerFunc(s.serveOverview)))
	mux.Handle("GET /metrics", s.operator(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeHTTPError(w, http.StatusNotFound, "not_found", codeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
	return s.cors(mux)
}

// Shutdown drains the edge: new connections are refused, every live
// connection is told to resume elsewhere (WebSocket close 1001 with the
// seq to resume from) after the message it is handling is stored, and
// Shutdown waits for them all. A drain still under way shortly before
// ctx ends (abortGrace) is cut: connections that have not closed are
// aborted, and Shutdown waits what is left of ctx for what their readers
// were storing, so that a message read from a client is stored before
// the edge's NATS connection goes (the rest is redelivered by the client,
// which got no ack). It returns by the time ctx ends, and is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.drainOnce.Do(func() { close(s.drainCh) })
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
	cutCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		grace := min(maxAbortGrace, time.Until(deadline)/4)
		var cancel context.CancelFunc
		cutCtx, cancel = context.WithDeadline(ctx, deadline.Add(-grace))
		defer cancel()
	}
	var err error
	select {
	case <-done:
	case <-cutCtx.Done():
		err = s.abortAll(ctx, done)
	}
	s.closeOnce.Do(func() {
		s.unsubscribeSessions()
		s.stopStats()
		<-s.statsDone
		<-s.pressureDone
		s.nc.RemoveStatusListener(s.natsStatus)
		<-s.resyncDone
		if cerr := s.fabric.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

// maxAbortGrace is the most of a Shutdown's budget kept, after the drain
// is cut, for the stores that aborted connections were making.
const maxAbortGrace = 2 * time.Second

// abortAll ends every connection now, then waits (until ctx ends) for
// them to stop: their readers finish the store in progress first.
func (s *Server) abortAll(ctx context.Context, done <-chan struct{}) error {
	s.mu.Lock()
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	select {
	case <-done:
		return fmt.Errorf("edge shutdown: drain cut short: %w", context.DeadlineExceeded)
	case <-ctx.Done():
		return fmt.Errorf("edge shutdown: %w", ctx.Err())
	}
}

// register adds a connection, which holds the slots admit reserved for
// it (freed when it ends). A draining edge refuses it.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false // the caller frees the connection's slots
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// unregister removes a connection that has ended.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
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

// sessionAccess is what a request wants of a session.
type sessionAccess int

const (
	// readSession reads what exists and never creates a session. A user
	// gets the same answer (errNoSession) for another user's session as
	// for one that does not exist, so reads tell nothing about ids.
	readSession sessionAccess = iota
	// probeSession asks, before a connection is upgraded, whether the
	// caller may open the session, without creating it: a user's session
	// that does not exist yet is claimed only once the connection is up
	// (see conn.handshake), so a refused request leaves no trace.
	probeSession
	// openSession opens a session to write to it. A user's request
	// creates a session that does not exist yet, with the user as owner.
	openSession
)

// Errors of authorize.
var (
	// errForbidden: the session belongs to another user.
	errForbidden = errors.New("session belongs to another user")
	// errNoSession: there is no session by this id that the caller may
	// use: it does not exist (agents and admins reach only sessions a
	// user has opened), or, on a user's read, it is not theirs.
	errNoSession = errors.New("no such session")
)

// authorize checks what the caller may do to a session. A user reaches
// only sessions they own (and create by opening them); agents and admins
// reach every session that exists, but never create one: writing into a
// session nobody has opened would plant messages for its first user. The
// token's allow-list claim, when present, applies first. exists reports
// whether the session's record exists (after an openSession, always).
func (s *Server) authorize(ctx context.Context, id auth.Identity, session string, acc sessionAccess) (exists bool, err error) {
	if err := streams.ValidateSessionID(session); err != nil {
		return false, err
	}
	if !id.AllowsSession(session) {
		if acc == readSession {
			return false, errNoSession
		}
		return false, errForbidden
	}
	rec, exists, err := s.sessions.Get(ctx, session)
	if err == nil && !exists && acc == openSession && !id.MayAccessAnySession() {
		// A new session: the user's allowance of them, then the claim
		// (of two racing claims, one creates; both see the same owner).
		if ok, wait := s.limits.allow(id, limitSessions, 1); !ok {
			return false, &limitError{kind: limitSessions, what: "too many new sessions", retryAfter: wait}
		}
		rec, _, err = s.sessions.Claim(ctx, session, id.Subject)
		exists = err == nil
	}
	switch {
	case err != nil:
		return false, err
	case exists && !rec.Deleted.IsZero():
		return false, errNoSession // deleted: never opened again
	case !exists && (id.MayAccessAnySession() || acc == readSession):
		return false, errNoSession
	case !exists:
		return false, nil // probe: the caller's to claim
	case id.MayAccessAnySession() || rec.Owner == id.Subject:
		return true, nil
	case acc == readSession:
		return true, errNoSession
	}
	return true, errForbidden
}

// accessError is the HAIP error for a refusal by authorize, for every
// transport and endpoint alike (nil for nil). A store failure is logged
// here and answered as INTERNAL_ERROR.
func (s *Server) accessError(err error, session string) *haip.Error {
	var le *limitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &le):
		return s.refuseLimit(le.kind, le.what, le.retryAfter)
	case errors.Is(err, errForbidden):
		return haip.Errorf(haip.CodeSessionForbidden, "session %s is not yours", session).WithDetail("session", session)
	case errors.Is(err, errNoSession):
		return haip.Errorf(haip.CodeSessionNotFound, "no session %s of yours", session).WithDetail("session", session)
	case errors.Is(err, streams.ErrInvalidSessionID):
		return haip.Errorf(haip.CodeProtocolViolation, "%v", err).WithDetail("field", "session")
	case errors.Is(err, streams.ErrSessionCap):
		return haip.Errorf(codeTooManySessions, "you have as many sessions as allowed (%d); delete some first", s.cfg.UserMaxSessions).
			WithDetail("max_sessions", s.cfg.UserMaxSessions)
	}
	s.logger.Error("authorize", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
	return haip.Errorf(haip.CodeInternalError, "session store unavailable; retry")
}

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
