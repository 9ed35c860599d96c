package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/ndjson"
)

// Bounds of one POST of envelopes.
const (
	maxPostEnvelopes = 1000
	maxPostReplay    = 1000 // messages a REPLAY_REQUEST may return in a POST answer
	postBodyFactor   = 16   // body limit = MaxMessageBytes × this
)

// PostResult is the edge's answer to one POSTed envelope.
type PostResult struct {
	// ID is the envelope's id, when it could be read.
	ID string `json:"id,omitempty"`
	// Status is "accepted" or "error".
	Status string `json:"status"`
	// Seq is where a stored envelope sits in its session's log.
	Seq uint64 `json:"seq,omitempty"`
	// Duplicate: an envelope with this id was already stored; stored once.
	Duplicate bool `json:"duplicate,omitempty"`
	// Bound (HAI only): a stream of the same user that opened without a
	// session took this HAI as its handshake.
	Bound *bool `json:"bound,omitempty"`
	// Replies are envelopes answering it: PONG for PING, the replayed
	// messages for REPLAY_REQUEST.
	Replies []json.RawMessage `json:"replies,omitempty"`
	// NextSeq (REPLAY_REQUEST only): the replay stopped before this seq,
	// at the request's byte budget (REPLAY_MAX_BYTES for the whole POST)
	// or the user's replay allowance; ask again from it. Zero when the
	// whole range was returned.
	NextSeq uint64 `json:"next_seq,omitempty,string"`
	// Error is the HAIP error, with Status "error".
	Error *haip.ErrorPayload `json:"error,omitempty"`
}

// PostResponse is the body of a successful POST of envelopes.
type PostResponse struct {
	Results []PostResult `json:"results"`
}

func isMessagePost(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("X-HAIP-Message"), "true")
}

// serveMessages takes envelopes sent by POST: the client→server half of
// SSE and half-duplex streaming, at /haip/messages, and at the SSE and
// stream URLs themselves as the official SDK posts them. The body is one
// envelope (application/json), a JSON array of envelopes, or NDJSON lines
// (application/x-ndjson). Each envelope gets its own result, in order;
// an error in one does not stop the others.
func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("X-HAIP-Binary"), "true") {
		writeHTTPError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", haip.CodeUnsupportedType,
			"raw binary with no envelope is not accepted: send AUDIO_CHUNK with the bytes base64 in payload.data", nil)
		return
	}
	if !requireJSONBody(w, r, false) {
		return
	}
	a, ok := s.admit(w, r, transportPost)
	if !ok {
		return
	}
	defer a.slot.free()
	limit := s.cfg.MaxMessageBytes * postBodyFactor
	body := http.MaxBytesReader(w, r.Body, limit)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Duration(s.cfg.PostTimeout)))
	records, perr := readRecords(body, r.Header.Get("Content-Type"), int(s.cfg.MaxMessageBytes))
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(perr, &netErr) && netErr.Timeout():
		writeHTTPError(w, http.StatusRequestTimeout, "timeout", haip.CodeProtocolViolation,
			"request body not received within "+time.Duration(s.cfg.PostTimeout).String(), nil)
		return
	case errors.As(perr, &tooBig):
		writeHTTPError(w, http.StatusRequestEntityTooLarge, "too_large", haip.CodeMessageTooLarge,
			"request body larger than "+strconv.FormatInt(limit, 10)+" bytes", map[string]any{"max_bytes": limit})
		return
	case perr != nil:
		writeHTTPError(w, http.StatusBadRequest, "bad_request", haip.CodeProtocolViolation, perr.Error(), nil)
		return
	case len(records) == 0:
		writeHTTPError(w, http.StatusBadRequest, "bad_request", haip.CodeProtocolViolation, "no envelope in the request body", nil)
		return
	case len(records) > maxPostEnvelopes:
		writeHTTPError(w, http.StatusRequestEntityTooLarge, "too_many", haip.CodeMessageTooLarge,
			"more than "+strconv.Itoa(maxPostEnvelopes)+" envelopes in one request", map[string]any{"max_envelopes": maxPostEnvelopes})
		return
	}
	authorized := make(map[string]bool)
	replayed := 0
	resp := PostResponse{Results: make([]PostResult, 0, len(records))}
	for _, rec := range records {
		res := s.post(r.Context(), a, rec, authorized, &replayed)
		if res.Error != nil {
			s.metrics.errorsSent.WithLabelValues(string(res.Error.Code)).Inc()
		}
		resp.Results = append(resp.Results, res)
	}
	s.msgsIn.Add(uint64(len(records)))
	s.metrics.msgsIn.Add(float64(len(records)))
	if refused := allRefused(resp.Results); refused != nil {
		// Nothing was taken: the status says so (the first refusal's),
		// with the structured error and every envelope's result.
		status, word := httpStatusOf(refused.Code)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(struct {
			httpError
			Results []PostResult `json:"results"`
		}{httpError{Error: word, Code: string(refused.Code), Message: refused.Message, Details: refused.Detail}, resp.Results})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// allRefused returns the first refusal when every result is one, else
// nil.
func allRefused(results []PostResult) *haip.ErrorPayload {
	for _, r := range results {
		if r.Error == nil {
			return nil
		}
	}
	if len(results) == 0 {
		return nil
	}
	return results[0].Error
}

// jsonBodyTypes are the media types of request bodies the edge reads: an
// envelope or an array of them (JSON), or envelopes as lines (NDJSON).
// Requiring one of them keeps pages on other origins out: a browser sends
// a POST of any of these only after a CORS preflight, which the edge
// answers for the origins it serves alone, while a form's types and
// text/plain go without one.
const jsonBodyTypes = "application/json, application/x-ndjson or application/jsonl"

// requireJSONBody answers 415 unless the request's Content-Type is one of
// jsonBodyTypes. With bodyless, a request with neither a Content-Type nor
// a body passes too (an endpoint that reads no body).
func requireJSONBody(w http.ResponseWriter, r *http.Request, bodyless bool) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" && bodyless && r.ContentLength == 0 {
		return true
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		switch mt {
		case "application/json", "application/x-ndjson", "application/jsonl":
			return true
		}
	}
	writeHTTPError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", haip.CodeUnsupportedType,
		"Content-Type must be "+jsonBodyTypes, map[string]any{"content_type": truncate(ct, 128)})
	return false
}

