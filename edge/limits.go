package edge

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
)

// Per-user limits. One user must not be able to take what the edge has
// for everyone: its connection slots, its share of JetStream, the agents'
// and tools' queues. Each edge counts the users it serves in memory (a
// user spread over N edges gets N times the allowance: still a bound, and
// no cross-edge round trip on the hot path). Agents and admins are
// services, not users: they are not limited here.

// limit names one per-user limit, the label of
// haip_edge_user_limit_refusals_total.
type limit string

const (
	limitConnections limit = "connections"
	limitMessages    limit = "messages"
	limitSessions    limit = "sessions"
	limitRuns        limit = "runs"
	limitToolCalls   limit = "tool_calls"
	limitReplay      limit = "replay_bytes"
	// a connection's REPLAY_REQUESTs waiting behind the one served
	limitReplaysWaiting limit = "replays_waiting"
	// in flight: counted by JetStream in the work queues, so across edges
	limitRunsInFlight      limit = "runs_in_flight"
	limitToolCallsInFlight limit = "tool_calls_in_flight"
)

// userState is one user's counters on this edge.
type userState struct {
	conns    int // live connections and POSTs in progress
	messages *rate.Limiter
	sessions *rate.Limiter
	runs     *rate.Limiter
	calls    *rate.Limiter
	replay   *rate.Limiter
}

// userLimits holds the per-user counters of one edge. Safe for concurrent
// use. Entries of users with nothing open and every allowance full are
// dropped by sweep, so memory follows the active users.
type userLimits struct {
	cfg Config // with defaults; negative limits are off

	mu    sync.Mutex
	users map[string]*userState
}

func newUserLimits(cfg Config) *userLimits {
	return &userLimits{cfg: cfg, users: make(map[string]*userState)}
}

// perInterval turns an allowance of n per interval into a limiter whose
// burst is one interval's worth (at least burstMin). A negative n is off.
func perInterval(n int, interval time.Duration, burstMin int) *rate.Limiter {
	if n < 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(float64(n)/interval.Seconds()), max(n, burstMin))
}

// state returns (creating) a user's counters; mu is held.
func (l *userLimits) state(sub string) *userState {
	u := l.users[sub]
	if u == nil {
		c := &l.cfg
		u = &userState{
			messages: perInterval(c.UserMessagesPerSecond, time.Second, 2*c.UserMessagesPerSecond),
			sessions: perInterval(c.UserSessionsPerMinute, time.Minute, 0),
			runs:     perInterval(c.UserRunsPerMinute, time.Minute, 0),
			calls:    perInterval(c.UserToolCallsPerMinute, time.Minute, 0),
			replay:   perInterval(c.UserReplayBytesPerMinute, time.Minute, int(c.MaxMessageBytes)),
		}
		l.users[sub] = u
	}
	return u
}

// limited reports whether id is subject to per-user limits.
func limited(id auth.Identity) bool { return !id.MayAccessAnySession() }

// openConn takes one of the user's connection slots; false when the user
// holds UserMaxConnections already. Every true is paired with closeConn.
func (l *userLimits) openConn(id auth.Identity) bool {
	if !limited(id) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.state(id.Subject)
	if l.cfg.UserMaxConnections >= 0 && u.conns >= l.cfg.UserMaxConnections {
		return false
	}
	u.conns++
	return true
}

// closeConn gives back a slot taken by openConn.
func (l *userLimits) closeConn(id auth.Identity) {
	if !limited(id) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.users[id.Subject]; u != nil && u.conns > 0 {
		u.conns--
	}
}

// allow spends n of the user's allowance of kind, or reports how long to
// wait before n would be allowed (and spends nothing).
func (l *userLimits) allow(id auth.Identity, kind limit, n int) (ok bool, retryAfter time.Duration) {
	if !limited(id) {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.state(id.Subject)
	var lim *rate.Limiter
	switch kind {
	case limitMessages:
		lim = u.messages
	case limitSessions:
		lim = u.sessions
	case limitRuns:
		lim = u.runs
	case limitToolCalls:
		lim = u.calls
	case limitReplay:
		lim = u.replay
	default:
		return true, 0
	}
	now := time.Now()
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return false, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops the counters of users with nothing open whose allowances
// are all full again: they would be created the same.
func (l *userLimits) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	full := func(lim *rate.Limiter) bool {
		return lim.Limit() == rate.Inf || lim.TokensAt(now) >= float64(lim.Burst())
	}
	for sub, u := range l.users {
		if u.conns == 0 && full(u.messages) && full(u.sessions) && full(u.runs) && full(u.calls) && full(u.replay) {
			delete(l.users, sub)
		}
	}
}

// size is how many users have counters (for tests and metrics).
func (l *userLimits) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users)
}

// limitError is a refusal over a per-user limit, as an error.
type limitError struct {
	kind       limit
	what       string
	retryAfter time.Duration
}

func (e *limitError) Error() string { return e.what + ": per-user limit reached" }

// refuseLimit counts a refusal and returns its error.
func (s *Server) refuseLimit(kind limit, what string, retryAfter time.Duration) *haip.Error {
	s.metrics.limited.WithLabelValues(string(kind)).Inc()
	e := haip.Errorf(haip.CodeRateLimited, "%s: per-user limit reached", what).WithDetail("limit", string(kind))
	if retryAfter > 0 {
		ms := retryAfter.Milliseconds() + 1
		e = e.WithDetail("retry_after_ms", ms)
		e.Message += "; retry in " + strconv.FormatInt(ms, 10) + " ms"
	}
	return e
}

// checkInFlight refuses a run or a tool call of a user who has as many
// queued or running as UserMaxRuns (UserMaxToolCalls) allows. The count
// is JetStream's (the user's key is in the work-queue subjects), so it
// holds across every edge; two requests racing at the limit may both
// pass, a bounded overshoot. A count that cannot be had lets the request
// through: the per-minute limits still bound it.
func (s *Server) checkInFlight(ctx context.Context, id auth.Identity, kind limit) *haip.Error {
	max := s.cfg.UserMaxRuns
	if kind == limitToolCallsInFlight {
		max = s.cfg.UserMaxToolCalls
	}
	if !limited(id) || max < 0 {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	runs, calls, err := s.queues.InFlight(qctx, id.Subject)
	cancel()
	if err != nil {
		s.logger.Warn("count work in flight", slog.Any(logKeyErr, err))
		return nil
	}
	n, what := runs, "runs"
	if kind == limitToolCallsInFlight {
		n, what = calls, "tool calls"
	}
	if n < max {
		return nil
	}
	return s.refuseLimit(kind, fmt.Sprintf("%d %s of this user queued or running", n, what), 0).WithDetail("max_in_flight", max)
}

// userLimitSweep is how often idle users' counters are dropped.
const userLimitSweep = time.Minute
