package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
	"github.com/haipfabric/haipfabric/streams"
)

// A query is a user's text run through the agent, as if sent over HAIP:
// TEXT_MESSAGE_START (with the text) and TEXT_MESSAGE_END are stored in
// the session's inbound log (so every device of the user, and the agent's
// context, see them), which queues the run. Its id is derived from the
// message id (like every text run's), so a query re-sent with the same
// messageId is stored and run once. Its answer is read from the outbound
// log: the envelopes carrying the run's run_id, up to its RUN_FINISHED.

// apiQueryRequest is the body of the query endpoints. Query is Tarko's:
// a string, or an array of content parts of which the text parts are
// taken (other parts are refused).
type apiQueryRequest struct {
	SessionID string          `json:"sessionId"`
	Query     json.RawMessage `json:"query"`
	// MessageID (a uuid) makes the query idempotent: sent again, it is
	// stored and run once, and its answer (or stream) is the first one's.
	MessageID string `json:"messageId"`
	// TimeoutMs bounds the wait of a blocking query, at most the edge's
	// API_QUERY_TIMEOUT.
	TimeoutMs int64 `json:"timeoutMs"`
	// Oneshot only.
	SessionName string   `json:"sessionName"`
	SessionTags []string `json:"sessionTags"`
}

// queryText reads Tarko's query field.
func queryText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("%w: query is required", errBadInput)
	}
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		if strings.TrimSpace(text) == "" {
			return "", fmt.Errorf("%w: query is empty", errBadInput)
		}
		return text, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("%w: query must be a string or an array of content parts", errBadInput)
	}
	var b strings.Builder
	for i, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("%w: query part %d has type %q: only text parts are accepted", errBadInput, i, p.Type)
		}
		b.WriteString(p.Text)
	}
	if strings.TrimSpace(b.String()) == "" {
		return "", fmt.Errorf("%w: query is empty", errBadInput)
	}
	return b.String(), nil
}

// submitted is a query stored in a session.
type submitted struct {
	session, messageID, runID string
	// from is the first outbound seq the run's answer can be at.
	from uint64
}

// submitQuery stores a query's text as the user's message, which queues
// its run. follow, made before the store, sees everything the run writes.
func (s *Server) submitQuery(ctx context.Context, id auth.Identity, session string, req apiQueryRequest) (submitted, *haip.Error) {
	text, err := queryText(req.Query)
	if err != nil {
		return submitted{}, haip.Errorf(codeBadRequest, "%s", strings.TrimPrefix(err.Error(), errBadInput.Error()+": ")).WithDetail("field", "query")
	}
	if len(text) > int(s.cfg.MaxMessageBytes)/2 {
		return submitted{}, haip.Errorf(haip.CodeMessageTooLarge, "query longer than %d bytes", s.cfg.MaxMessageBytes/2)
	}
	msgID := req.MessageID
	if msgID == "" {
		msgID = haip.NewUUID()
	} else if !haip.ValidUUID(msgID) {
		return submitted{}, haip.Errorf(codeBadRequest, "messageId must be a uuid").WithDetail("field", "messageId")
	}
	sub := submitted{session: session, messageID: msgID, runID: haip.NameUUID("run", session, msgID)}
	var end streams.Appended
	for _, part := range []struct {
		t haip.Type
		p any
	}{
		{haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Text: text}},
		{haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msgID}},
	} {
		env, err := haip.New(session, haip.ChannelUser, part.t, part.p)
		if err != nil {
			return submitted{}, asHAIPError(err)
		}
		env.ID = haip.NameUUID("query", session, msgID, string(part.t))
		res, herr := s.store(ctx, id, session, env, nil, 0)
		if herr != nil {
			return submitted{}, herr
		}
		end = res
	}
	// The run's answer follows the user's message in the stream (also
	// when the message was stored by an earlier request with this
	// messageId, and the answer has begun since).
	from, err := s.log.FirstAtOrAfter(ctx, session, streams.Out, end.StreamSeq)
	if err != nil {
		s.logger.Error("query", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		return submitted{}, haip.Errorf(haip.CodeInternalError, "session log unavailable; retry")
	}
	sub.from = from

	s.msgsIn.Add(2)
	s.metrics.msgsIn.Add(2)
	return sub, nil
}

