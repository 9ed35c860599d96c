package edge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// apiSessionInfo is a session as the sessions API shows it: Tarko's
// SessionInfo (times in Unix milliseconds; name and tags also inside
// metadata, where Tarko keeps them), plus what the fabric knows.
type apiSessionInfo struct {
	ID        string         `json:"id"`
	CreatedAt int64          `json:"createdAt"`
	UpdatedAt int64          `json:"updatedAt"`
	Name      string         `json:"name"`
	Tags      []string       `json:"tags"`
	Metadata  map[string]any `json:"metadata"`
	Workspace string         `json:"workspace"`
	// Details only.
	Active      *bool         `json:"active,omitempty"`
	Connections *int          `json:"connections,omitempty"`
	LastSeq     *uint64       `json:"lastSeq,omitempty"`
	LastInSeq   *uint64       `json:"lastInSeq,omitempty"`
	Runs        *apiRunCounts `json:"runs,omitempty"`
}

// apiRunCounts counts a session's runs: the active ones by status, and the
// recent finished ones the run state keeps (streams.Runs).
type apiRunCounts struct {
	Queued     int `json:"queued"`
	Running    int `json:"running"`
	Cancelling int `json:"cancelling"`
	Finished   int `json:"finished"`
	Failed     int `json:"failed"`
	Cancelled  int `json:"cancelled"`
}

func sessionInfo(rec streams.SessionRecord, lastActivity time.Time) apiSessionInfo {
	meta := make(map[string]any, len(rec.Metadata)+2)
	for k, v := range rec.Metadata {
		meta[k] = v
	}
	tags := rec.Tags
	if tags == nil {
		tags = []string{}
	}
	if rec.Name != "" {
		meta["name"] = rec.Name
	}
	if len(rec.Tags) > 0 {
		meta["tags"] = rec.Tags
	}
	updated := rec.LastUpdate()
	if lastActivity.After(updated) {
		updated = lastActivity
	}
	return apiSessionInfo{ID: rec.ID, CreatedAt: rec.Created.UnixMilli(), UpdatedAt: updated.UnixMilli(),
		Name: rec.Name, Tags: tags, Metadata: meta}
}

// apiCreateRequest is the body of POST /api/v1/sessions/create. All of it
// is optional.
type apiCreateRequest struct {
	Name     string                     `json:"name"`
	Tags     []string                   `json:"tags"`
	Metadata map[string]json.RawMessage `json:"metadata"`
}

// newSession creates a session for the caller with a fresh id.
func (s *Server) newSession(ctx context.Context, id auth.Identity, name string, tags []string, meta map[string]json.RawMessage) (streams.SessionRecord, error) {
	if ok, wait := s.limits.allow(id, limitSessions, 1); !ok {
		return streams.SessionRecord{}, &limitError{kind: limitSessions, what: "too many new sessions", retryAfter: wait}
	}
	rec := streams.SessionRecord{ID: haip.NewUUID(), Owner: id.Subject, Name: name, Tags: tags}
	if err := applyMetadata(&rec, meta); err != nil {
		return streams.SessionRecord{}, err
	}
	if err := streams.ValidateName(rec.Name); err != nil {
		return streams.SessionRecord{}, err
	}
	rec, created, err := s.sessions.Create(ctx, rec)
	if err == nil && !created {
		err = errors.New("session id taken")
	}
	return rec, err
}

// apiCreate answers POST /api/v1/sessions/create: 201 {sessionId, session}.
func (s *Server) apiCreate(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req apiCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	rec, err := s.newSession(ctx, id, req.Name, req.Tags, req.Metadata)
	if err != nil {
		s.writeNewSessionError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"sessionId": rec.ID, "session": sessionInfo(rec, time.Time{})})
}

// writeNewSessionError answers a failed session creation.
func (s *Server) writeNewSessionError(w http.ResponseWriter, err error) {
	var le *limitError
	if errors.As(err, &le) {
		writeHAIPError(w, s.refuseLimit(le.kind, le.what, le.retryAfter))
		return
	}
	s.writeRecordError(w, err, "")
}