// readRecords splits a POST body into envelopes. A nil record stands for
// an NDJSON line over max (answered with MESSAGE_TOO_LARGE in its place).
func readRecords(body io.Reader, contentType string, max int) ([][]byte, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-ndjson" || mt == "application/jsonl" {
		var out [][]byte
		rd := ndjson.NewReader(body, max)
		for {
			line, err := rd.Next()
			var tooLong *ndjson.LineTooLongError
			switch {
			case err == nil:
				out = append(out, append([]byte(nil), line...))
			case errors.As(err, &tooLong):
				out = append(out, nil)
			case errors.Is(err, io.EOF):
				return out, nil
			default:
				return nil, err
			}
		}
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(data, &arr); err != nil {
			return nil, errors.New("body is not a JSON array of envelopes: " + err.Error())
		}
		out := make([][]byte, len(arr))
		for i, m := range arr {
			out[i] = m
		}
		return out, nil
	}
	if len(data) == 0 {
		return nil, nil
	}
	return [][]byte{data}, nil
}

// post handles one POSTed envelope.
// replayed counts the bytes the POST's replays have returned so far.
func (s *Server) post(ctx context.Context, a admission, data []byte, authorized map[string]bool, replayed *int) PostResult {
	fail := func(id string, e *haip.Error) PostResult {
		p := e.Payload()
		return PostResult{ID: id, Status: "error", Error: &p}
	}
	if data == nil {
		return fail("", haip.Errorf(haip.CodeMessageTooLarge, "line larger than %d bytes skipped", s.cfg.MaxMessageBytes))
	}
	env, err := haip.Decode(data)
	if err != nil {
		he := asHAIPError(err)
		return fail(he.RelatedID, he)
	}
	if a.session != "" && env.Session != a.session {
		return fail(env.ID, haip.Errorf(haip.CodeProtocolViolation, "envelope session %q is not the request's session %q", env.Session, a.session).WithRelated(env.ID))
	}
	if herr := checkInbound(a.id.Role, env); herr != nil {
		return fail(env.ID, herr)
	}
	var hello haip.HelloPayload
	if env.Type == haip.TypeHAI {
		if err := env.DecodePayload(&hello); err != nil {
			return fail(env.ID, asHAIPError(err))
		}
		if !containsInt(hello.AcceptMajor, haip.Major) {
			return fail(env.ID, haip.Errorf(haip.CodeVersionIncompatible, "no common major version: server speaks %d", haip.Major).WithRelated(env.ID))
		}
	}
	if !authorized[env.Session] {
		// Only what is stored (and a HAI, which opens a stream) may
		// create the session; the rest reads, and a read of another
		// user's session answers as for one that does not exist.
		acc := openSession
		if readsOnly(a.id.Role, env.Type) {
			acc = readSession
		}
		_, err := s.authorize(ctx, a.id, env.Session, acc)
		if herr := s.accessError(err, env.Session); herr != nil {
			return fail(env.ID, herr.WithRelated(env.ID))
		}
		authorized[env.Session] = true
	}
	res := PostResult{ID: env.ID, Status: "accepted"}
	in := inbound{id: a.id, session: env.Session, env: env, data: data}
	if herr := s.dispatch(ctx, in, &postCarrier{s: s, a: a, res: &res, replayed: replayed}); herr != nil {
		return fail(env.ID, herr.WithRelated(env.ID))
	}
	return res
}

// Client ERROR envelopes are counted, and logged only at debug level,
// cut short and at most once per clientErrorLogEvery per edge: what a
// client reports is its own business, and a client must not be able to
// fill the edge's log (a 10 MB POST of ERRORs was 10 MB of log).
const (
	clientErrorLogEvery = time.Second
	clientErrorLogBytes = 256 // of the message; the code gets a quarter
)

// clientError takes note of an ERROR a client sent.
func (s *Server) clientError(logger *slog.Logger, env *haip.Envelope) {
	s.metrics.clientErrors.Inc()
	if !logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	suppressed, ok := s.clientErrLog.allow(time.Now())
	if !ok {
		return
	}
	var p haip.ErrorPayload
	_ = env.DecodePayload(&p)
	logger.Debug("client reported an error", slog.String("code", truncate(string(p.Code), clientErrorLogBytes/4)),
		slog.String("message", truncate(p.Message, clientErrorLogBytes)), slog.Int("payload_bytes", len(env.Payload)),
		slog.Uint64("suppressed", suppressed))
}

// logLimiter lets one log line through per period and counts the ones it
// holds back in between. Safe for concurrent use.
type logLimiter struct {
	mu         sync.Mutex
	next       time.Time
	suppressed uint64
}

// allow reports whether a line may be logged at now and, if so, how many
// were held back since the last one.
func (l *logLimiter) allow(now time.Time) (suppressed uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return 0, false
	}
	l.next = now.Add(clientErrorLogEvery)
	suppressed, l.suppressed = l.suppressed, 0
	return suppressed, true
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