// runAnswer is what a run wrote, read from the outbound log.
type runAnswer struct {
	text   strings.Builder
	status haip.RunStatus
	reason string
	done   bool
}

// take adds one outbound entry to the answer; it reports whether e is
// the run's (envelope carries its run_id).
func (a *runAnswer) take(e streams.Entry, runID string) (*haip.Envelope, bool) {
	env, err := haip.Decode(e.Data)
	if err != nil || env.RunID != runID {
		return nil, false
	}
	switch env.Type {
	case haip.TypeTextMessageStart:
		var p haip.TextMessageStartPayload
		if env.DecodePayload(&p) == nil {
			a.text.WriteString(p.Text)
		}
	case haip.TypeTextMessagePart:
		var p haip.TextMessagePartPayload
		if env.DecodePayload(&p) == nil {
			a.text.WriteString(p.Text)
		}
	case haip.TypeRunError:
		var p haip.ErrorPayload
		if env.DecodePayload(&p) == nil {
			a.reason = p.Message
		}
	case haip.TypeRunFinished:
		var p haip.RunFinishedPayload
		_ = env.DecodePayload(&p)
		a.status, a.done = p.Status, true
		if a.reason == "" {
			a.reason = p.Summary
		}
	}
	return env, true
}

// apiQuery answers POST /api/v1/sessions/query: it runs the agent on the
// text and waits for the run's end: {result} (the answer's text). A run
// that fails is 502 RUN_FAILED, a cancelled one 409 RUN_CANCELLED; no end
// within the timeout is 504 QUERY_TIMEOUT naming the run, so the caller
// can follow it (query/stream with messageId, or the session's messages).
func (s *Server) apiQuery(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req apiQueryRequest
	if !decodeBody(w, r, &req) || !s.apiSession(w, r, id, req.SessionID) {
		return
	}
	s.query(w, r, id, req, nil)
}

// query runs a query and writes its blocking answer; extra joins the
// success body (oneshot's sessionId).
func (s *Server) query(w http.ResponseWriter, r *http.Request, id auth.Identity, req apiQueryRequest, extra map[string]any) {
	timeout := time.Duration(s.cfg.APIQueryTimeout)
	if req.TimeoutMs < 0 {
		badRequest(w, "timeoutMs must be positive", map[string]any{"field": "timeoutMs"})
		return
	}
	if req.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(req.TimeoutMs)*time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	f, err := s.log.NewFollower(req.SessionID, streams.Out)
	if err != nil {
		storeFailed(w)
		return
	}
	defer f.Close()
	sub, herr := s.submitQuery(ctx, id, req.SessionID, req)
	if herr != nil {
		writeHAIPError(w, herr)
		return
	}
	var ans runAnswer
	err = f.Follow(ctx, sub.from, streams.FollowOptions{}, func(e streams.Entry) bool {
		ans.take(e, sub.runID)
		return !ans.done
	})
	details := map[string]any{"sessionId": sub.session, "runId": sub.runID, "messageId": sub.messageID}
	switch {
	case ans.done && (ans.status == haip.RunStatusOK || ans.status == ""):
		body := map[string]any{"result": ans.text.String()}
		for k, v := range extra {
			body[k] = v
		}
		writeJSON(w, http.StatusOK, body)
	case ans.done && ans.status == haip.RunStatusCancelled:
		writeHTTPError(w, http.StatusConflict, "run_cancelled", codeRunCancelled, "the run was cancelled: "+ans.reason, withPartial(details, ans))
	case ans.done:
		writeHTTPError(w, http.StatusBadGateway, "run_failed", codeRunFailed, "the run failed: "+ans.reason, withPartial(details, ans))
	case r.Context().Err() != nil:
		// The caller went: nothing to answer.
	case errors.Is(err, context.DeadlineExceeded) || err == nil:
		details["fromSeq"] = sub.from
		writeHTTPError(w, http.StatusGatewayTimeout, "timeout", codeQueryTimeout,
			fmt.Sprintf("run %s did not end within %s; it goes on: follow it with POST /api/v1/sessions/query/stream and the same messageId, or read GET /api/v1/sessions/%s/messages", sub.runID, timeout, sub.session),
			details)
	default:
		s.logger.Error("query", slog.String(logKeySession, sub.session), slog.Any(logKeyErr, err))
		writeHTTPError(w, http.StatusServiceUnavailable, "unavailable", haip.CodeInternalError, "session log unavailable while waiting; the run goes on", details)
	}
}

