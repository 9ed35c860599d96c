package edge

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Codes of HTTP refusals that are not HAIP protocol errors.
const (
	// codeNotFound: a request for an endpoint that does not exist.
	codeNotFound haip.Code = "NOT_FOUND"
	// codeOriginNotAllowed: a browser request from an origin the edge does
	// not serve (see originPolicy).
	codeOriginNotAllowed haip.Code = "ORIGIN_NOT_ALLOWED"
	// codeForbidden: a valid token whose role may not use the endpoint.
	codeForbidden haip.Code = "FORBIDDEN"
)

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
	case haip.CodeSessionNotFound, haip.CodeRunNotFound, codeNotFound, haip.CodeToolNotFound:
		return http.StatusNotFound, "not_found"
	case codeApprovalDecided, codeApprovalExpired, codeTooManySessions:
		return http.StatusConflict, "conflict"
	case codeQueryTimeout:
		return http.StatusGatewayTimeout, "timeout"
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

// authenticate verifies the request's token (or browser ticket:
// tickets.go), answering 401 itself when it is refused.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, transport string) (auth.Identity, bool) {
	id, err := s.verifyRequest(r)
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
	// echo: the request asked for the user side too (echo.go).
	echo bool
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
// refusal itself (401, 400, 403, 404, 429, 503) when it fails. It takes
// the user's connection slot and, for a connection (any transport but
// transportPost), a MaxConnections slot: a.slot frees both, and the
// caller must hand it to a connection (newConn and serve or start) or
// free it.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, transport string) (admission, bool) {
	if s.draining.Load() {
		writeHTTPError(w, http.StatusServiceUnavailable, "shutting_down", haip.CodeServerShutdown, "edge is shutting down; connect to another edge", nil)
		return admission{}, false
	}
	id, ok := s.authenticate(w, r, transport)
	if !ok {
		return admission{}, false
	}
	// Both slots are taken here, at admission, not when a connection
	// starts running: a burst of requests would all pass a check made
	// before any of them is counted. Whoever ends the request or the
	// connection it becomes frees them (admission.slot).
	edgeSlot := transport != transportPost
	if edgeSlot && !s.reserveSlot() {
		s.metrics.refused.WithLabelValues(transport, "too_many").Inc()
		w.Header().Set("Retry-After", "5")
		writeHTTPError(w, http.StatusServiceUnavailable, "too_many_connections", haip.CodeTooManyConnections,
			"edge is at MAX_CONNECTIONS; retry later or use another edge", map[string]any{"max_connections": s.cfg.MaxConnections})
		return admission{}, false
	}
	if !s.limits.openConn(id) {
		if edgeSlot {
			s.releaseSlot()
		}
		s.metrics.refused.WithLabelValues(transport, "user_limit").Inc()
		writeHAIPError(w, s.refuseLimit(limitConnections, "too many connections of this user", 0).
			WithDetail("max_connections", s.cfg.UserMaxConnections))
		return admission{}, false
	}
	a := admission{id: id, echo: wantsEcho(r), slot: &slot{release: func() {
		s.limits.closeConn(id)
		if edgeSlot {
			s.releaseSlot()
		}
	}}}
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

// transportPost names POSTs of envelopes in metrics. A POST is a request,
// not a connection: it takes no MAX_CONNECTIONS slot (and so the one-way
// streams of a full edge can still send).
const transportPost = "post"

