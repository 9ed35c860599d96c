package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// openAPIValidator builds a validator of the edge's OpenAPI document and
// checks the document itself (OpenAPI 3.1 schema validation).
func openAPIValidator(t *testing.T) validator.Validator {
	t.Helper()
	doc, err := libopenapi.NewDocument(edge.OpenAPI())
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("openapi.json is OpenAPI %s, want 3.1.0", v)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("openapi.json: cannot build a validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("openapi.json is not valid OpenAPI 3.1: %s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", se.FieldPath+" "+se.KeywordLocation, se.Reason)
			}
		}
		t.FailNow()
	}
	return v
}

// edgeRoutes lists the patterns the edge registers on its mux, read from
// the mux.Handle and mux.HandleFunc calls of the package's source. A
// pattern that is not a string literal fails the test: the list would
// not be complete.
func edgeRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	mounted, err := filepath.Glob("console/*.go") // mounted by Handler
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, mounted...)
	fset := token.NewFileSet()
	var routes []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") || len(call.Args) != 2 {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "mux" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: a route pattern that is not a string literal", fset.Position(call.Pos()))
				return true
			}
			p, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			routes = append(routes, p)
			return true
		})
	}
	return routes
}

// TestOpenAPIDocumentsEveryRoute: every pattern registered on the edge's
// mux (but the catch-all 404) is an operation of the document, and every
// operation of the document is a registered pattern.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	openAPIValidator(t)
	var doc struct {
		Paths map[string]map[string]json.RawMessage
	}
	if err := json.Unmarshal(edge.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	routes := edgeRoutes(t)
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in the edge's source: %v", len(routes), routes)
	}
	registered := make(map[string]bool)
	for _, p := range routes {
		if p == "/" {
			continue // the catch-all: 404 NOT_FOUND for anything else
		}
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("route %q has no method: document it or give it one", p)
			continue
		}
		path = strings.TrimSuffix(path, "{$}")
		if path == "" {
			path = "/"
		}
		key := strings.ToLower(method) + " " + path
		registered[key] = true
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %s is not in openapi.json", p)
		}
	}
	for path, item := range doc.Paths {
		for method := range item {
			if !registered[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the edge does not register", strings.ToUpper(method), path)
			}
		}
	}
}

// apiCase is one request of TestOpenAPIResponses.
type apiCase struct {
	name   string
	method string
	path   string
	token  string // bearer token, if any
	header map[string]string
	ctype  string // Content-Type; application/json when body is set and ctype is empty
	body   any    // string, []byte or a value sent as JSON
	want   int
	// offSpec: the request breaks the document on purpose (no token, a
	// wrong type): only the response is validated.
	offSpec bool
	// stream: read the headers only (event streams, NDJSON, WebSocket).
	stream bool
}