func withPartial(details map[string]any, ans runAnswer) map[string]any {
	details["status"] = string(ans.status)
	details["partialResult"] = ans.text.String()
	return details
}

// sseKeepAlive is how often a query stream with nothing to send writes a
// comment, so that proxies keep it open.
const sseKeepAlive = 15 * time.Second

// apiQueryStream answers POST /api/v1/sessions/query/stream: the run's
// envelopes as Server-Sent Events (id = the envelope's seq, data = the
// envelope), ending after RUN_FINISHED. The first event (event: query,
// no id) names the run. A request with Last-Event-ID resumes: nothing is
// submitted, the run is the one of the envelope at that seq (or of
// messageId), and the stream goes on after it, on any edge.
func (s *Server) apiQueryStream(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req apiQueryRequest
	if !decodeBody(w, r, &req) || !s.apiSession(w, r, id, req.SessionID) {
		return
	}
	s.queryStream(w, r, id, req, nil)
}

// queryStream runs (or resumes) a query and streams its run; first, when
// set, is sent before the run's envelopes (oneshot's session_created).
func (s *Server) queryStream(w http.ResponseWriter, r *http.Request, id auth.Identity, req apiQueryRequest, first map[string]any) {
	ctx := r.Context()
	f, err := s.log.NewFollower(req.SessionID, streams.Out)
	if err != nil {
		storeFailed(w)
		return
	}
	defer f.Close()
	var sub submitted
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		var herr *haip.Error
		if sub, herr = s.resumeQuery(ctx, req, last); herr != nil {
			writeHAIPError(w, herr)
			return
		}
	} else {
		var herr *haip.Error
		if sub, herr = s.submitQuery(ctx, id, req.SessionID, req); herr != nil {
			writeHAIPError(w, herr)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var buf []byte
	write := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(time.Duration(s.cfg.WriteTimeout)))
		if _, err := w.Write(buf); err != nil {
			return false
		}
		buf = buf[:0]
		return rc.Flush() == nil
	}
	if first != nil {
		data, _ := json.Marshal(first)
		buf = sse.AppendEvent(buf, "", "", data)
	}
	head, _ := json.Marshal(map[string]any{"sessionId": sub.session, "runId": sub.runID, "messageId": sub.messageID, "fromSeq": sub.from})
	buf = sse.AppendEvent(buf, "", "query", head)
	if !write() {
		return
	}
	var ans runAnswer
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// A draining edge ends the stream: the client resumes elsewhere
		// with Last-Event-ID.
		select {
		case <-s.drainCh:
			cancel()
		case <-fctx.Done():
		}
	}()
	// Keep-alives go between envelopes: Follow calls back on this
	// goroutine, so the ticker is checked there too, and when quiet.
	err = f.Follow(fctx, sub.from, streams.FollowOptions{Quiet: sseKeepAlive}, func(e streams.Entry) bool {
		select {
		case <-keep.C:
			buf = sse.AppendComment(buf, "keep-alive")
		default:
		}
		if _, ok := ans.take(e, sub.runID); ok {
			buf = sse.AppendEvent(buf, strconv.FormatUint(e.Seq, 10), "", e.Data)
			s.msgsOut.Add(1)
			s.metrics.msgsOut.Inc()
		}
		if len(buf) > 0 && !write() {
			return false
		}
		return !ans.done
	})
	switch {
	case ctx.Err() != nil, ans.done:
	case s.draining.Load():
		buf = sse.AppendComment(buf, "close 1001 edge shutting down; resume with Last-Event-ID on another edge")
		write()
	case err != nil:
		s.logger.Warn("query stream", slog.String(logKeySession, sub.session), slog.Any(logKeyErr, err))
		buf = sse.AppendComment(buf, "close 1013 session log unavailable; resume with Last-Event-ID")
		write()
	}
}