// apiList answers GET /api/v1/sessions?limit=&cursor=&tag=: the caller's
// sessions, newest first, {sessions, nextCursor}.
func (s *Server) apiList(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > streams.MaxListLimit {
			badRequest(w, fmt.Sprintf("limit must be 1-%d", streams.MaxListLimit), map[string]any{"field": "limit"})
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	page, err := s.sessions.List(ctx, id.Subject, q.Get("tag"), q.Get("cursor"), limit)
	switch {
	case errors.Is(err, streams.ErrBadListCursor):
		badRequest(w, err.Error(), map[string]any{"field": "cursor"})
		return
	case errors.Is(err, streams.ErrBadLabel):
		badRequest(w, err.Error(), map[string]any{"field": "tag"})
		return
	case err != nil:
		s.logger.Error("list sessions", slog.Any(logKeyErr, err))
		storeFailed(w)
		return
	}
	ids := make([]string, len(page.Sessions))
	for i, rec := range page.Sessions {
		ids[i] = rec.ID
	}
	last, err := s.log.LastActivity(ctx, ids)
	if err != nil {
		s.logger.Warn("list sessions: last activity", slog.Any(logKeyErr, err))
	}
	out := make([]apiSessionInfo, len(page.Sessions))
	for i, rec := range page.Sessions {
		out[i] = sessionInfo(rec, last[rec.ID])
	}
	body := map[string]any{"sessions": out, "nextCursor": nil}
	if page.Next != "" {
		body["nextCursor"] = page.Next
	}
	writeJSON(w, http.StatusOK, body)
}

// details builds the detailed view of an authorised session.
func (s *Server) details(ctx context.Context, session string) (apiSessionInfo, error) {
	rec, found, err := s.sessions.Get(ctx, session)
	if err != nil {
		return apiSessionInfo{}, err
	}
	if !found || !rec.Deleted.IsZero() {
		return apiSessionInfo{}, streams.ErrSessionNotFound
	}
	var bounds [2]streams.Bounds
	for i, d := range []streams.Direction{streams.Out, streams.In} {
		if bounds[i], err = s.log.Bounds(ctx, session, d); err != nil {
			return apiSessionInfo{}, err
		}
	}
	runs, err := s.runs.Get(ctx, session)
	if err != nil {
		return apiSessionInfo{}, err
	}
	last, err := s.log.LastActivity(ctx, []string{session})
	if err != nil {
		return apiSessionInfo{}, err
	}
	conns := s.presence(ctx, session)
	info := sessionInfo(rec, last[session])
	var counts apiRunCounts
	for _, run := range runs.Active {
		switch run.Status {
		case streams.RunQueued:
			counts.Queued++
		case streams.RunCancelling:
			counts.Cancelling++
		default:
			counts.Running++
		}
	}
	for _, run := range runs.Recent {
		switch run.Status {
		case streams.RunCancelled:
			counts.Cancelled++
		case streams.RunError:
			counts.Failed++
		default:
			counts.Finished++
		}
	}
	active := conns > 0 || len(runs.Active) > 0
	info.Active, info.Connections, info.Runs = &active, &conns, &counts
	info.LastSeq, info.LastInSeq = &bounds[0].Last.Seq, &bounds[1].Last.Seq
	return info, nil
}

// apiDetails answers GET /api/v1/sessions/details?sessionId=: {session}
// with active, connections, lastSeq, lastInSeq and run counts.
func (s *Server) apiDetails(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	s.writeDetails(w, r, id, sessionIDOf(r), false)
}

// apiRestore answers POST /api/v1/sessions/restore {sessionId}: {success,
// session}. Sessions are never unloaded here (they live in JetStream),
// so restoring one is reading it.
func (s *Server) apiRestore(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req struct {
		SessionID string `json:"sessionId"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	s.writeDetails(w, r, id, req.SessionID, true)
}

func (s *Server) writeDetails(w http.ResponseWriter, r *http.Request, id auth.Identity, session string, success bool) {
	if !s.apiSession(w, r, id, session) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	info, err := s.details(ctx, session)
	if err != nil {
		s.writeRecordError(w, err, session)
		return
	}
	body := map[string]any{"session": info}
	if success {
		body["success"] = true
	}
	writeJSON(w, http.StatusOK, body)
}

// apiUpdateRequest is the body of POST /api/v1/sessions/update. Absent
// fields are left as they are. Metadata is merged by top-level key (a
// null value removes the key); "name" and "tags" inside it set the name
// and tags, as Tarko keeps them there.
type apiUpdateRequest struct {
	SessionID string                     `json:"sessionId"`
	Name      *string                    `json:"name"`
	Tags      *[]string                  `json:"tags"`
	Metadata  map[string]json.RawMessage `json:"metadata"`
}

// Bounds of a session's metadata.
const (
	maxMetadataKeys  = 64
	maxMetadataBytes = 16 << 10
)

// applyMetadata merges meta into rec, checking the keys agents read.
func applyMetadata(rec *streams.SessionRecord, meta map[string]json.RawMessage) error {
	if raw, ok := meta["name"]; ok {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			return fmt.Errorf("%w: metadata.name must be a string", errBadInput)
		}
		rec.Name = name
	}
	if raw, ok := meta["tags"]; ok {
		var tags []string
		if err := json.Unmarshal(raw, &tags); err != nil {
			return fmt.Errorf("%w: metadata.tags must be an array of strings", errBadInput)
		}
		rec.Tags = tags
	}
	for k, v := range meta {
		if k == "name" || k == "tags" {
			continue
		}
		if rec.Metadata == nil {
			rec.Metadata = make(map[string]json.RawMessage)
		}
		if string(v) == "null" {
			delete(rec.Metadata, k)
			continue
		}
		rec.Metadata[k] = v
	}
	if len(rec.Metadata) > maxMetadataKeys {
		return fmt.Errorf("%w: metadata has more than %d keys", errBadInput, maxMetadataKeys)
	}
	if raw, _ := json.Marshal(rec.Metadata); len(raw) > maxMetadataBytes {
		return fmt.Errorf("%w: metadata larger than %d bytes", errBadInput, maxMetadataBytes)
	}
	strict := func(key string, v any) error {
		raw, ok := rec.Metadata[key]
		if !ok {
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%w: metadata.%s: %v", errBadInput, key, err)
		}
		return nil
	}
	if err := strict(streams.MetaModelConfig, &streams.ModelConfig{}); err != nil {
		return err
	}
	return strict(streams.MetaAgentSettings, &streams.AgentSettings{})
}

// apiUpdate answers POST /api/v1/sessions/update: {session}.
func (s *Server) apiUpdate(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req apiUpdateRequest
	if !decodeBody(w, r, &req) || !s.apiSession(w, r, id, req.SessionID) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	rec, err := s.sessions.Update(ctx, req.SessionID, func(rec *streams.SessionRecord) error {
		if err := applyMetadata(rec, req.Metadata); err != nil {
			return err
		}
		if req.Name != nil {
			rec.Name = *req.Name
		}
		if req.Tags != nil {
			rec.Tags = slices.Clone(*req.Tags)
		}
		return streams.ValidateName(rec.Name)
	})
	if err != nil {
		s.writeRecordError(w, err, req.SessionID)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": sessionInfo(rec, time.Time{})})
}

// deleteRunWait bounds how long a delete waits for the session's
// cancelled runs to end before removing the log.
const deleteRunWait = 5 * time.Second

// apiDelete answers POST /api/v1/sessions/delete {sessionId}: {success}.
// The record is marked deleted first (the id can never be opened again,
// by anyone), live connections on every edge are closed (4003), running
// runs are cancelled and given deleteRunWait to end, then the logs, run
// states and queued runs are removed.
func (s *Server) apiDelete(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req struct {
		SessionID string `json:"sessionId"`
	}
	if !decodeBody(w, r, &req) || !s.apiSession(w, r, id, req.SessionID) {
		return
	}
	session := req.SessionID
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), deleteRunWait+2*resolveTimeout)
	defer cancel()
	if _, err := s.sessions.MarkDeleted(ctx, session); err != nil {
		s.writeRecordError(w, err, session)
		return
	}
	s.announceDeleted(session)
	s.endRuns(ctx, session, "session deleted")
	if err := s.fabric.PurgeSession(ctx, session); err != nil {
		s.logger.Error("delete session", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		storeFailed(w)
		return
	}
	s.logger.Info("session deleted", slog.String(logKeySession, session), slog.String(logKeySubject, id.Subject))
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

// endRuns cancels a session's active runs and waits (at most
// deleteRunWait) for them to end.
func (s *Server) endRuns(ctx context.Context, session, reason string) {
	runs, err := s.runs.Get(ctx, session)
	if err != nil || len(runs.Active) == 0 {
		return
	}
	for _, run := range runs.Active {
		if herr := s.cancelRun(ctx, session, run.RunID, reason, ""); herr == nil {
			s.publishRunCancel(run.RunID)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, deleteRunWait)
	defer cancel()
	var backoff streams.Backoff
	for backoff.Wait(wctx) {
		runs, err := s.runs.Get(wctx, session)
		if err != nil || len(runs.Active) == 0 {
			return
		}
	}
}

// apiMessage is one envelope of a conversation page.
type apiMessage struct {
	Direction streams.Direction `json:"direction"`
	Seq       uint64            `json:"seq"`
	Envelope  json.RawMessage   `json:"envelope"`
	// Binary is the binary frame stored with the envelope (two-frame
	// audio), base64.
	Binary string `json:"binary,omitempty"`
}

// apiMessages answers GET /api/v1/sessions/{session}/messages: the
// conversation, both directions in stored order.
// ?direction=forward (default: from the start) or backward (from the
// end: the newest page), ?cursor= from a page's before or after,
// ?limit= 1-1000 (default 100).
func (s *Server) apiMessages(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	session := r.PathValue("session")
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > streams.MaxConversationPage {
			badRequest(w, fmt.Sprintf("limit must be 1-%d", streams.MaxConversationPage), map[string]any{"field": "limit"})
			return
		}
		limit = n
	}
	var backward bool
	switch q.Get("direction") {
	case "", "forward":
	case "backward":
		backward = true
	default:
		badRequest(w, "direction must be forward or backward", map[string]any{"field": "direction"})
		return
	}
	if !s.apiSession(w, r, id, session) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	page, err := s.log.Conversation(ctx, session, streams.ConversationCursor(q.Get("cursor")), backward, limit)
	switch {
	case errors.Is(err, streams.ErrBadCursor):
		badRequest(w, err.Error(), map[string]any{"field": "cursor"})
		return
	case err != nil:
		s.logger.Error("conversation", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		storeFailed(w)
		return
	}
	msgs := make([]apiMessage, len(page.Entries))
	for i, e := range page.Entries {
		msgs[i] = apiMessage{Direction: e.Direction, Seq: e.Seq, Envelope: e.Data}
		if e.Bin != nil {
			msgs[i].Binary = base64.StdEncoding.EncodeToString(e.Bin)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"messages": msgs, "before": page.Before, "after": page.After,
		"hasBefore": page.HasBefore, "hasAfter": page.HasAfter,
	})
}