// reserveSlot takes one of the MaxConnections slots, or reports that
// there is none. The slot is taken here, at admission, not when the
// connection starts running: otherwise a burst of requests all pass the
// check before any of them is counted. A reserved slot is given back
// through the admission's slot.
func (s *Server) reserveSlot() bool {
	for {
		n := s.slots.Load()
		if n >= int64(s.cfg.MaxConnections) {
			return false
		}
		if s.slots.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// releaseSlot gives back a slot reserved by admit.
func (s *Server) releaseSlot() { s.slots.Add(-1) }

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
	id, ok := s.authenticate(w, r, "http")
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	tools, err := s.router.Tools().List(ctx)
	tools = s.callable(id, tools)
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
	err := s.ready(ctx)
	if err == nil {
		err = s.failedCheck()
	}
	if err != nil {
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
	// HTTPConnections is the HTTP server's open TCP connections, when
	// Server.ConnState watches them (see MaxHTTPConnections).
	HTTPConnections int64 `json:"httpConnections"`
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
		CatchupReads: s.metrics.catchupN.Load(), HTTPConnections: s.tcpConns.Load(),
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

// operator guards the operator endpoints (/stats, /metrics): they answer
// a bearer token in the Authorization header that is either a JWT with
// role admin or the configured MetricsToken (for a Prometheus scraper,
// which cannot mint JWTs). Only the header counts: a token in a URL ends
// up in access logs and browser history. No token, or a refused one, is
// 401; a valid token of another role is 403.
func (s *Server) operator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := auth.TokenFromHeader(r)
		if err == nil && s.cfg.MetricsToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.MetricsToken)) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		var id auth.Identity
		if err == nil {
			id, err = s.verifier.Verify(token)
		}
		if err != nil {
			s.metrics.refused.WithLabelValues(transportOperator, "unauthorized").Inc()
			reason := auth.ReasonOf(err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="haip-operator"`)
			writeHTTPError(w, http.StatusUnauthorized, "unauthorized", haip.CodeAuthenticationFailed,
				"operator endpoint: send Authorization: Bearer with an admin token or METRICS_TOKEN ("+reason+")", map[string]any{"reason": reason})
			return
		}
		if id.Role != auth.RoleAdmin {
			s.metrics.refused.WithLabelValues(transportOperator, "forbidden").Inc()
			writeHTTPError(w, http.StatusForbidden, "forbidden", codeForbidden,
				"operator endpoint: needs role admin, token has role "+string(id.Role), map[string]any{"role": string(id.Role)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// transportOperator names the operator endpoints in the refused metric.
const transportOperator = "operator"

// originPolicy is what the edge answers browser pages, from EnableCORS
// and CORSOrigins (see Config). A request with no Origin header (any
// non-browser client, a same-origin GET) is not a browser page's business
// and passes. A page on the edge's own origin (Origin's host is the
// request's Host) passes, with no CORS headers: it needs none. A listed
// origin passes with CORS headers and credentials; with "*" listed, any
// other origin passes with Access-Control-Allow-Origin: * and never
// credentials. Anything else, "null" (sandboxed frames, file: pages)
// always, is refused with 403 before any handler runs: a foreign page
// cannot read the answer anyway, and must not cause an effect (a stored
// message, a WebSocket, a cancelled run).
type originPolicy struct {
	enabled bool
	listed  map[string]bool // normalized origins
	any     bool            // "*" listed
}

func newOriginPolicy(cfg Config) originPolicy {
	p := originPolicy{enabled: cfg.EnableCORS, listed: make(map[string]bool)}
	for _, o := range cfg.CORSOrigins {
		if strings.TrimSpace(o) == "*" {
			p.any = true
			continue
		}
		if n, err := normalizeOrigin(o); err == nil {
			p.listed[n] = true
		}
	}
	return p
}

// corsAnswer is what to tell a browser about one request's origin.
type corsAnswer int

const (
	corsNone      corsAnswer = iota // no Origin, or the edge's own: no headers
	corsRefused                     // 403
	corsAnyOrigin                   // Access-Control-Allow-Origin: *
	corsWithCreds                   // the origin itself, with credentials
)

// check decides for a request.
func (p originPolicy) check(r *http.Request) corsAnswer {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return corsNone
	}
	n, err := normalizeOrigin(origin)
	if err != nil {
		return corsRefused // "null", or not an origin at all
	}
	u, _ := url.Parse(n)
	if strings.EqualFold(u.Host, r.Host) {
		return corsNone
	}
	switch {
	case !p.enabled:
		return corsRefused
	case p.listed[n]:
		return corsWithCreds
	case p.any:
		return corsAnyOrigin
	}
	return corsRefused
}

// normalizeOrigin returns an http(s) origin ("scheme://host[:port]") in
// lower case, without a default port or a trailing slash, or an error
// saying why s is not one.
func normalizeOrigin(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	switch {
	case err != nil:
		return "", fmt.Errorf("not a URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New(`want scheme://host[:port] with scheme http or https ("null" never matches)`)
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", errors.New("want scheme://host[:port], nothing more")
	case strings.ContainsAny(u.Host, "*?"):
		return "", errors.New(`no wildcards in an origin: list each one, or "*" alone`)
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return u.Scheme + "://" + host, nil
}

// cors applies the origin policy to every request: it refuses foreign
// origins, answers preflights of allowed ones, and sets CORS headers.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin") // the answer depends on it
		switch s.origins.check(r) {
		case corsNone:
			next.ServeHTTP(w, r)
			return
		case corsRefused:
			s.metrics.refused.WithLabelValues("http", "origin").Inc()
			writeHTTPError(w, http.StatusForbidden, "origin_not_allowed", codeOriginNotAllowed,
				"requests from this page's origin are not accepted; the edge serves its own origin and those in CORS_ORIGINS",
				map[string]any{"origin": truncate(r.Header.Get("Origin"), 256)})
			return
		case corsAnyOrigin:
			h.Set("Access-Control-Allow-Origin", "*")
		case corsWithCreds:
			h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		h.Set("Access-Control-Expose-Headers", "Content-Type")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, X-HAIP-Message, X-HAIP-Binary")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
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
	rin, rout := s.rates.rateIn, s.rates.rOut
	s.rates.mu.Unlock()
	s.ops.sample(time.Now(), rin, rout)
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