// resumeQuery finds the run a resumed query stream follows: the one of
// messageId, else the one of the envelope at Last-Event-ID.
func (s *Server) resumeQuery(ctx context.Context, req apiQueryRequest, last string) (submitted, *haip.Error) {
	seq, err := strconv.ParseUint(last, 10, 64)
	if err != nil || seq == 0 {
		return submitted{}, haip.Errorf(codeBadRequest, "Last-Event-ID must be the seq of an event this stream sent").WithDetail("field", "Last-Event-ID")
	}
	sub := submitted{session: req.SessionID, messageID: req.MessageID, from: seq + 1}
	if req.MessageID != "" {
		if !haip.ValidUUID(req.MessageID) {
			return submitted{}, haip.Errorf(codeBadRequest, "messageId must be a uuid").WithDetail("field", "messageId")
		}
		sub.runID = haip.NameUUID("run", req.SessionID, req.MessageID)
		return sub, nil
	}
	pos, err := s.log.Find(ctx, req.SessionID, streams.Out, seq)
	if errors.Is(err, streams.ErrBeyondEnd) || errors.Is(err, streams.ErrTooOld) {
		return submitted{}, haip.Errorf(codeBadRequest, "no envelope at seq %d in this session: cannot resume", seq).WithDetail("field", "Last-Event-ID")
	}
	if err != nil {
		return submitted{}, haip.Errorf(haip.CodeInternalError, "session log unavailable; retry")
	}
	entries, _, err := s.log.Read(ctx, req.SessionID, streams.Out, pos.StreamSeq, 1, 0)
	if err != nil {
		return submitted{}, haip.Errorf(haip.CodeInternalError, "session log unavailable; retry")
	}
	if len(entries) == 0 || entries[0].Seq != seq {
		return submitted{}, haip.Errorf(codeBadRequest, "no envelope at seq %d in this session: cannot resume", seq).WithDetail("field", "Last-Event-ID")
	}
	env, err := haip.Decode(entries[0].Data)
	if err != nil || env.RunID == "" {
		return submitted{}, haip.Errorf(codeBadRequest, "the envelope at seq %d belongs to no run: send messageId to resume", seq).WithDetail("field", "Last-Event-ID")
	}
	sub.runID = env.RunID
	if env.Type == haip.TypeRunFinished {
		sub.from = seq // the stream ends at once, with the RUN_FINISHED again
	}
	return sub, nil
}

// apiAbort answers POST /api/v1/sessions/abort {sessionId}: RUN_CANCEL for
// every active run of the session, stored as the user's (so agents and
// every client see it): {success} (false when no run was active).
func (s *Server) apiAbort(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req struct {
		SessionID string `json:"sessionId"`
	}
	if !decodeBody(w, r, &req) || !s.apiSession(w, r, id, req.SessionID) {
		return
	}
	n, herr := s.abortRuns(r.Context(), id, req.SessionID, "")
	if herr != nil {
		writeHAIPError(w, herr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": n > 0, "aborted": n})
}

// apiOneshot answers POST /api/v1/oneshot/query {query, sessionName,
// sessionTags}: a new session, the query run in it: {sessionId, result}.
func (s *Server) apiOneshot(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	var req apiQueryRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if _, err := queryText(req.Query); err != nil {
		badRequest(w, strings.TrimPrefix(err.Error(), errBadInput.Error()+": "), map[string]any{"field": "query"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	rec, err := s.newSession(ctx, id, req.SessionName, req.SessionTags, nil)
	cancel()
	if err != nil {
		s.writeNewSessionError(w, err)
		return
	}
	req.SessionID = rec.ID
	s.query(w, r, id, req, map[string]any{"sessionId": rec.ID})
}
