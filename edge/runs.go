package edge

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Runs as the edge sees them: it admits them against the session's limit
// (run state in the streams.RunBucket KV, shared by every edge and agent),
// queues them for the agents, and passes cancellations on. The agent
// replica running a run moves it on (worker.Agent).

// runLimit is the limit for a request: the edge's, lowered by the
// client's own max_concurrent_runs when it gave one.
func (s *Server) runLimit(client int) int {
	if client > 0 && client < s.cfg.MaxConcurrentRuns {
		return client
	}
	return s.cfg.MaxConcurrentRuns
}

// admitRun records a run as queued unless the session is at its limit
// (RUN_LIMIT_EXCEEDED). A run already recorded is returned as existing.
func (s *Server) admitRun(ctx context.Context, session string, run streams.RunState, clientLimit int, relatedID string, same func(streams.RunState) bool) (*streams.RunState, *haip.Error) {
	limit := s.runLimit(clientLimit)
	existing, err := s.runs.Admit(ctx, session, run, limit, same)
	switch {
	case errors.Is(err, streams.ErrRunLimit):
		s.metrics.runsRefused.Inc()
		return nil, haip.Errorf(haip.CodeRunLimitExceeded, "this session already has %d runs queued or running; send again when one has finished", limit).
			WithRelated(relatedID).WithDetail("max_concurrent_runs", limit)
	case err != nil:
		s.logger.Error("admit run", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		return nil, haip.Errorf(haip.CodeInternalError, "run state unavailable; send the message again").WithRelated(relatedID)
	}
	return existing, nil
}

// queueTextRun queues the run that answers a user's finished text; user
// is the sender's JWT subject.
func (s *Server) queueTextRun(ctx context.Context, session, user string, res streams.Appended, run streams.RunState, env *haip.Envelope) *haip.Error {
	text, herr := s.userText(ctx, session, res.Seq, run.MessageID)
	if herr != nil {
		_ = s.runs.Finish(ctx, session, run.RunID, streams.RunError, herr.Message)
		return herr.WithRelated(env.ID)
	}
	return s.queueRun(ctx, session, streams.RunRequest{
		RunID: run.RunID, Session: session, ThreadID: env.ThreadID, MessageID: run.MessageID,
		Text: text, Kind: streams.RunKindText, FromSeq: res.Seq, User: user, Created: time.Now().UTC(),
	}, env.ID)
}

// queueAudioRun starts the run that answers an utterance: its first
// AUDIO_CHUNK (on AUDIO_IN) starts one; the following chunks of the same
// message_id belong to it while it is active. user is the sender's JWT
// subject.
func (s *Server) queueAudioRun(ctx context.Context, session, user string, res streams.Appended, env *haip.Envelope, stored haip.Envelope, clientLimit int) *haip.Error {
	var p haip.AudioChunkPayload
	if err := stored.DecodePayload(&p); err != nil {
		return asHAIPError(err)
	}
	run := streams.RunState{RunID: haip.NameUUID("audio-run", session, env.ID), Kind: streams.RunKindAudio, MessageID: p.MessageID, ThreadID: env.ThreadID}
	existing, herr := s.admitRun(ctx, session, run, clientLimit, env.ID, func(a streams.RunState) bool {
		return a.Kind == streams.RunKindAudio && a.MessageID == p.MessageID // the utterance's run is on it
	})
	if herr != nil {
		return herr
	}
	if existing != nil && (existing.RunID != run.RunID || existing.Status != streams.RunQueued) {
		return nil // another chunk's run answers the utterance, or this one is taken
	}
	return s.queueRun(ctx, session, streams.RunRequest{
		RunID: run.RunID, Session: session, ThreadID: env.ThreadID, MessageID: p.MessageID,
		Kind: streams.RunKindAudio, FromSeq: res.Seq, User: user, Created: time.Now().UTC(),
	}, env.ID)
}

func (s *Server) queueRun(ctx context.Context, session string, req streams.RunRequest, relatedID string) *haip.Error {
	if err := streams.PublishRun(ctx, s.js, req); err != nil {
		s.logger.Error("queue run", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		return haip.Errorf(haip.CodeInternalError, "run not started; send the message again").WithRelated(relatedID)
	}
	return nil
}

// markRunCancelled records a client's RUN_CANCEL in the run's state. The
// run id is the envelope's run_id or the payload's (gap G10). An unknown
// run is RUN_NOT_FOUND, and the RUN_CANCEL is not stored.
func (s *Server) markRunCancelled(ctx context.Context, session string, env *haip.Envelope, id auth.Identity) (string, *haip.Error) {
	var p haip.RunCancelPayload
	if err := env.DecodePayload(&p); err != nil {
		return "", asHAIPError(err)
	}
	runID := p.RunID
	if runID == "" {
		runID = env.RunID
	}
	if runID == "" {
		return "", haip.Errorf(haip.CodeMissingRunID, "RUN_CANCEL names no run_id").WithRelated(env.ID)
	}
	return runID, s.cancelRun(ctx, session, runID, "cancelled by "+string(id.Role)+" "+id.Subject, env.ID)
}

// cancelRun marks a run as cancelling (an ended run is left as it is).
func (s *Server) cancelRun(ctx context.Context, session, runID, reason, relatedID string) *haip.Error {
	_, err := s.runs.Cancel(ctx, session, runID, reason)
	switch {
	case errors.Is(err, streams.ErrRunNotFound):
		return haip.Errorf(haip.CodeRunNotFound, "session has no run %s", runID).WithRelated(relatedID).WithDetail("run_id", runID)
	case err != nil:
		s.logger.Error("cancel run", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		return haip.Errorf(haip.CodeInternalError, "run state unavailable; send the cancel again").WithRelated(relatedID)
	}
	return nil
}

// publishRunCancel tells the replica running a run to stop it. A replica
// that misses it sees the CANCELLING state at its next heartbeat, and one
// that takes the run later ends it at once.
func (s *Server) publishRunCancel(runID string) {
	subj, err := streams.RunCancelSubject(runID)
	if err != nil {
		return
	}
	if err := s.nc.Publish(subj, nil); err != nil {
		s.logger.Warn("publish run cancel", slog.String("run", runID), slog.Any(logKeyErr, err))
	}
}

// serveRuns answers GET /haip/sessions/{session}/runs: the session's
// active and recent runs.
func (s *Server) serveRuns(w http.ResponseWriter, r *http.Request) {
	_, session, ok := s.sessionRequest(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	runs, err := s.runs.Get(ctx, session)
	if err != nil {
		writeHTTPError(w, http.StatusServiceUnavailable, "unavailable", haip.CodeInternalError, "run state unavailable; retry", nil)
		return
	}
	if runs.Active == nil {
		runs.Active = []streams.RunState{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": session, "active": runs.Active, "recent": runs.Recent,
		"max_concurrent_runs": s.cfg.MaxConcurrentRuns})
}

// serveRunCancel answers POST /haip/sessions/{session}/runs/{run}/cancel:
// RUN_CANCEL over plain HTTP. The cancel is stored in the session log like
// a client's, so every connection sees it. 202 with the run's state
// before the cancel; 404 RUN_NOT_FOUND for an unknown run.
func (s *Server) serveRunCancel(w http.ResponseWriter, r *http.Request) {
	if !requireJSONBody(w, r, true) {
		return
	}
	id, session, ok := s.sessionRequest(w, r)
	if !ok {
		return
	}
	runID := r.PathValue("run")
	if !haip.ValidUUID(runID) {
		writeHTTPError(w, http.StatusBadRequest, "bad_request", haip.CodeProtocolViolation, "run id must be a uuid", map[string]any{"run_id": runID})
		return
	}
	env, err := haip.New(session, haip.ChannelUser, haip.TypeRunCancel, haip.RunCancelPayload{RunID: runID})
	if err != nil {
		writeHTTPError(w, http.StatusInternalServerError, "internal", haip.CodeInternalError, err.Error(), nil)
		return
	}
	env.RunID = runID
	if id.Role == auth.RoleAgent {
		env.Channel = haip.ChannelAgent
	}
	res, herr := s.store(r.Context(), id, session, env, nil, 0)
	if herr != nil {
		status := http.StatusServiceUnavailable
		switch herr.Code {
		case haip.CodeRunNotFound:
			status = http.StatusNotFound
		case haip.CodeProtocolViolation, haip.CodeMissingRunID:
			status = http.StatusBadRequest
		}
		writeHTTPError(w, status, "refused", herr.Code, herr.Message, herr.Detail)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	st, _ := s.runs.State(ctx, session, runID)
	writeJSON(w, http.StatusAccepted, map[string]any{"session": session, "run_id": runID, "status": st.Status,
		"seq": strconv.FormatUint(res.Seq, 10)})
}

// sessionRequest authenticates a request about one session and checks the
// caller may use it; the session must exist (a user's foreign session and
// a free id answer alike: 404 SESSION_NOT_FOUND).
func (s *Server) sessionRequest(w http.ResponseWriter, r *http.Request) (auth.Identity, string, bool) {
	id, ok := s.authenticate(w, r, "http")
	if !ok {
		return id, "", false
	}
	session := r.PathValue("session")
	if err := streams.ValidateSessionID(session); err != nil {
		writeHTTPError(w, http.StatusBadRequest, "bad_request", haip.CodeProtocolViolation, err.Error(), map[string]any{"session": session})
		return id, "", false
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	// Reads, and a cancel of a run the session must already have: never
	// a reason to create the session.
	if _, err := s.authorize(ctx, id, session, readSession); err != nil {
		writeHAIPError(w, s.accessError(err, session))
		return id, "", false
	}
	return id, session, true
}
