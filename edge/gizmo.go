package edge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/wI2L/jsondiff"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
	"github.com/haipfabric/haipfabric/streams"
)

// Gizmo's runtime API, per session: the routes a Gizmo server serves,
// under the base path /gizmo/<session> (Gizmo's basePath option), so that
// a Gizmo thin client pointed there works unchanged: state over SSE with
// JSON Patch updates, invoke/abort/dispatch, run history with digests,
// and human-in-the-loop approvals. The session must exist and be the
// caller's (create it with POST /api/v1/sessions/create or any HAIP
// connection); everything is read from and written to the session's logs,
// run state and approvals, so any edge serves any session. A token goes
// in Authorization, or in ?token= for EventSource.

// gizmoRoutes registers the Gizmo API on mux.
func (s *Server) gizmoRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /gizmo/{session}/events", s.gizmo(s.gizmoEvents))
	mux.HandleFunc("GET /gizmo/{session}/stream/state", s.gizmo(s.gizmoStreamState))
	mux.HandleFunc("GET /gizmo/{session}/stream/actions", s.gizmo(s.gizmoStreamActions))
	mux.HandleFunc("GET /gizmo/{session}/state", s.gizmo(s.gizmoState))
	mux.HandleFunc("GET /gizmo/{session}/state/{slice}", s.gizmo(s.gizmoSlice))
	mux.HandleFunc("POST /gizmo/{session}/invoke", s.gizmo(s.gizmoInvoke))
	mux.HandleFunc("POST /gizmo/{session}/abort", s.gizmo(s.gizmoAbort))
	mux.HandleFunc("POST /gizmo/{session}/dispatch", s.gizmo(s.gizmoDispatch))
	mux.HandleFunc("GET /gizmo/{session}/runs", s.gizmo(s.gizmoRuns))
	mux.HandleFunc("GET /gizmo/{session}/runs/{run}", s.gizmo(s.gizmoRun))
	mux.HandleFunc("POST /gizmo/{session}/runs/{run}/cancel", s.gizmo(s.gizmoRunCancel))
	mux.HandleFunc("POST /gizmo/{session}/runs/{run}/continue", s.gizmo(s.gizmoRunContinue))
	mux.HandleFunc("GET /gizmo/{session}/.well-known/manifest.json", s.gizmo(s.gizmoManifest))
	mux.HandleFunc("GET /gizmo/{session}/contracts/actions.public.json", s.gizmo(s.gizmoContracts))
	mux.HandleFunc("GET /gizmo/{session}/approvals", s.gizmo(s.gizmoApprovals))
	mux.HandleFunc("GET /gizmo/{session}/approvals/history", s.gizmo(s.gizmoApprovalHistory))
	mux.HandleFunc("GET /gizmo/{session}/approvals/{id}", s.gizmo(s.gizmoApproval))
	mux.HandleFunc("POST /gizmo/{session}/approvals/{id}", s.gizmo(s.gizmoDecide))
}

// gizmoHandler is a Gizmo-API handler of an authorised request on a
// session.
type gizmoHandler func(w http.ResponseWriter, r *http.Request, id auth.Identity, session string)

// gizmo authenticates and authorises a request on /gizmo/<session>: a
// session that is missing or not the caller's is 404 either way.
func (s *Server) gizmo(h gizmoHandler) http.HandlerFunc {
	return s.api(func(w http.ResponseWriter, r *http.Request, id auth.Identity) {
		session := r.PathValue("session")
		if !s.apiSession(w, r, id, session) {
			return
		}
		h(w, r, id, session)
	})
}

// gizmoEvent is one event of a state stream.
type gizmoEvent struct {
	Type      string                     `json:"type"`
	Slices    map[string]json.RawMessage `json:"slices,omitempty"`
	Slice     string                     `json:"slice,omitempty"`
	Patches   jsondiff.Patch             `json:"patches,omitempty"`
	Value     json.RawMessage            `json:"value,omitempty"`
	Status    string                     `json:"status,omitempty"`
	RunID     string                     `json:"runId,omitempty"`
	Timestamp int64                      `json:"timestamp"`
}

