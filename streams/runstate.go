package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RunBucket holds the state of each session's runs: one key per session
// (the session id), updated by compare-and-set, so the concurrent-run
// limit holds across every edge and agent replica.
const RunBucket = "haip_runs"

// Run states. Active runs are queued, running or being cancelled; a run
// that ended keeps its final status among the session's recent runs.
const (
	RunQueued     = "QUEUED"
	RunRunning    = "RUNNING"
	RunCancelling = "CANCELLING"
	RunOK         = "OK"
	RunCancelled  = "CANCELLED"
	RunError      = "ERROR"
)

// Bounds of one session's run record.
const (
	// recentRuns is how many ended runs a session record remembers.
	recentRuns = 32
	// DefaultRunStaleAfter is how long an active run may go without a
	// heartbeat before a limit check no longer counts it (its agent died
	// and nothing took the run over).
	DefaultRunStaleAfter = 10 * time.Minute
	maxRunCAS            = 64
)

// RunState is one run as the run bucket records it.
type RunState struct {
	RunID     string    `json:"run_id"`
	Status    string    `json:"status"`
	Kind      string    `json:"kind,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	ThreadID  string    `json:"thread_id,omitempty"`
	Agent     string    `json:"agent,omitempty"`
	Created   time.Time `json:"created"`
	// Beat is the last time the run's agent said it was alive (or the
	// creation time while queued).
	Beat     time.Time `json:"beat"`
	Finished time.Time `json:"finished,omitzero"`
	// Reason says why a run was cancelled or failed.
	Reason string `json:"reason,omitempty"`
}

// Active reports whether the run has not ended.
func (r RunState) Active() bool {
	return r.Status == RunQueued || r.Status == RunRunning || r.Status == RunCancelling
}

// SessionRuns is the value stored under a session's key.
type SessionRuns struct {
	Active []RunState `json:"active"`
	Recent []RunState `json:"recent,omitempty"`
}

func (s *SessionRuns) find(runID string) (int, bool) {
	for i, r := range s.Active {
		if r.RunID == runID {
			return i, true
		}
	}
	return -1, false
}

func (s *SessionRuns) findRecent(runID string) (RunState, bool) {
	for _, r := range s.Recent {
		if r.RunID == runID {
			return r, true
		}
	}
	return RunState{}, false
}

// StaleRunReason is the reason recorded for an active run dropped because
// its agent stopped reporting (see Admit).
const StaleRunReason = "no agent reported on the run"

// ErrRunLimit is returned by Admit when the session already has as many
// active runs as its limit allows.
var ErrRunLimit = errors.New("concurrent run limit reached")

// ErrRunNotFound is returned for a run the session does not know.
var ErrRunNotFound = errors.New("run not found")

// Runs reads and updates run states in the run bucket.
type Runs struct {
	kv         jetstream.KeyValue
	staleAfter time.Duration
	now        func() time.Time
	try        time.Duration // bounds each request (attemptTimeout)
}

// OpenRuns binds to the run bucket made by Ensure. staleAfter <= 0 means
// DefaultRunStaleAfter.
func OpenRuns(ctx context.Context, js jetstream.JetStream, staleAfter time.Duration) (*Runs, error) {
	kv, err := js.KeyValue(ctx, RunBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open bucket %s: %w", RunBucket, err)
	}
	if staleAfter <= 0 {
		staleAfter = DefaultRunStaleAfter
	}
	return &Runs{kv: kv, staleAfter: staleAfter, now: time.Now, try: attemptTimeout}, nil
}

// Get returns a session's runs (empty when it has none).
func (r *Runs) Get(ctx context.Context, session string) (SessionRuns, error) {
	s, _, err := r.load(ctx, session)
	return s, err
}

// State returns one run of a session: active, or among the recent ones.
func (r *Runs) State(ctx context.Context, session, runID string) (RunState, error) {
	s, _, err := r.load(ctx, session)
	if err != nil {
		return RunState{}, err
	}
	if i, ok := s.find(runID); ok {
		return s.Active[i], nil
	}
	if st, ok := s.findRecent(runID); ok {
		return st, nil
	}
	return RunState{}, ErrRunNotFound
}

func (r *Runs) load(ctx context.Context, session string) (SessionRuns, uint64, error) {
	if err := ValidateSessionID(session); err != nil {
		return SessionRuns{}, 0, err
	}
	e, err := r.kv.Get(ctx, session)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return SessionRuns{}, 0, nil
	}
	if err != nil {
		return SessionRuns{}, 0, fmt.Errorf("cannot read runs of %s: %w", session, err)
	}
	var s SessionRuns
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return SessionRuns{}, 0, fmt.Errorf("runs of %s: %w", session, err)
	}
	return s, e.Revision(), nil
}

// update applies fn to a session's runs with compare-and-set, retrying
// lost races. fn returns false to leave the record as it is. A request
// whose outcome is unknown (a stream leader election, an ack lost with a
// dying leader) is retried with backoff for as long as ctx allows
// (publishTimeout when it sets no deadline), each bounded by r.try: fn
// then sees the record as the lost write may have left it, so fn must
// take its own earlier change for done.
func (r *Runs) update(ctx context.Context, session string, fn func(*SessionRuns) (bool, error)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishTimeout)
		defer cancel()
	}
	var backoff Backoff
	retry := func(err error) bool {
		return isUncertain(err) && ctx.Err() == nil && backoff.Wait(ctx)
	}
	for conflicts := 0; conflicts < maxRunCAS; {
		actx, cancel := attempt(ctx, r.try)
		s, rev, err := r.load(actx, session)
		cancel()
		if err != nil {
			if retry(err) {
				continue
			}
			return err
		}
		change, err := fn(&s)
		if err != nil || !change {
			return err
		}
		data, err := json.Marshal(s)
		if err != nil {
			return err
		}
		actx, cancel = attempt(ctx, r.try)
		if rev == 0 {
			_, err = r.kv.Create(actx, session, data)
		} else {
			_, err = r.kv.Update(actx, session, data, rev)
		}
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyExists) || isConflict(err):
			// Lost the race (R1 and R3 say so with different codes): read
			// the record again and redo the change.
			conflicts++
		case retry(err):
		default:
			return fmt.Errorf("cannot update runs of %s: %w", session, err)
		}
	}
	return fmt.Errorf("cannot update runs of %s: %w", session, ErrConflictLimit)
}

// Admit records a new run as queued, unless the session already has limit
// active runs (ErrRunLimit; limit <= 0 means no limit). Admitting a run
// that is already recorded changes nothing and reports it (existing);
// same, when not nil, makes an active run for which it holds count as
// this run too (an utterance's run, whichever chunk started it).
// Active runs whose heartbeat is older than the stale bound are not
// counted, and are moved to the recent runs as ERROR.
func (r *Runs) Admit(ctx context.Context, session string, run RunState, limit int, same func(RunState) bool) (existing *RunState, err error) {
	now := r.now().UTC()
	run.Status = RunQueued
	if run.Created.IsZero() {
		run.Created = now
	}
	run.Beat = now
	err = r.update(ctx, session, func(s *SessionRuns) (bool, error) {
		existing = nil
		for _, a := range s.Active {
			if a.RunID == run.RunID || same != nil && same(a) {
				existing = &a
				return false, nil
			}
		}
		if st, ok := s.findRecent(run.RunID); ok {
			existing = &st
			return false, nil
		}
		r.prune(s, now)
		if limit > 0 && len(s.Active) >= limit {
			return false, ErrRunLimit
		}
		s.Active = append(s.Active, run)
		return true, nil
	})
	return existing, err
}

// prune moves runs whose agent stopped beating to the recent list.
func (r *Runs) prune(s *SessionRuns, now time.Time) {
	kept := s.Active[:0]
	for _, a := range s.Active {
		if now.Sub(a.Beat) > r.staleAfter {
			a.Status, a.Finished, a.Reason = RunError, now, StaleRunReason
			s.pushRecent(a)
			continue
		}
		kept = append(kept, a)
	}
	s.Active = kept
}

func (s *SessionRuns) pushRecent(st RunState) {
	s.Recent = append(s.Recent, st)
	if n := len(s.Recent) - recentRuns; n > 0 {
		s.Recent = append(s.Recent[:0], s.Recent[n:]...)
	}
}

// Start marks a run as running on agent and returns its state before the
// change. A run that is not recorded (admitted by an older edge, or
// pruned) is recorded now. A run that is being cancelled stays so: the
// caller must end it as cancelled; an ended run is returned unchanged.
func (r *Runs) Start(ctx context.Context, session string, run RunState, agent string) (RunState, error) {
	now := r.now().UTC()
	var before RunState
	err := r.update(ctx, session, func(s *SessionRuns) (bool, error) {
		if st, ok := s.findRecent(run.RunID); ok {
			before = st
			return false, nil
		}
		i, ok := s.find(run.RunID)
		if !ok {
			if run.Created.IsZero() {
				run.Created = now
			}
			run.Status = RunQueued
			s.Active = append(s.Active, run)
			i = len(s.Active) - 1
		}
		before = s.Active[i]
		if s.Active[i].Status == RunQueued {
			s.Active[i].Status = RunRunning
		}
		s.Active[i].Agent, s.Active[i].Beat = agent, now
		return true, nil
	})
	return before, err
}

// Beat records that a run's agent is alive and returns the run's status
// (CANCELLING tells the agent to stop).
func (r *Runs) Beat(ctx context.Context, session, runID string) (string, error) {
	now := r.now().UTC()
	status := ""
	err := r.update(ctx, session, func(s *SessionRuns) (bool, error) {
		i, ok := s.find(runID)
		if !ok {
			if st, ok := s.findRecent(runID); ok {
				status = st.Status
				return false, nil
			}
			return false, ErrRunNotFound
		}
		status = s.Active[i].Status
		s.Active[i].Beat = now
		return true, nil
	})
	return status, err
}

// Cancel marks an active run as cancelling and returns its state before
// the change. A run that already ended is returned as it is; an unknown
// run is ErrRunNotFound.
func (r *Runs) Cancel(ctx context.Context, session, runID, reason string) (RunState, error) {
	var before RunState
	err := r.update(ctx, session, func(s *SessionRuns) (bool, error) {
		i, ok := s.find(runID)
		if !ok {
			if st, ok := s.findRecent(runID); ok {
				before = st
				return false, nil
			}
			return false, ErrRunNotFound
		}
		before = s.Active[i]
		if before.Status == RunCancelling {
			return false, nil
		}
		s.Active[i].Status, s.Active[i].Reason = RunCancelling, reason
		return true, nil
	})
	return before, err
}

// Finish ends a run with status (OK, CANCELLED or ERROR): it leaves the
// active runs and is remembered among the recent ones. It is idempotent.
func (r *Runs) Finish(ctx context.Context, session, runID, status, reason string) error {
	now := r.now().UTC()
	return r.update(ctx, session, func(s *SessionRuns) (bool, error) {
		i, ok := s.find(runID)
		if !ok {
			if _, done := s.findRecent(runID); done {
				return false, nil
			}
			s.pushRecent(RunState{RunID: runID, Status: status, Created: now, Beat: now, Finished: now, Reason: reason})
			return true, nil
		}
		st := s.Active[i]
		s.Active = append(s.Active[:i], s.Active[i+1:]...)
		st.Status, st.Finished = status, now
		if reason != "" {
			st.Reason = reason
		}
		s.pushRecent(st)
		return true, nil
	})
}

const runCancelPrefix = "haip.runcancel."

// RunCancelWildcard is the core-NATS subject an agent replica subscribes
// to for cancellations of the runs it is running.
const RunCancelWildcard = runCancelPrefix + "*"

// RunCancelSubject is the core-NATS subject on which a run's cancellation
// reaches the replica running it.
func RunCancelSubject(runID string) (string, error) {
	if !callIDPattern.MatchString(runID) {
		return "", fmt.Errorf("invalid run id %q", truncate(runID, 64))
	}
	return runCancelPrefix + runID, nil
}

// RunIDFromCancelSubject returns the run id of a run-cancel subject.
func RunIDFromCancelSubject(subj string) string { return strings.TrimPrefix(subj, runCancelPrefix) }
