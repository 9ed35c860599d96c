package edge

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// codeNotFound is the code of a request for an endpoint that does not
// exist: not a HAIP protocol error.
const codeNotFound haip.Code = "NOT_FOUND"

// httpError is the JSON body of every refused HTTP request.
type httpError struct {
	Error   string         `json:"error"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func writeHTTPError(w http.ResponseWriter, status int, errWord string, code haip.Code, msg string, details map[string]any) {
	if code == "" {
		code = haip.CodeProtocolViolation
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(httpError{Error: errWord, Code: string(code), Message: msg, Details: details})
}

// httpStatusOf is the HTTP status and error word of a request refused
// with a HAIP error of code c.
func httpStatusOf(c haip.Code) (int, string) {
	switch c {
	case haip.CodeSessionForbidden:
		return http.StatusForbidden, "forbidden"
	case haip.CodeSessionNotFound, haip.CodeRunNotFound, codeNotFound:
		return http.StatusNotFound, "not_found"
	case haip.CodeRateLimited:
		return http.StatusTooManyRequests, "rate_limited"
	case haip.CodeMessageTooLarge:
		return http.StatusRequestEntityTooLarge, "too_large"
	case haip.CodeAuthenticationFailed:
		return http.StatusUnauthorized, "unauthorized"
	case haip.CodeInternalError, haip.CodeServerShutdown, haip.CodeTooManyConnections:
		return http.StatusServiceUnavailable, "unavailable"
	}
	return http.StatusBadRequest, "bad_request"
}

// writeHAIPError answers a request refused with a HAIP error, with the
// status its code implies.
func writeHAIPError(w http.ResponseWriter, e *haip.Error) {
	status, word := httpStatusOf(e.Code)
	if ms, ok := e.Detail["retry_after_ms"].(int64); ok && status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.FormatInt(max(1, (ms+999)/1000), 10))
	}
	writeHTTPError(w, status, word, e.Code, e.Message, e.Detail)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// authenticate verifies the request's token, answering 401 itself when it
// is refused.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, transport string) (auth.Identity, bool) {
	id, err := s.verifier.VerifyRequest(r)
	if err != nil {
		s.metrics.refused.WithLabelValues(transport, "unauthorized").Inc()
		reason := auth.ReasonOf(err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="haip", error="invalid_token"`)
		writeHTTPError(w, http.StatusUnauthorized, "unauthorized", haip.CodeAuthenticationFailed, "token refused: "+reason, map[string]any{"reason": reason})
		return auth.Identity{}, false
	}
	return id, true
}

// admission is what a request must pass before any upgrade.
type admission struct {
	id      auth.Identity
	session string // from ?session=, or "" to bind on the first envelope
	// claim: the session does not exist yet; the connection creates it
	// (for its user) when it starts.
	claim bool
	// slot is the user's connection slot the request holds: freed when
	// the request (or the connection it became) ends.
	slot *slot
}

// slot is a connection slot held by an admitted request. free is
// idempotent and safe from any goroutine.
type slot struct {
	once    sync.Once
	release func()
}

func (sl *slot) free() {
	if sl != nil {
		sl.once.Do(sl.release)
	}
}

// admit authenticates and authorises a connection request, answering the
// refusal itself (401, 400, 403, 503) when it fails.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, transport string) (admission, bool) {
	if s.draining.Load() {
		writeHTTPError(w, http.StatusServiceUnavailable, "shutting_down", haip.CodeServerShutdown, "edge is shutting down; connect to another edge", nil)
		return admission{}, false
	}
	id, ok := s.authenticate(w, r, transport)
	if !ok {
		return admission{}, false
	}
	if int(s.active.Load()) >= s.cfg.MaxConnections {
		s.metrics.refused.WithLabelValues(transport, "too_many").Inc()
		w.Header().Set("Retry-After", "5")
		writeHTTPError(w, http.StatusServiceUnavailable, "too_many_connections", haip.CodeTooManyConnections,
			"edge is at MAX_CONNECTIONS; retry later or use another edge", map[string]any{"max_connections": s.cfg.MaxConnections})
		return admission{}, false
	}
	if !s.limits.openConn(id) {
		s.metrics.refused.WithLabelValues(transport, "user_limit").Inc()
		writeHAIPError(w, s.refuseLimit(limitConnections, "too many connections of this user", 0).
			WithDetail("max_connections", s.cfg.UserMaxConnections))
		return admission{}, false
	}
	a := admission{id: id, slot: &slot{release: func() { s.limits.closeConn(id) }}}
	if sess := r.URL.Query().Get("session"); sess != "" {
		// Checked, not claimed: a session that does not exist yet is
		// claimed by the connection's handshake, so a request refused
		// from here on claims nothing.
		ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
		exists, err := s.authorize(ctx, id, sess, probeSession)
		cancel()
		if herr := s.accessError(err, sess); herr != nil {
			reason := "forbidden"
			if herr.Code == haip.CodeProtocolViolation {
				reason = "bad_session"
			}
			s.metrics.refused.WithLabelValues(transport, reason).Inc()
			writeHAIPError(w, herr)
			a.slot.free()
			return admission{}, false
		}
		a.session, a.claim = sess, !exists
	}
	return a, true
}

