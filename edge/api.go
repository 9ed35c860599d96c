package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// The sessions API: Tarko's Agent Server HTTP API (sessions, blocking and
// streaming queries, one-shot queries, abort, health) served by every
// edge on the session logs and records, plus the whole conversation of a
// session (both directions) by page. Nothing of it lives in the edge: any
// edge answers any request, and a restart loses nothing.
//
// Every route needs a token. A session that is not the caller's is
// refused exactly as one that does not exist (404 SESSION_NOT_FOUND);
// admins reach every session. Refusals are JSON {error, code, message,
// details} with a 4xx status (503 when the fabric is unavailable).

// Codes of the sessions API's refusals that HAIP has no code for.
const (
	codeBadRequest   haip.Code = "BAD_REQUEST"
	codeQueryTimeout haip.Code = "QUERY_TIMEOUT"
	codeRunFailed    haip.Code = "RUN_FAILED"
	codeRunCancelled haip.Code = "RUN_CANCELLED"
)

// apiMaxBody bounds a request body of the sessions API.
const apiMaxBody = 1 << 20

// apiRoutes registers the sessions API on mux.
func (s *Server) apiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/sessions/create", s.api(s.apiCreate))
	mux.HandleFunc("GET /api/v1/sessions", s.api(s.apiList))
	mux.HandleFunc("GET /api/v1/sessions/details", s.api(s.apiDetails))
	mux.HandleFunc("POST /api/v1/sessions/update", s.api(s.apiUpdate))
	mux.HandleFunc("POST /api/v1/sessions/delete", s.api(s.apiDelete))
	mux.HandleFunc("POST /api/v1/sessions/restore", s.api(s.apiRestore))
	mux.HandleFunc("POST /api/v1/sessions/query", s.api(s.apiQuery))
	mux.HandleFunc("POST /api/v1/sessions/query/stream", s.api(s.apiQueryStream))
	mux.HandleFunc("POST /api/v1/sessions/abort", s.api(s.apiAbort))
	mux.HandleFunc("POST /api/v1/oneshot/query", s.api(s.apiOneshot))
	mux.HandleFunc("GET /api/v1/sessions/{session}/messages", s.api(s.apiMessages))
	mux.HandleFunc("GET /api/v1/system/health", s.serveHealth)
	mux.HandleFunc("GET /api/v1/health", s.serveHealth)
	mux.HandleFunc("GET /api/v1/openapi.json", s.serveOpenAPI)
}

// apiHandler is a sessions-API handler of an authenticated request.
type apiHandler func(w http.ResponseWriter, r *http.Request, id auth.Identity)

// api authenticates a request (401 when refused) and refuses new work on
// a draining edge (503), then runs h.
func (s *Server) api(h apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			writeHTTPError(w, http.StatusServiceUnavailable, "shutting_down", haip.CodeServerShutdown, "edge is shutting down; send the request to another edge", nil)
			return
		}
		id, ok := s.authenticate(w, r, transportAPI)
		if !ok {
			return
		}
		h(w, r, id)
	}
}

// transportAPI names sessions-API requests in metrics.
const transportAPI = "api"

// badRequest answers 400 with the structured error.
func badRequest(w http.ResponseWriter, msg string, details map[string]any) {
	writeHTTPError(w, http.StatusBadRequest, "bad_request", codeBadRequest, msg, details)
}

// decodeBody reads a JSON object body into v (an empty body leaves v as
// it is), answering the refusal itself: 415 for another media type, 413
// over apiMaxBody, 400 for anything that is not one JSON object of the
// right field types.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if !requireJSONBody(w, r, true) {
		return false
	}
	body := http.MaxBytesReader(w, r.Body, apiMaxBody)
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return true
	}
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &tooBig):
		writeHTTPError(w, http.StatusRequestEntityTooLarge, "too_large", haip.CodeMessageTooLarge,
			fmt.Sprintf("request body larger than %d bytes", apiMaxBody), map[string]any{"max_bytes": apiMaxBody})
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "(body)"
		}
		badRequest(w, fmt.Sprintf("field %s: want %s, got %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value), map[string]any{"field": field})
	case errors.As(err, &syntaxErr):
		badRequest(w, fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr), nil)
	default:
		badRequest(w, "malformed JSON body: "+err.Error(), nil)
	}
	return false
}

// jsonKind names a Go kind as JSON would.
func jsonKind(k string) string {
	switch {
	case k == "string":
		return "a string"
	case k == "bool":
		return "a boolean"
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "a number"
	case k == "slice", k == "array":
		return "an array"
	case k == "map", k == "struct":
		return "an object"
	}
	return k
}

// apiSession authorises the caller on a session named in a request:
// an invalid id is 400, a session that is missing, deleted or not the
// caller's is 404 (the same answer), a store failure 503. It answers the
// refusal itself.
func (s *Server) apiSession(w http.ResponseWriter, r *http.Request, id auth.Identity, session string) bool {
	if session == "" {
		badRequest(w, "sessionId is required", map[string]any{"field": "sessionId"})
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), resolveTimeout)
	defer cancel()
	if _, err := s.authorize(ctx, id, session, readSession); err != nil {
		herr := s.accessError(err, session)
		if herr.Code == haip.CodeProtocolViolation {
			badRequest(w, herr.Message, map[string]any{"field": "sessionId"})
			return false
		}
		writeHAIPError(w, herr)
		return false
	}
	return true
}

// storeFailed answers a failure of the session store.
func storeFailed(w http.ResponseWriter) {
	writeHTTPError(w, http.StatusServiceUnavailable, "unavailable", haip.CodeInternalError, "session store unavailable; retry", nil)
}

// sessionIDOf reads sessionId from the query string (GET) for routes
// that take it there.
func sessionIDOf(r *http.Request) string { return r.URL.Query().Get("sessionId") }

// errBadInput marks a request refused for its content (400).
var errBadInput = errors.New("bad input")

// writeRecordError is the HTTP answer to a refused label or store failure of a
// session change.
func (s *Server) writeRecordError(w http.ResponseWriter, err error, session string) {
	switch {
	case errors.Is(err, streams.ErrBadLabel), errors.Is(err, errBadInput):
		badRequest(w, err.Error(), nil)
	case errors.Is(err, streams.ErrSessionNotFound):
		writeHAIPError(w, haip.Errorf(haip.CodeSessionNotFound, "no session %s of yours", session).WithDetail("session", session))
	default:
		s.logger.Error("session record", slog.String(logKeySession, session), slog.Any(logKeyErr, err))
		storeFailed(w)
	}
}