// gizmoHeartbeat is how often a state stream says it is alive (and
// re-reads the tools and the log, in case a live wakeup was missed).
const gizmoHeartbeat = 15 * time.Second

// sseWriter writes events to a streaming response.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
}

func (s *Server) startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w), timeout: time.Duration(s.cfg.WriteTimeout)}
}

func (sw *sseWriter) event(id, name string, v any) {
	data, _ := json.Marshal(v)
	sw.buf = sse.AppendEvent(sw.buf, id, name, data)
}

func (sw *sseWriter) comment(text string) { sw.buf = sse.AppendComment(sw.buf, text) }

// flush writes what is buffered; false when the client is gone.
func (sw *sseWriter) flush() bool {
	if len(sw.buf) == 0 {
		return true
	}
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	if _, err := sw.w.Write(sw.buf); err != nil {
		return false
	}
	sw.buf = sw.buf[:0]
	return sw.rc.Flush() == nil
}

// wakeups subscribes to both live subjects of a session: a signal that
// something was stored (the log itself is then read, so a missed signal
// costs at most a heartbeat's delay).
func (s *Server) wakeups(session string) (<-chan *nats.Msg, func(), error) {
	ch := make(chan *nats.Msg, 64)
	var subs []*nats.Subscription
	stop := func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}
	for _, d := range []streams.Direction{streams.Out, streams.In} {
		subj, err := streams.LiveSubject(session, d)
		if err != nil {
			stop()
			return nil, nil, err
		}
		sub, err := s.nc.ChanSubscribe(subj, ch)
		if err != nil {
			stop()
			return nil, nil, err
		}
		subs = append(subs, sub)
	}
	return ch, stop, nil
}

// gizmoEvents answers GET /events: state.initial, then state.update (JSON
// Patch per changed slice), execution.status when the session's
// execution status changes, and heartbeat.
func (s *Server) gizmoEvents(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	s.stateStream(w, r, session, true)
}

// gizmoStreamState answers GET /stream/state: state.initial and
// state.update only.
func (s *Server) gizmoStreamState(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	s.stateStream(w, r, session, false)
}

func (s *Server) stateStream(w http.ResponseWriter, r *http.Request, session string, full bool) {
	ctx := r.Context()
	wake, stop, err := s.wakeups(session)
	if err != nil {
		storeFailed(w)
		return
	}
	defer stop()
	v, err := s.newGizmoView(ctx, session)
	if err != nil {
		s.logger.Error("gizmo state", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		storeFailed(w)
		return
	}
	sw := s.startSSE(w)
	prev := v.snapshot()
	sw.event("", "state.initial", gizmoEvent{Type: "state.initial", Slices: prev, Timestamp: gizmoNow()})
	status := v.slices[sliceExecution].(gizmoExecution)
	if full {
		sw.event("", "execution.status", gizmoEvent{Type: "execution.status", Status: status.Status, RunID: status.CurrentRunID, Timestamp: gizmoNow()})
	}
	if !sw.flush() {
		return
	}
	beat := time.NewTicker(gizmoHeartbeat)
	defer beat.Stop()
	for {
		tools := false
		select {
		case <-ctx.Done():
			return
		case <-s.drainCh:
			sw.comment("close 1001 edge shutting down")
			sw.flush()
			return
		case <-wake:
			for len(wake) > 0 {
				<-wake
			}
		case <-beat.C:
			tools = true
			if full {
				sw.event("", "heartbeat", gizmoEvent{Type: "heartbeat", Timestamp: gizmoNow()})
			} else {
				sw.comment("heartbeat")
			}
		}
		if _, err := v.advance(ctx); err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("gizmo state", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
			}
			continue
		}
		if tools {
			if err := v.refresh(ctx, false, true); err != nil && ctx.Err() == nil {
				s.logger.Warn("gizmo tools", slog.Any(logKeyErr, err))
			}
		}
		next := v.snapshot()
		for _, name := range gizmoSlices {
			ops, err := jsondiff.CompareJSON(prev[name], next[name])
			if err != nil || len(ops) == 0 {
				continue
			}
			sw.event("", "state.update", gizmoEvent{Type: "state.update", Slice: name, Patches: ops, Timestamp: gizmoNow()})
		}
		prev = next
		if now := v.slices[sliceExecution].(gizmoExecution); full && (now.Status != status.Status || now.CurrentRunID != status.CurrentRunID) {
			status = now
			sw.event("", "execution.status", gizmoEvent{Type: "execution.status", Status: now.Status, RunID: now.CurrentRunID, Timestamp: gizmoNow()})
		}
		if !sw.flush() {
			return
		}
	}
}