func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.serveWebSocket(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":         "haip edge",
		"haip_version": haip.Version,
		"endpoints": map[string]string{
			"websocket": "/haip/websocket", "sse": "/haip/sse", "stream": "/haip/stream", "messages": "/haip/messages",
			"health": "/health", "stats": "/stats", "metrics": "/metrics",
		},
	})
}

// serveTools lists the tools with a live worker (token required).
func (s *Server) serveTools(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticate(w, r, "http"); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	tools, err := s.router.Tools().List(ctx)
	if err != nil {
		writeHTTPError(w, http.StatusServiceUnavailable, "unavailable", haip.CodeInternalError, "tool registry unavailable; retry", nil)
		return
	}
	if tools == nil {
		tools = []streams.ToolInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tools": tools})
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	body := map[string]any{
		"uptime":            time.Since(s.started).Milliseconds(),
		"activeConnections": s.active.Load(),
		"totalConnections":  s.total.Load(),
	}
	if err := s.ready(ctx); err != nil {
		body["status"] = "unavailable"
		body["error"] = err.Error()
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	if s.draining.Load() {
		body["status"] = "draining"
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	body["status"] = "ok"
	writeJSON(w, http.StatusOK, body)
}

// Stats is the /stats body. Field names follow the reference server's.
type Stats struct {
	ActiveConnections      int64   `json:"activeConnections"`
	TotalConnections       uint64  `json:"totalConnections"`
	Sessions               uint64  `json:"sessions"`
	TotalMessagesIn        uint64  `json:"totalMessagesIn"`
	TotalMessagesOut       uint64  `json:"totalMessagesOut"`
	TotalMessages          uint64  `json:"totalMessages"`
	MessagesInPerSecond    float64 `json:"messagesInPerSecond"`
	MessagesOutPerSecond   float64 `json:"messagesOutPerSecond"`
	MessagesPerSecond      float64 `json:"messagesPerSecond"`
	Uptime                 int64   `json:"uptime"`
	SlowConsumerDisconnect uint64  `json:"slowConsumerDisconnects"`
	// CatchupReads counts the bounded batch reads from JetStream of
	// connections catching up.
	CatchupReads uint64 `json:"catchupReads"`
}

// Stats returns the edge's counters now.
func (s *Server) Stats(ctx context.Context) Stats {
	in, out := s.msgsIn.Load(), s.msgsOut.Load()
	rin, rout := s.rates.get()
	st := Stats{
		ActiveConnections: s.active.Load(), TotalConnections: s.total.Load(),
		TotalMessagesIn: in, TotalMessagesOut: out, TotalMessages: in + out,
		MessagesInPerSecond: rin, MessagesOutPerSecond: rout, MessagesPerSecond: rin + rout,
		Uptime: time.Since(s.started).Milliseconds(), SlowConsumerDisconnect: s.metrics.slowCount.Load(),
		CatchupReads: s.metrics.catchupN.Load(),
	}
	if n, err := s.sessions.Count(ctx); err == nil {
		st.Sessions = n
	}
	return st
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, s.Stats(ctx))
}

// cors answers preflights and sets CORS headers when enabled.
func (s *Server) cors(next http.Handler) http.Handler {
	if !s.cfg.EnableCORS {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (len(s.cfg.CORSOrigins) == 0 || slices.Contains(s.cfg.CORSOrigins, origin)) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", "Content-Type")
			if r.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, X-HAIP-Message, X-HAIP-Binary")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// rateSampler keeps messages-per-second figures, refreshed once a second
// by the server's stats goroutine.
type rateSampler struct {
	mu           sync.Mutex
	lastIn       uint64
	lastOut      uint64
	rateIn, rOut float64
}

func (r *rateSampler) get() (float64, float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rateIn, r.rOut
}

// rateSamplePeriod is how often /stats rates are computed.
const rateSamplePeriod = time.Second

func (s *Server) sampleRates() {
	if now := time.Now(); now.Sub(s.lastSweep) >= userLimitSweep {
		s.limits.sweep(now)
		s.lastSweep = now
	}
	in, out := s.msgsIn.Load(), s.msgsOut.Load()
	s.rates.mu.Lock()
	s.rates.rateIn = float64(in-s.rates.lastIn) / rateSamplePeriod.Seconds()
	s.rates.rOut = float64(out-s.rates.lastOut) / rateSamplePeriod.Seconds()
	s.rates.lastIn, s.rates.lastOut = in, out
	s.rates.mu.Unlock()
}

// every calls fn each period until ctx ends, then closes done.
func every(ctx context.Context, period time.Duration, done chan<- struct{}, fn func()) {
	defer close(done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