// openAPICheck sends c to base and validates the request and its response
// against v; it returns the response body (nil for a stream).
func openAPICheck(t *testing.T, v validator.Validator, base string, c apiCase) []byte {
	t.Helper()
	var reqBody []byte
	switch b := c.body.(type) {
	case nil:
	case string:
		reqBody = []byte(b)
	case []byte:
		reqBody = b
	default:
		var err error
		if reqBody, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	newReq := func() *http.Request {
		var rd io.Reader
		if reqBody != nil {
			rd = bytes.NewReader(reqBody)
		}
		req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if reqBody != nil {
			ct := c.ctype
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		for k, val := range c.header {
			req.Header.Set(k, val)
		}
		return req
	}
	resp, err := http.DefaultClient.Do(newReq())
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	var body []byte
	if !c.stream {
		if body, err = io.ReadAll(resp.Body); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	if resp.StatusCode != c.want {
		t.Fatalf("%s: %s %s: %d, want %d: %.300s", c.name, c.method, c.path, resp.StatusCode, c.want, body)
	}
	// The validator reads the bodies: give it fresh copies.
	vreq := newReq()
	vresp := *resp
	vresp.Body = io.NopCloser(bytes.NewReader(body))
	var verrs []string
	if c.offSpec {
		if ok, errs := v.ValidateHttpResponse(vreq, &vresp); !ok {
			for _, e := range errs {
				verrs = append(verrs, e.Message+": "+e.Reason+schemaErrors(e.SchemaValidationErrors))
			}
		}
	} else if ok, errs := v.ValidateHttpRequestResponse(vreq, &vresp); !ok {
		for _, e := range errs {
			verrs = append(verrs, e.Message+": "+e.Reason+schemaErrors(e.SchemaValidationErrors))
		}
	}
	if len(verrs) > 0 {
		t.Errorf("%s: %s %s → %d does not match openapi.json:\n  %s\n  body: %.500s", c.name, c.method, c.path, resp.StatusCode, strings.Join(verrs, "\n  "), body)
	}
	return body
}

// schemaErrors formats the schema failures of a validation error.
func schemaErrors(errs []*verrors.SchemaValidationFailure) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n    %s: %s", e.FieldPath+" "+e.KeywordLocation, e.Reason)
	}
	return b.String()
}

// TestOpenAPIResponses drives every documented route of a running edge,
// successes and refusals, and validates each request and response
// against the document.
func TestOpenAPIResponses(t *testing.T) {
	v := openAPIValidator(t)
	f := newFabric(t, streams.Config{})
	const metricsToken = "scrape-me-0123456789abcdef0123456789"
	e := f.Edge(edge.Config{MetricsToken: metricsToken})
	alice, bob, admin := f.Token("alice", auth.RoleUser), f.Token("bob", auth.RoleUser), f.Token("root", auth.RoleAdmin)
	check := func(c apiCase) []byte {
		t.Helper()
		return openAPICheck(t, v, e.Base, c)
	}
	decode := func(body []byte, out any) {
		t.Helper()
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}

	// Sessions, and a run left queued (no agent yet): the query times out.
	var created struct{ SessionID string }
	decode(check(apiCase{name: "create", method: "POST", path: "/api/v1/sessions/create", token: alice,
		body: map[string]any{"name": "first", "tags": []string{"work"}, "metadata": map[string]any{"k": 1}}, want: 201}), &created)
	sid := created.SessionID
	check(apiCase{name: "create without a body", method: "POST", path: "/api/v1/sessions/create", token: alice, want: 201})
	msgID := haip.NewUUID()
	check(apiCase{name: "query timeout", method: "POST", path: "/api/v1/sessions/query", token: alice,
		body: map[string]any{"sessionId": sid, "query": "wait", "messageId": msgID, "timeoutMs": 200}, want: 504})
	var runs struct {
		Active []struct {
			RunID string `json:"run_id"`
		}
	}
	decode(check(apiCase{name: "runs", method: "GET", path: "/haip/sessions/" + sid + "/runs", token: alice, want: 200}), &runs)
	if len(runs.Active) != 1 {
		t.Fatalf("runs: %+v", runs)
	}
	check(apiCase{name: "cancel run", method: "POST", path: "/haip/sessions/" + sid + "/runs/" + runs.Active[0].RunID + "/cancel", token: alice, want: 202})
	f.Agent(-1)
	f.Tools("tools", 1)

	env, err := haip.New(sid, haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: haip.NewUUID(), Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	one, err := haip.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	env.ID = haip.NewUUID()
	two, _ := haip.Encode(env)
	tooMany := "[" + strings.Repeat("{},", 1000) + "{}]"

	cases := []apiCase{
		// Meta and operator endpoints.
		{name: "openapi", method: "GET", path: "/api/v1/openapi.json", want: 200},
		{name: "health", method: "GET", path: "/health", want: 200},
		{name: "api health", method: "GET", path: "/api/v1/health", want: 200},
		{name: "system health", method: "GET", path: "/api/v1/system/health", want: 200},
		{name: "root", method: "GET", path: "/", want: 200},
		{name: "stats admin", method: "GET", path: "/stats", token: admin, want: 200},
		{name: "stats metrics token", method: "GET", path: "/stats", token: metricsToken, want: 200},
		{name: "stats user", method: "GET", path: "/stats", token: alice, want: 403},
		{name: "stats no token", method: "GET", path: "/stats", want: 401, offSpec: true},
		{name: "stats token in query", method: "GET", path: "/stats?token=" + admin, want: 401, offSpec: true},
		{name: "metrics", method: "GET", path: "/metrics", token: metricsToken, want: 200},
		{name: "metrics user", method: "GET", path: "/metrics", token: bob, want: 403},
		{name: "metrics no token", method: "GET", path: "/metrics", want: 401, offSpec: true},
		// HAIP helpers.
		{name: "tools", method: "GET", path: "/haip/tools", token: alice, want: 200},
		{name: "tools token in query", method: "GET", path: "/haip/tools?token=" + alice, want: 200},
		{name: "tools no token", method: "GET", path: "/haip/tools", want: 401, offSpec: true},
		{name: "runs bad session", method: "GET", path: "/haip/sessions/a.b/runs", token: alice, want: 400},
		{name: "runs foreign session", method: "GET", path: "/haip/sessions/" + sid + "/runs", token: bob, want: 404},
		{name: "runs no token", method: "GET", path: "/haip/sessions/" + sid + "/runs", want: 401, offSpec: true},
		{name: "cancel unknown run", method: "POST", path: "/haip/sessions/" + sid + "/runs/" + haip.NewUUID() + "/cancel", token: alice, want: 404},
		{name: "cancel bad run id", method: "POST", path: "/haip/sessions/" + sid + "/runs/r1/cancel", token: alice, want: 400},
		{name: "cancel text body", method: "POST", path: "/haip/sessions/" + sid + "/runs/" + haip.NewUUID() + "/cancel", token: alice, ctype: "text/plain", body: "x", want: 415, offSpec: true},
		// Envelopes by POST.
		{name: "messages one", method: "POST", path: "/haip/messages", token: alice, body: one, want: 200},
		{name: "messages array", method: "POST", path: "/haip/messages", token: alice, body: "[" + string(one) + "," + string(two) + "]", want: 200},
		{name: "messages ndjson", method: "POST", path: "/haip/messages", token: alice, ctype: "application/x-ndjson", body: string(one) + "\n", want: 200},
		{name: "messages at the sse url", method: "POST", path: "/haip/sse", token: alice, body: one, want: 200},
		{name: "messages at the stream url", method: "POST", path: "/haip/stream", token: alice, header: map[string]string{"X-HAIP-Message": "true"}, body: one, want: 200},
		{name: "messages all refused", method: "POST", path: "/haip/messages", token: alice, body: `{"id":"x"}`, want: 400, offSpec: true},
		{name: "messages foreign session", method: "POST", path: "/haip/messages", token: bob, body: one, want: 403},
		{name: "messages empty", method: "POST", path: "/haip/messages", token: alice, body: "[]", want: 400},
		{name: "messages too many", method: "POST", path: "/haip/messages", token: alice, body: tooMany, want: 413, offSpec: true},
		{name: "messages text body", method: "POST", path: "/haip/messages", token: alice, ctype: "text/plain", body: "x", want: 415, offSpec: true},
		{name: "messages raw binary", method: "POST", path: "/haip/messages", token: alice, header: map[string]string{"X-HAIP-Binary": "true"}, ctype: "application/json", body: one, want: 415},
		{name: "messages no token", method: "POST", path: "/haip/messages", body: one, want: 401, offSpec: true},
		{name: "messages foreign origin", method: "POST", path: "/haip/messages", token: alice, header: map[string]string{"Origin": "http://elsewhere.example"}, body: one, want: 403},
		// Streams: status and headers.
		{name: "sse", method: "GET", path: "/haip/sse?session=" + sid, token: alice, want: 200, stream: true},
		{name: "sse token in query", method: "GET", path: "/haip/sse?session=" + sid + "&token=" + alice, want: 200, stream: true},
		{name: "sse resume", method: "GET", path: "/haip/sse?session=" + sid, token: alice, header: map[string]string{"Last-Event-ID": "1"}, want: 200, stream: true},
		{name: "sse stream url", method: "GET", path: "/haip/stream?session=" + sid, token: alice, want: 200, stream: true},
		{name: "sse bad last_rx_seq", method: "GET", path: "/haip/sse?session=" + sid + "&last_rx_seq=x", token: alice, want: 400},
		{name: "sse bad session", method: "GET", path: "/haip/sse?session=a.b", token: alice, want: 400},
		{name: "sse foreign session", method: "GET", path: "/haip/sse?session=" + sid, token: bob, want: 403},
		{name: "sse unknown session", method: "GET", path: "/haip/sse?session=" + haip.NewUUID(), token: alice, want: 200, stream: true},
		{name: "sse no token", method: "GET", path: "/haip/sse", want: 401, offSpec: true},
		{name: "ndjson stream", method: "POST", path: "/haip/stream?session=" + sid, token: alice, ctype: "application/x-ndjson", body: "", want: 200, stream: true},
		{name: "ndjson stream text body", method: "POST", path: "/haip/stream", token: alice, ctype: "text/plain", body: "x", want: 415, offSpec: true},
		{name: "websocket", method: "GET", path: "/haip/websocket?session=" + sid, token: alice, header: wsHandshake(), want: 101, stream: true},
		{name: "websocket at the root", method: "GET", path: "/?session=" + sid, token: alice, header: wsHandshake(), want: 101, stream: true},
		{name: "websocket without upgrade", method: "GET", path: "/haip/websocket", token: alice, want: 426},
		{name: "websocket bad session", method: "GET", path: "/haip/websocket?session=a.b", token: alice, header: wsHandshake(), want: 400},
		{name: "websocket no token", method: "GET", path: "/haip/websocket", header: wsHandshake(), want: 401, offSpec: true},
		// The sessions API.
		{name: "list", method: "GET", path: "/api/v1/sessions?limit=1&tag=work", token: alice, want: 200},
		{name: "list bad limit", method: "GET", path: "/api/v1/sessions?limit=0", token: alice, want: 400, offSpec: true},
		{name: "list bad cursor", method: "GET", path: "/api/v1/sessions?cursor=zzz", token: alice, want: 400},
		{name: "list no token", method: "GET", path: "/api/v1/sessions", want: 401, offSpec: true},
		{name: "list bad token", method: "GET", path: "/api/v1/sessions", token: "nope", want: 401},
		{name: "details", method: "GET", path: "/api/v1/sessions/details?sessionId=" + sid, token: alice, want: 200},
		{name: "details without id", method: "GET", path: "/api/v1/sessions/details", token: alice, want: 400},
		{name: "details foreign", method: "GET", path: "/api/v1/sessions/details?sessionId=" + sid, token: bob, want: 404},
		{name: "update", method: "POST", path: "/api/v1/sessions/update", token: alice, body: map[string]any{"sessionId": sid, "name": "renamed", "metadata": map[string]any{"k": nil, "tags": []string{"home"}}}, want: 200},
		{name: "update bad name", method: "POST", path: "/api/v1/sessions/update", token: alice, body: map[string]any{"sessionId": sid, "name": "a\u0001"}, want: 400},
		{name: "update wrong type", method: "POST", path: "/api/v1/sessions/update", token: alice, body: map[string]any{"sessionId": 12}, want: 400, offSpec: true},
		{name: "update text body", method: "POST", path: "/api/v1/sessions/update", token: alice, ctype: "text/plain", body: "x", want: 415, offSpec: true},
		{name: "update too large", method: "POST", path: "/api/v1/sessions/update", token: alice, body: `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, want: 413},
		{name: "restore", method: "POST", path: "/api/v1/sessions/restore", token: alice, body: map[string]any{"sessionId": sid}, want: 200},
		{name: "restore unknown", method: "POST", path: "/api/v1/sessions/restore", token: alice, body: map[string]any{"sessionId": "nope"}, want: 404},
		{name: "create bad tags", method: "POST", path: "/api/v1/sessions/create", token: alice, body: map[string]any{"tags": []string{""}}, want: 400},
		{name: "query", method: "POST", path: "/api/v1/sessions/query", token: alice, body: map[string]any{"sessionId": sid, "query": "hi there"}, want: 200},
		{name: "query parts", method: "POST", path: "/api/v1/sessions/query", token: alice, body: map[string]any{"sessionId": sid, "query": []map[string]any{{"type": "text", "text": "again"}}}, want: 200},
		{name: "query empty", method: "POST", path: "/api/v1/sessions/query", token: alice, body: map[string]any{"sessionId": sid, "query": " "}, want: 400},
		{name: "query bad message id", method: "POST", path: "/api/v1/sessions/query", token: alice, body: map[string]any{"sessionId": sid, "query": "x", "messageId": "m1"}, want: 400},
		{name: "query unknown session", method: "POST", path: "/api/v1/sessions/query", token: alice, body: map[string]any{"sessionId": "nope", "query": "x"}, want: 404},
		{name: "query malformed", method: "POST", path: "/api/v1/sessions/query", token: alice, body: `{"sessionId":`, want: 400, offSpec: true},
		{name: "query stream", method: "POST", path: "/api/v1/sessions/query/stream", token: alice, body: map[string]any{"sessionId": sid, "query": "streamed"}, want: 200, stream: true},
		{name: "query stream resume", method: "POST", path: "/api/v1/sessions/query/stream", token: alice, header: map[string]string{"Last-Event-ID": "1"}, body: map[string]any{"sessionId": sid, "messageId": msgID}, want: 200, stream: true},
		{name: "query stream bad Last-Event-ID", method: "POST", path: "/api/v1/sessions/query/stream", token: alice, header: map[string]string{"Last-Event-ID": "abc"}, body: map[string]any{"sessionId": sid, "query": "x"}, want: 400},
		{name: "abort", method: "POST", path: "/api/v1/sessions/abort", token: alice, body: map[string]any{"sessionId": sid}, want: 200},
		{name: "abort foreign", method: "POST", path: "/api/v1/sessions/abort", token: bob, body: map[string]any{"sessionId": sid}, want: 404},
		{name: "oneshot", method: "POST", path: "/api/v1/oneshot/query", token: alice, body: map[string]any{"query": "once", "sessionName": "one", "sessionTags": []string{"x"}}, want: 200},
		{name: "oneshot without query", method: "POST", path: "/api/v1/oneshot/query", token: alice, body: map[string]any{"sessionName": "x"}, want: 400},
		{name: "messages page", method: "GET", path: "/api/v1/sessions/" + sid + "/messages?limit=1000", token: alice, want: 200},
		{name: "messages page backward", method: "GET", path: "/api/v1/sessions/" + sid + "/messages?direction=backward&limit=2", token: alice, want: 200},
		{name: "messages page bad direction", method: "GET", path: "/api/v1/sessions/" + sid + "/messages?direction=up", token: alice, want: 400, offSpec: true},
		{name: "messages page bad cursor", method: "GET", path: "/api/v1/sessions/" + sid + "/messages?cursor=abc", token: alice, want: 400},
		{name: "messages page foreign", method: "GET", path: "/api/v1/sessions/" + sid + "/messages", token: bob, want: 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { openAPICheck(t, v, e.Base, c) })
	}

	// Delete last: the session is gone after it.
	var second struct{ SessionID string }
	decode(check(apiCase{name: "create another", method: "POST", path: "/api/v1/sessions/create", token: alice, want: 201}), &second)
	check(apiCase{name: "delete", method: "POST", path: "/api/v1/sessions/delete", token: alice, body: map[string]any{"sessionId": second.SessionID}, want: 200})
	check(apiCase{name: "delete again", method: "POST", path: "/api/v1/sessions/delete", token: alice, body: map[string]any{"sessionId": second.SessionID}, want: 404})

	// 429: the user's new sessions are capped.
	lim := f.Edge(edge.Config{UserSessionsPerMinute: 1})
	carol := f.Token("carol", auth.RoleUser)
	openAPICheck(t, v, lim.Base, apiCase{name: "create within the limit", method: "POST", path: "/api/v1/sessions/create", token: carol, want: 201})
	openAPICheck(t, v, lim.Base, apiCase{name: "create over the limit", method: "POST", path: "/api/v1/sessions/create", token: carol, want: 429})
	openAPICheck(t, v, lim.Base, apiCase{name: "oneshot over the limit", method: "POST", path: "/api/v1/oneshot/query", token: carol, body: map[string]any{"query": "x"}, want: 429})

	// 503: a draining edge.
	drained := f.Edge(edge.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := drained.Srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []apiCase{
		{name: "health draining", method: "GET", path: "/health", want: 503},
		{name: "api draining", method: "GET", path: "/api/v1/sessions", token: alice, want: 503},
		{name: "sse draining", method: "GET", path: "/haip/sse", token: alice, want: 503},
		{name: "messages draining", method: "POST", path: "/haip/messages", token: alice, body: one, want: 503},
	} {
		openAPICheck(t, v, drained.Base, c)
	}
}

// wsHandshake is the headers of a WebSocket upgrade request.
func wsHandshake() map[string]string {
	return map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket",
		"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
	}
}

// TestOpenAPIServed: the edge serves the document it embeds.
func TestOpenAPIServed(t *testing.T) {
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	resp, err := http.Get(e.Base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !slices.Equal(body, edge.OpenAPI()) {
		t.Fatalf("GET /api/v1/openapi.json: %d, %d bytes, want the embedded %d", resp.StatusCode, len(body), len(edge.OpenAPI()))
	}
}

// TestOpenAPIRunEnds validates the answers of a blocking query whose run
// does not finish well: 409 for a cancelled run, 502 for a failed one.
func TestOpenAPIRunEnds(t *testing.T) {
	v := openAPIValidator(t)
	f := newFabric(t, streams.Config{})
	nc := f.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// An agent that holds a run of "hold" until it is cancelled, and
	// fails every other.
	agent, err := worker.NewAgent(context.Background(), nc, js, worker.RunHandlerFunc(func(ctx context.Context, run *worker.Run) error {
		if run.Request.Text == "hold" {
			<-ctx.Done()
			return context.Cause(ctx)
		}
		return errors.New("no model configured")
	}), worker.AgentConfig{Name: "failing", AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.Run(agent.Run)
	e := f.Edge(edge.Config{})
	alice := f.Token("alice", auth.RoleUser)
	var created struct{ SessionID string }
	body := openAPICheck(t, v, e.Base, apiCase{name: "create", method: "POST", path: "/api/v1/sessions/create", token: alice, want: 201})
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	sid := created.SessionID
	openAPICheck(t, v, e.Base, apiCase{name: "failed run", method: "POST", path: "/api/v1/sessions/query", token: alice,
		body: map[string]any{"sessionId": sid, "query": "fail"}, want: http.StatusBadGateway})
	openAPICheck(t, v, e.Base, apiCase{name: "oneshot failed run", method: "POST", path: "/api/v1/oneshot/query", token: alice,
		body: map[string]any{"query": "fail"}, want: http.StatusBadGateway})

	held := make(chan struct{})
	go func() {
		defer close(held)
		openAPICheck(t, v, e.Base, apiCase{name: "cancelled run", method: "POST", path: "/api/v1/sessions/query", token: alice,
			body: map[string]any{"sessionId": sid, "query": "hold"}, want: http.StatusConflict})
	}()
	testkit.Eventually(t, 10*time.Second, func() bool {
		var det struct {
			Session struct{ Runs struct{ Running int } }
		}
		b := openAPICheck(t, v, e.Base, apiCase{name: "details", method: "GET", path: "/api/v1/sessions/details?sessionId=" + sid, token: alice, want: 200})
		return json.Unmarshal(b, &det) == nil && det.Session.Runs.Running == 1
	}, "the held run runs")
	openAPICheck(t, v, e.Base, apiCase{name: "abort", method: "POST", path: "/api/v1/sessions/abort", token: alice,
		body: map[string]any{"sessionId": sid}, want: 200})
	select {
	case <-held:
	case <-time.After(15 * time.Second):
		t.Fatal("the blocking query did not answer after the abort")
	}
}

// TestOpenAPIPostTimeout validates the 408 of a POST of envelopes whose
// body does not arrive within POST_TIMEOUT.
func TestOpenAPIPostTimeout(t *testing.T) {
	v := openAPIValidator(t)
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{PostTimeout: edge.Duration(200 * time.Millisecond)})
	alice := f.Token("alice", auth.RoleUser)
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", e.Base+"/haip/messages", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "application/x-ndjson")
	// Nothing is ever written: the body does not arrive.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: %d %s", resp.StatusCode, body)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	vreq, _ := http.NewRequest("POST", e.Base+"/haip/messages", strings.NewReader(""))
	vreq.Header = req.Header
	if ok, errs := v.ValidateHttpResponse(vreq, resp); !ok {
		for _, e := range errs {
			t.Errorf("408 does not match openapi.json: %s: %s%s", e.Message, e.Reason, schemaErrors(e.SchemaValidationErrors))
		}
	}
}