// gizmoAction is one entry of the action log (/stream/actions).
type gizmoAction struct {
	Type      haip.Type         `json:"type"`
	Direction streams.Direction `json:"direction"`
	Seq       uint64            `json:"seq"`
	RunID     string            `json:"runId,omitempty"`
	Envelope  json.RawMessage   `json:"envelope"`
}

// gizmoStreamActions answers GET /stream/actions: the session's action
// log, every envelope of both sides in stored order, as `action` events
// whose id is a conversation cursor: Last-Event-ID resumes after it, on
// any edge. With no Last-Event-ID it starts at the end.
func (s *Server) gizmoStreamActions(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	ctx := r.Context()
	wake, stop, err := s.wakeups(session)
	if err != nil {
		storeFailed(w)
		return
	}
	defer stop()
	cur := streams.ConversationCursor(r.Header.Get("Last-Event-ID"))
	if cur == "" {
		p, err := s.log.Conversation(ctx, session, "", true, 1)
		if err != nil {
			storeFailed(w)
			return
		}
		cur = p.After
	} else if _, err := s.log.Conversation(ctx, session, cur, false, 1); errors.Is(err, streams.ErrBadCursor) {
		badRequest(w, "Last-Event-ID is not an event id of this stream", map[string]any{"field": "Last-Event-ID"})
		return
	}
	sw := s.startSSE(w)
	sw.comment("actions")
	if !sw.flush() {
		return
	}
	beat := time.NewTicker(gizmoHeartbeat)
	defer beat.Stop()
	for {
		for more := true; more; {
			p, err := s.log.Conversation(ctx, session, cur, false, streams.MaxConversationPage)
			if err != nil {
				break
			}
			at := cur
			for _, e := range p.Entries {
				env, err := haip.Decode(e.Data)
				if err != nil {
					continue
				}
				next := streams.CursorAfter(at, e)
				at = next
				sw.event(string(next), "action", gizmoAction{Type: env.Type, Direction: e.Direction, Seq: e.Seq, RunID: env.RunID, Envelope: e.Data})
			}
			cur, more = p.After, p.HasAfter
			if !sw.flush() {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.drainCh:
			return
		case <-wake:
			for len(wake) > 0 {
				<-wake
			}
		case <-beat.C:
			sw.comment("heartbeat")
			if !sw.flush() {
				return
			}
		}
	}
}

// gizmoState answers GET /state: every slice.
func (s *Server) gizmoState(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	v, err := s.newGizmoView(r.Context(), session)
	if err != nil {
		storeFailed(w)
		return
	}
	writeJSON(w, http.StatusOK, v.snapshot())
}

// gizmoSlice answers GET /state/{slice}.
func (s *Server) gizmoSlice(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	name := r.PathValue("slice")
	if !slices.Contains(gizmoSlices, name) {
		writeHTTPError(w, http.StatusNotFound, "not_found", codeNotFound, "no slice "+truncate(name, 64)+"; slices are "+strings.Join(gizmoSlices, ", "), map[string]any{"slices": gizmoSlices})
		return
	}
	v, err := s.newGizmoView(r.Context(), session)
	if err != nil {
		storeFailed(w)
		return
	}
	writeJSON(w, http.StatusOK, v.snapshot()[name])
}

// gizmoInvokeRequest is the body of POST /invoke: input is text (a
// string, {text}, or Tarko's content parts).
type gizmoInvokeRequest struct {
	Input     json.RawMessage `json:"input"`
	MessageID string          `json:"messageId"`
}

// inputText reads an invoke's input.
func inputText(raw json.RawMessage) (json.RawMessage, error) {
	var obj struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Text != nil {
		return json.Marshal(*obj.Text)
	}
	return raw, nil
}

// gizmoInvoke answers POST /invoke {input}: a run on the input, 202
// {ok, runId, messageId, status}.
func (s *Server) gizmoInvoke(w http.ResponseWriter, r *http.Request, id auth.Identity, session string) {
	var req gizmoInvokeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s.invoke(w, r, id, session, req.Input, req.MessageID)
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request, id auth.Identity, session string, input json.RawMessage, msgID string) {
	q, err := inputText(input)
	if err != nil {
		badRequest(w, "input must be text", map[string]any{"field": "input"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	sub, herr := s.submitQuery(ctx, id, session, apiQueryRequest{SessionID: session, Query: q, MessageID: msgID})
	if herr != nil {
		if herr.Code == codeBadRequest {
			herr.Detail["field"] = "input"
		}
		writeHAIPError(w, herr)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"ok": true, "runId": sub.runID, "messageId": sub.messageID, "status": "queued"})
}

// gizmoAbort answers POST /abort: RUN_CANCEL for the session's active
// runs, {ok, aborted}.
func (s *Server) gizmoAbort(w http.ResponseWriter, r *http.Request, id auth.Identity, session string) {
	n, herr := s.abortRuns(r.Context(), id, session, "")
	if herr != nil {
		writeHAIPError(w, herr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "aborted": n})
}

// gizmoDispatchRequest is the body of POST /dispatch: one action of the
// public contract (contracts/actions.public.json).
type gizmoDispatchRequest struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// gizmoDispatch answers POST /dispatch {type, payload}.
func (s *Server) gizmoDispatch(w http.ResponseWriter, r *http.Request, id auth.Identity, session string) {
	var req gizmoDispatchRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var p struct {
		Input     json.RawMessage `json:"input"`
		MessageID string          `json:"messageId"`
		RunID     string          `json:"runId"`
		ID        string          `json:"id"`
		Decision  string          `json:"decision"`
		Comment   string          `json:"comment"`
	}
	if len(req.Payload) > 0 && json.Unmarshal(req.Payload, &p) != nil {
		badRequest(w, "payload must be an object", map[string]any{"field": "payload"})
		return
	}
	switch req.Type {
	case "invoke":
		s.invoke(w, r, id, session, p.Input, p.MessageID)
	case "abort", "run.cancel":
		n, herr := s.abortRuns(r.Context(), id, session, p.RunID)
		if herr != nil {
			writeHAIPError(w, herr)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "aborted": n})
	case "approval.decide":
		s.decide(w, r, id, session, p.ID, approvalDecision{Decision: p.Decision, Comment: p.Comment})
	default:
		badRequest(w, "unknown action type "+strconvQuote(req.Type)+"; see contracts/actions.public.json", map[string]any{"field": "type"})
	}
}

func strconvQuote(s string) string { return strconv.Quote(truncate(s, 64)) }

// abortRuns stores RUN_CANCEL for the session's active runs (one run
// when runID is set) and returns how many it cancelled.
func (s *Server) abortRuns(ctx context.Context, id auth.Identity, session, runID string) (int, *haip.Error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	runs, err := s.runs.Get(ctx, session)
	if err != nil {
		return 0, haip.Errorf(haip.CodeInternalError, "run state unavailable; retry")
	}
	n, found := 0, runID == ""
	for _, run := range runs.Active {
		if runID != "" && run.RunID != runID {
			continue
		}
		found = true
		env, err := haip.New(session, haip.ChannelSystem, haip.TypeRunCancel, haip.RunCancelPayload{RunID: run.RunID})
		if err != nil {
			continue
		}
		env.RunID, env.ID = run.RunID, haip.NameUUID("abort", session, run.RunID)
		if _, herr := s.store(ctx, id, session, env, nil, 0); herr != nil {
			if herr.Code == haip.CodeRunNotFound {
				continue
			}
			return n, herr
		}
		n++
	}
	if !found {
		return 0, haip.Errorf(haip.CodeRunNotFound, "session has no active run %s", runID).WithDetail("run_id", runID)
	}
	return n, nil
}

// gizmoRuns answers GET /runs?status=&limit=: the session's active and
// recent runs, newest first.
func (s *Server) gizmoRuns(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			badRequest(w, "limit must be 1-100", map[string]any{"field": "limit"})
			return
		}
		limit = n
	}
	var want []string
	if st := q.Get("status"); st != "" {
		for _, x := range strings.Split(st, ",") {
			want = append(want, strings.ToUpper(strings.TrimSpace(x)))
		}
	}
	ex, err := s.gizmoExecution(r.Context(), session, nil)
	if err != nil {
		storeFailed(w)
		return
	}
	out := []gizmoRun{}
	for _, run := range ex.Runs {
		if len(want) > 0 && !slices.Contains(want, run.Status) {
			continue
		}
		if len(out) < limit {
			out = append(out, run)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": out})
}

// gizmoRunBundle is a run with its action log: what GET /runs/{run}
// answers, and what its digest covers.
type gizmoRunBundle struct {
	Run     gizmoRun      `json:"run"`
	Actions []gizmoAction `json:"actions"`
}

// gizmoRunScan bounds how far back GET /runs/{run} looks for the run's
// actions.
const gizmoRunScan = 20_000

// gizmoRun answers GET /runs/{run}: the run, its action log (the user's
// message that started it and every envelope carrying its run_id, in
// stored order) and digest, the SHA-256 of the bundle's JSON.
func (s *Server) gizmoRun(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	runID := r.PathValue("run")
	ctx := r.Context()
	st, err := s.runs.State(ctx, session, runID)
	if errors.Is(err, streams.ErrRunNotFound) {
		writeHAIPError(w, haip.Errorf(haip.CodeRunNotFound, "session has no run %s", runID).WithDetail("run_id", runID))
		return
	}
	if err != nil {
		storeFailed(w)
		return
	}
	bundle := gizmoRunBundle{Run: toGizmoRun(st), Actions: []gizmoAction{}}
	cur, read := streams.ConversationCursor(""), 0
	var found []gizmoAction
	for read < gizmoRunScan {
		p, err := s.log.Conversation(ctx, session, cur, true, streams.MaxConversationPage)
		if err != nil {
			storeFailed(w)
			return
		}
		started := false
		for i := len(p.Entries) - 1; i >= 0; i-- {
			e := p.Entries[i]
			env, err := haip.Decode(e.Data)
			if err != nil {
				continue
			}
			mine := env.RunID == runID
			if !mine && e.Direction == streams.In && st.MessageID != "" {
				var m struct {
					MessageID string `json:"message_id"`
				}
				mine = json.Unmarshal(env.Payload, &m) == nil && m.MessageID == st.MessageID
			}
			if mine {
				found = append(found, gizmoAction{Type: env.Type, Direction: e.Direction, Seq: e.Seq, RunID: env.RunID, Envelope: e.Data})
			}
			if env.RunID == runID && env.Type == haip.TypeRunStarted {
				started = true
			}
		}
		read += len(p.Entries)
		if !p.HasBefore || (started && st.MessageID == "") {
			break
		}
		if started && len(found) > 0 && found[len(found)-1].Direction == streams.In {
			break
		}
		cur = p.Before
	}
	slices.Reverse(found)
	bundle.Actions = append(bundle.Actions, found...)
	raw, _ := json.Marshal(bundle)
	sum := sha256.Sum256(raw)
	writeJSON(w, http.StatusOK, map[string]any{"run": bundle.Run, "actions": bundle.Actions, "digest": "sha256:" + hex.EncodeToString(sum[:])})
}

// gizmoRunCancel answers POST /runs/{run}/cancel.
func (s *Server) gizmoRunCancel(w http.ResponseWriter, r *http.Request, id auth.Identity, session string) {
	n, herr := s.abortRuns(r.Context(), id, session, r.PathValue("run"))
	if herr != nil {
		writeHAIPError(w, herr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "cancelled": n > 0})
}

// gizmoRunContinue answers POST /runs/{run}/continue {input?}: a new run
// that goes on from an ended one (its input, or "continue"); 409 while the
// run is still active.
func (s *Server) gizmoRunContinue(w http.ResponseWriter, r *http.Request, id auth.Identity, session string) {
	var req gizmoInvokeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	runID := r.PathValue("run")
	st, err := s.runs.State(r.Context(), session, runID)
	switch {
	case errors.Is(err, streams.ErrRunNotFound):
		writeHAIPError(w, haip.Errorf(haip.CodeRunNotFound, "session has no run %s", runID).WithDetail("run_id", runID))
		return
	case err != nil:
		storeFailed(w)
		return
	case st.Active():
		writeHTTPError(w, http.StatusConflict, "conflict", haip.CodeRunLimitExceeded, "run "+runID+" has not ended; continue it once it has", map[string]any{"run_id": runID, "status": st.Status})
		return
	}
	input := req.Input
	if len(input) == 0 {
		input = json.RawMessage(`"continue"`)
	}
	s.invoke(w, r, id, session, input, req.MessageID)
}

// gizmoApprovals answers GET /approvals: the pending requests.
func (s *Server) gizmoApprovals(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	pending, err := s.pendingApprovals(r.Context(), session)
	if err != nil {
		storeFailed(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": pending})
}

// gizmoApprovalHistory answers GET /approvals/history: the decided,
// expired and cancelled ones, newest decision first.
func (s *Server) gizmoApprovalHistory(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	all, err := s.fabric.Approvals().List(r.Context(), session)
	if err != nil {
		storeFailed(w)
		return
	}
	done := []streams.Approval{}
	for _, ap := range all {
		if ap.Decided() {
			done = append(done, ap)
		}
	}
	slices.SortFunc(done, func(a, b streams.Approval) int { return b.DecidedAt.Compare(a.DecidedAt) })
	writeJSON(w, http.StatusOK, map[string]any{"approvals": done})
}

// gizmoApproval answers GET /approvals/{id}.
func (s *Server) gizmoApproval(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	ap, err := s.fabric.Approvals().Get(r.Context(), session, r.PathValue("id"))
	switch {
	case errors.Is(err, streams.ErrApprovalNotFound), errors.Is(err, streams.ErrInvalidSessionID):
		writeHTTPError(w, http.StatusNotFound, "not_found", codeNotFound, "no approval "+truncate(r.PathValue("id"), 64)+" in this session", nil)
		return
	case err != nil:
		storeFailed(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"approval": ap})
}

// gizmoDecide answers POST /approvals/{id} {decision: approve|reject,
// comment}: {ok, approval}; 409 APPROVAL_DECIDED or APPROVAL_EXPIRED.
func (s *Server) gizmoDecide(w http.ResponseWriter, r *http.Request, id auth.Identity, session string) {
	var req approvalDecision
	if !decodeBody(w, r, &req) {
		return
	}
	s.decide(w, r, id, session, r.PathValue("id"), req)
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request, id auth.Identity, session, approvalID string, d approvalDecision) {
	if d.Decision != "approve" && d.Decision != "reject" {
		badRequest(w, "decision must be approve or reject", map[string]any{"field": "decision"})
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), resolveTimeout)
	defer cancel()
	ap, herr := s.decideApproval(ctx, id, session, approvalID, d, "")
	if herr != nil {
		writeHAIPError(w, herr)
		return
	}
	s.recordDecision(ctx, id, ap, d)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "approval": ap})
}

// gizmoManifest answers GET /.well-known/manifest.json: what this
// endpoint is and serves.
func (s *Server) gizmoManifest(w http.ResponseWriter, r *http.Request, _ auth.Identity, session string) {
	base := "/gizmo/" + session
	routes := []map[string]string{}
	for _, rt := range []struct{ method, path, what string }{
		{"GET", "/events", "state stream: state.initial, state.update (JSON Patch), execution.status, heartbeat"},
		{"GET", "/stream/state", "state stream: state.initial and state.update only"},
		{"GET", "/stream/actions", "action log: every envelope of the session, resumable with Last-Event-ID"},
		{"GET", "/state", "every slice"}, {"GET", "/state/{slice}", "one slice"},
		{"POST", "/invoke", "start a run on input"}, {"POST", "/abort", "cancel the active runs"},
		{"POST", "/dispatch", "dispatch a public action"},
		{"GET", "/runs", "active and recent runs"}, {"GET", "/runs/{id}", "a run, its actions and digest"},
		{"POST", "/runs/{id}/cancel", "cancel a run"}, {"POST", "/runs/{id}/continue", "a new run going on from an ended one"},
		{"GET", "/approvals", "pending approvals"}, {"GET", "/approvals/history", "decided approvals"},
		{"GET", "/approvals/{id}", "one approval"}, {"POST", "/approvals/{id}", "decide: approve or reject"},
	} {
		routes = append(routes, map[string]string{"method": rt.method, "path": base + rt.path, "description": rt.what})
	}
	w.Header().Set("Cache-Control", "private, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"name": "haipfabric", "description": "a session of the fabric, as a Gizmo runtime",
		"protocol": "gizmo", "agentId": "haipfabric:" + session, "basePath": base,
		"slices":       gizmoSlices,
		"capabilities": map[string]bool{"streaming": true, "hitl": true, "history": true, "digests": true},
		"routes":       routes,
		"contracts":    base + "/contracts/actions.public.json",
	})
}

// gizmoContracts answers GET /contracts/actions.public.json: the actions
// /dispatch takes, with JSON Schemas of their payloads.
func (s *Server) gizmoContracts(w http.ResponseWriter, _ *http.Request, _ auth.Identity, _ string) {
	obj := func(props map[string]any, required ...string) map[string]any {
		m := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			m["required"] = required
		}
		return m
	}
	str := map[string]any{"type": "string"}
	writeJSON(w, http.StatusOK, map[string]any{
		"version": 1,
		"actions": []map[string]any{
			{"type": "invoke", "description": "start a run on the input text", "payload": obj(map[string]any{
				"input": map[string]any{"oneOf": []any{str, obj(map[string]any{"text": str}, "text")}}, "messageId": str}, "input")},
			{"type": "abort", "description": "cancel the session's active runs", "payload": obj(map[string]any{})},
			{"type": "run.cancel", "description": "cancel one run", "payload": obj(map[string]any{"runId": str}, "runId")},
			{"type": "approval.decide", "description": "decide a pending approval", "payload": obj(map[string]any{
				"id": str, "decision": map[string]any{"enum": []string{"approve", "reject"}}, "comment": str}, "id", "decision")},
		},
	})
}
