package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// apiCall sends one request of the sessions API and decodes the JSON
// answer (into out when not nil). It returns the status.
func apiCall(t testing.TB, base, token, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			data, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(data)
		}
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error, Code, Message string
		}
		if err := json.Unmarshal(data, &e); err != nil || e.Error == "" || e.Code == "" || e.Message == "" {
			t.Fatalf("%s %s: %d without the structured error: %s", method, path, resp.StatusCode, data)
		}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

type apiErr struct {
	Error, Code, Message string
	Details              map[string]any
}

type apiSession struct {
	ID          string
	Name        string
	Tags        []string
	CreatedAt   int64
	UpdatedAt   int64
	Metadata    map[string]any
	Active      *bool
	Connections *int
	LastSeq     *uint64
	LastInSeq   *uint64
	Runs        *struct{ Queued, Running, Finished, Failed, Cancelled int }
}

// TestAPISessionLifecycle drives the sessions API as a Tarko client
// would: create on one edge, query on another, list, details, update,
// the conversation, delete.
func TestAPISessionLifecycle(t *testing.T) {
	f := newFabric(t, streams.Config{})
	f.Agent(-1)
	a, b := f.Edge(edge.Config{}), f.Edge(edge.Config{})
	alice, bob := f.Token("alice", auth.RoleUser), f.Token("bob", auth.RoleUser)

	var created struct {
		SessionID string
		Session   apiSession
	}
	if st := apiCall(t, a.Base, alice, "POST", "/api/v1/sessions/create", map[string]any{"name": "first", "tags": []string{"work"}}, &created); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	if created.SessionID == "" || created.Session.Name != "first" || created.Session.Metadata["name"] != "first" {
		t.Fatalf("create answered %+v", created)
	}
	sid := created.SessionID
	// Created on edge a, queried on edge b.
	var res struct{ Result string }
	if st := apiCall(t, b.Base, alice, "POST", "/api/v1/sessions/query", map[string]any{"sessionId": sid, "query": "hi there"}, &res); st != 200 {
		t.Fatalf("query: %d", st)
	}
	if want := demo.Answer("hi there"); res.Result != want {
		t.Fatalf("result %q, want %q", res.Result, want)
	}
	// Tarko's content-part form.
	if st := apiCall(t, a.Base, alice, "POST", "/api/v1/sessions/query", map[string]any{"sessionId": sid, "query": []map[string]any{{"type": "text", "text": "again"}}}, &res); st != 200 || res.Result != demo.Answer("again") {
		t.Fatalf("query with parts: %d %q", st, res.Result)
	}
	var det struct{ Session apiSession }
	// The run state says finished just after RUN_FINISHED is stored.
	testkit.Eventually(t, 10*time.Second, func() bool {
		if st := apiCall(t, b.Base, alice, "GET", "/api/v1/sessions/details?sessionId="+sid, nil, &det); st != 200 {
			t.Fatalf("details: %d", st)
		}
		return det.Session.Runs != nil && det.Session.Runs.Finished == 2
	}, "the runs never finished")
	s := det.Session
	if s.Active == nil || *s.Active || s.LastSeq == nil || *s.LastSeq == 0 || *s.LastInSeq != 4 || s.Runs == nil || s.Runs.Finished != 2 {
		t.Fatalf("details: %+v (runs %+v)", s, s.Runs)
	}
	if s.UpdatedAt < s.CreatedAt {
		t.Fatalf("updatedAt %d before createdAt %d", s.UpdatedAt, s.CreatedAt)
	}
	// Update: name, tags, metadata (Tarko's form), the model choice agents read.
	var up struct{ Session apiSession }
	body := map[string]any{"sessionId": sid, "metadata": map[string]any{"name": "renamed", "tags": []string{"home"}, "modelConfig": map[string]any{"provider": "openai", "id": "gpt-x"}}}
	if st := apiCall(t, a.Base, alice, "POST", "/api/v1/sessions/update", body, &up); st != 200 || up.Session.Name != "renamed" || len(up.Session.Tags) != 1 {
		t.Fatalf("update: %d %+v", st, up.Session)
	}
	sessions, err := streams.OpenSessions(context.Background(), f.JS)
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := sessions.Get(context.Background(), sid)
	var mc streams.ModelConfig
	if ok, err2 := stored.Meta(streams.MetaModelConfig, &mc); err != nil || err2 != nil || !ok || mc.ID != "gpt-x" {
		t.Fatalf("stored model choice: %+v %v %v", mc, err, err2)
	}
	var bad apiErr
	if st := apiCall(t, a.Base, alice, "POST", "/api/v1/sessions/update", map[string]any{"sessionId": sid, "metadata": map[string]any{"modelConfig": map[string]any{"id": 7}}}, &bad); st != 400 {
		t.Fatalf("bad model choice: %d %+v", st, bad)
	}
	// Listing, newest first, by tag.
	var second struct{ SessionID string }
	apiCall(t, a.Base, alice, "POST", "/api/v1/sessions/create", map[string]any{"tags": []string{"home"}}, &second)
	apiCall(t, a.Base, bob, "POST", "/api/v1/sessions/create", nil, nil)
	var list struct {
		Sessions   []apiSession
		NextCursor *string
	}
	apiCall(t, b.Base, alice, "GET", "/api/v1/sessions", nil, &list)
	if len(list.Sessions) != 2 || list.Sessions[0].ID != second.SessionID || list.Sessions[1].ID != sid || list.NextCursor != nil {
		t.Fatalf("list: %+v", list)
	}
	apiCall(t, b.Base, alice, "GET", "/api/v1/sessions?limit=1&tag=home", nil, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != second.SessionID || list.NextCursor == nil {
		t.Fatalf("list by tag, page 1: %+v", list)
	}
	apiCall(t, b.Base, alice, "GET", "/api/v1/sessions?limit=1&tag=home&cursor="+*list.NextCursor, nil, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != sid {
		t.Fatalf("list by tag, page 2: %+v", list)
	}
	// The whole conversation, both directions in stored order.
	var conv struct {
		Messages []struct {
			Direction string
			Seq       uint64
			Envelope  haip.Envelope
		}
		HasBefore, HasAfter bool
	}
	apiCall(t, a.Base, alice, "GET", "/api/v1/sessions/"+sid+"/messages?limit=1000", nil, &conv)
	var ins, outs int
	var sawText bool
	for _, m := range conv.Messages {
		if m.Direction == "in" {
			ins++
			var p haip.TextMessageStartPayload
			if m.Envelope.Type == haip.TypeTextMessageStart && m.Envelope.DecodePayload(&p) == nil && p.Text == "hi there" {
				sawText = true
			}
		} else {
			outs++
		}
	}
	if ins != 4 || outs != int(*s.LastSeq) || !sawText || conv.Messages[0].Direction != "in" {
		t.Fatalf("conversation: %d in, %d out (want 4 and %d), user text seen %v", ins, outs, *s.LastSeq, sawText)
	}
	// Bob is refused Alice's session exactly as a session that does not exist.
	var foreign, missing apiErr
	stF := apiCall(t, a.Base, bob, "GET", "/api/v1/sessions/details?sessionId="+sid, nil, &foreign)
	stM := apiCall(t, a.Base, bob, "GET", "/api/v1/sessions/details?sessionId=no-such-session", nil, &missing)
	if stF != 404 || stM != 404 || foreign.Code != missing.Code || foreign.Error != missing.Error {
		t.Fatalf("foreign %d %+v, missing %d %+v", stF, foreign, stM, missing)
	}
	for _, path := range []string{"/api/v1/sessions/query", "/api/v1/sessions/delete", "/api/v1/sessions/update", "/api/v1/sessions/abort", "/api/v1/sessions/restore"} {
		if st := apiCall(t, b.Base, bob, "POST", path, map[string]any{"sessionId": sid, "query": "x"}, nil); st != 404 {
			t.Fatalf("bob %s: %d, want 404", path, st)
		}
	}
	if st := apiCall(t, b.Base, bob, "GET", "/api/v1/sessions/"+sid+"/messages", nil, nil); st != 404 {
		t.Fatalf("bob's messages: %d", st)
	}
	// A live connection on the other edge is closed when the session is deleted.
	c := f.Dial(b, client.Options{URL: b.WS, Token: alice, Session: sid})
	var del struct{ Success bool }
	if st := apiCall(t, a.Base, alice, "POST", "/api/v1/sessions/delete", map[string]any{"sessionId": sid}, &del); st != 200 || !del.Success {
		t.Fatalf("delete: %d", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := c.Read(ctx)
		if err == nil {
			continue
		}
		if code, _ := client.CloseStatus(err); int(code) != int(edge.CloseSessionDeleted) {
			t.Fatalf("connection ended with %v, want close %d", err, edge.CloseSessionDeleted)
		}
		break
	}
	if st := apiCall(t, b.Base, alice, "GET", "/api/v1/sessions/details?sessionId="+sid, nil, nil); st != 404 {
		t.Fatalf("details after delete: %d", st)
	}
	if bnd, err := f.Log().Bounds(ctx, sid, streams.Out); err != nil || bnd.Last.Seq != 0 {
		t.Fatalf("log after delete: %+v %v", bnd, err)
	}
	// Nobody opens a deleted id again, not even its owner.
	if _, err := harness.TryDial(t, a, client.Options{URL: a.WS, Token: bob, Session: sid}); err == nil {
		t.Fatal("bob opened a deleted session")
	}
	apiCall(t, b.Base, alice, "GET", "/api/v1/sessions", nil, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != second.SessionID {
		t.Fatalf("list after delete: %+v", list)
	}
	// One-shot.
	var one struct{ SessionID, Result string }
	if st := apiCall(t, a.Base, alice, "POST", "/api/v1/oneshot/query", map[string]any{"query": "once", "sessionName": "quick", "sessionTags": []string{"x"}}, &one); st != 200 || one.Result != demo.Answer("once") || one.SessionID == "" {
		t.Fatalf("oneshot: %d %+v", st, one)
	}
	apiCall(t, a.Base, alice, "GET", "/api/v1/sessions/details?sessionId="+one.SessionID, nil, &det)
	if det.Session.Name != "quick" {
		t.Fatalf("oneshot session: %+v", det.Session)
	}
	var health struct{ Status string }
	if st := apiCall(t, a.Base, "", "GET", "/api/v1/system/health", nil, &health); st != 200 || health.Status != "ok" {
		t.Fatalf("health: %d %+v", st, health)
	}
}

// sseEvent is one event of a query stream.
type sseEvent struct {
	id, name string
	data     []byte
}

// readSSE reads events from r until stop says so or the stream ends.
func readSSE(t testing.TB, r io.Reader, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.data != nil || ev.id != "" {
				out = append(out, ev)
				if stop != nil && stop(ev) {
					return out
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = append(ev.data, line[6:]...)
		}
	}
	return out
}

func streamQuery(t testing.TB, base, token string, body map[string]any, lastID string) *http.Response {
	t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", base+"/api/v1/sessions/query/stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("query stream: %d %s", resp.StatusCode, b)
	}
	return resp
}

// TestAPIQueryStreamResume cuts a streamed query mid-answer (its edge is
// stopped) and resumes it on another edge with Last-Event-ID: the run's
// envelopes arrive once each, in order, up to RUN_FINISHED.
func TestAPIQueryStreamResume(t *testing.T) {
	f := newFabric(t, streams.Config{})
	f.Agent(20 * time.Millisecond)
	a, b := f.Edge(edge.Config{}), f.Edge(edge.Config{})
	alice := f.Token("alice", auth.RoleUser)
	var created struct{ SessionID string }
	apiCall(t, a.Base, alice, "POST", "/api/v1/sessions/create", nil, &created)
	body := map[string]any{"sessionId": created.SessionID, "query": "tell me something long"}
	resp := streamQuery(t, a.Base, alice, body, "")
	first := readSSE(t, resp.Body, func(e sseEvent) bool {
		return e.id != "" && len(e.id) > 0 && e.name == "" && strings.Contains(string(e.data), "TEXT_MESSAGE_PART")
	})
	a.Stop() // the edge goes, mid-answer
	resp.Body.Close()
	if len(first) < 2 || first[0].name != "query" {
		t.Fatalf("first part: %d events", len(first))
	}
	last := first[len(first)-1].id
	resp2 := streamQuery(t, b.Base, alice, body, last)
	defer resp2.Body.Close()
	rest := readSSE(t, resp2.Body, nil)
	var envs []*haip.Envelope
	for _, ev := range append(first[1:], rest[1:]...) {
		if ev.id == "" {
			continue
		}
		env, err := haip.Decode(ev.data)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(uint64(env.Seq)) != ev.id {
			t.Fatalf("event id %s for seq %d", ev.id, env.Seq)
		}
		envs = append(envs, env)
	}
	harness.AssertDense(t, envs, uint64(envs[0].Seq))
	if envs[len(envs)-1].Type != haip.TypeRunFinished {
		t.Fatalf("stream ended with %s", envs[len(envs)-1].Type)
	}
	if got := harness.AnswerText(t, envs); got != demo.Answer("tell me something long") {
		t.Fatalf("answer %q", got)
	}
}

// TestAPISecondDeviceSeesUserSide: what one device sends, the user's
// other device (opted in to the user side) receives, and existing
// connections without the opt-in see exactly the agent side.
func TestAPISecondDeviceSeesUserSide(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr string) {
		f := newFabric(t, streams.Config{})
		f.Agent(-1)
		e := f.Edge(edge.Config{})
		alice := f.Token("alice", auth.RoleUser)
		sid := haip.NewUUID()
		phone := f.Dial(e, client.Options{URL: e.Base, Transport: tr, Token: alice, Session: sid})
		if phone.Hello.Capabilities != nil && phone.Hello.Capabilities.Conversation != "" {
			t.Fatalf("no opt-in, yet the edge says %q", phone.Hello.Capabilities.Conversation)
		}
		laptop := f.Dial(e, client.Options{URL: e.Base, Transport: tr, Token: alice, Session: sid, Conversation: "both"})
		if laptop.Hello.Capabilities == nil || laptop.Hello.Capabilities.Conversation != "both" {
			t.Fatalf("opt-in not confirmed: %+v", laptop.Hello.Capabilities)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		msgID, err := phone.SendText(ctx, "from the phone")
		if err != nil {
			t.Fatal(err)
		}
		var echoed []*haip.Envelope
		seen := map[string]bool{}
		all := harness.ReadUntil(t, laptop, 20*time.Second, harness.IsRunFinished)
		var last uint64
		for _, env := range all {
			if uint64(env.Seq) > last {
				last = uint64(env.Seq)
				continue
			}
			if env.Channel == haip.ChannelUser && !seen[env.ID] {
				seen[env.ID] = true
				echoed = append(echoed, env)
			}
		}
		var text string
		for _, env := range echoed {
			var p haip.TextMessageStartPayload
			if env.Type == haip.TypeTextMessageStart && env.DecodePayload(&p) == nil && p.MessageID == msgID {
				text = p.Text
			}
			var q haip.TextMessagePartPayload
			if env.Type == haip.TypeTextMessagePart && env.DecodePayload(&q) == nil && q.MessageID == msgID {
				text += q.Text
			}
		}
		if text != "from the phone" {
			t.Fatalf("laptop saw the user side as %q (%d echoes)", text, len(echoed))
		}
		// The phone, without the opt-in, saw only the agent side.
		for _, env := range harness.ReadUntil(t, phone, 20*time.Second, harness.IsRunFinished) {
			if env.Channel == haip.ChannelUser {
				t.Fatalf("phone without the opt-in got %s on USER", env.Type)
			}
		}
	})
}

// TestAPIBadInput: every kind of bad request gets a 4xx with the
// structured error, never a 500 or a hang.
func TestAPIBadInput(t *testing.T) {
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	alice := f.Token("alice", auth.RoleUser)
	var created struct{ SessionID string }
	apiCall(t, e.Base, alice, "POST", "/api/v1/sessions/create", nil, &created)
	sid := created.SessionID
	big := `{"sessionId":"` + sid + `","query":"` + strings.Repeat("a", 2<<20) + `"}`
	cases := []struct {
		name, method, path, token string
		body                      any
		want                      int
	}{
		{"no token", "GET", "/api/v1/sessions", "", nil, 401},
		{"bad token", "GET", "/api/v1/sessions", "nope", nil, 401},
		{"malformed json", "POST", "/api/v1/sessions/query", alice, `{"sessionId":`, 400},
		{"trailing data", "POST", "/api/v1/sessions/query", alice, `{"sessionId":"x"} {}`, 400},
		{"not an object", "POST", "/api/v1/sessions/query", alice, `[1,2]`, 400},
		{"wrong type", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": 12, "query": "x"}, 400},
		{"missing session", "POST", "/api/v1/sessions/query", alice, map[string]any{"query": "x"}, 400},
		{"bad session id", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": "a.b", "query": "x"}, 400},
		{"unknown session", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": "nope", "query": "x"}, 404},
		{"no query", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": sid}, 400},
		{"empty query", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": sid, "query": "  "}, 400},
		{"image query", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": sid, "query": []any{map[string]any{"type": "image_url"}}}, 400},
		{"query of a number", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": sid, "query": 5}, 400},
		{"bad message id", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": sid, "query": "x", "messageId": "m1"}, 400},
		{"negative timeout", "POST", "/api/v1/sessions/query", alice, map[string]any{"sessionId": sid, "query": "x", "timeoutMs": -1}, 400},
		{"oversize body", "POST", "/api/v1/sessions/query", alice, big, 413},
		{"bad list cursor", "GET", "/api/v1/sessions?cursor=zzz", alice, nil, 400},
		{"bad list limit", "GET", "/api/v1/sessions?limit=0", alice, nil, 400},
		{"bad list limit word", "GET", "/api/v1/sessions?limit=ten", alice, nil, 400},
		{"bad tag", "GET", "/api/v1/sessions?tag=%00", alice, nil, 400},
		{"bad messages cursor", "GET", "/api/v1/sessions/" + sid + "/messages?cursor=abc", alice, nil, 400},
		{"bad messages direction", "GET", "/api/v1/sessions/" + sid + "/messages?direction=up", alice, nil, 400},
		{"bad messages limit", "GET", "/api/v1/sessions/" + sid + "/messages?limit=5000", alice, nil, 400},
		{"details without id", "GET", "/api/v1/sessions/details", alice, nil, 400},
		{"too many tags", "POST", "/api/v1/sessions/update", alice, map[string]any{"sessionId": sid, "tags": make([]string, 17)}, 400},
		{"control char name", "POST", "/api/v1/sessions/update", alice, map[string]any{"sessionId": sid, "name": "a\u0001"}, 400},
		{"metadata name of a number", "POST", "/api/v1/sessions/update", alice, map[string]any{"sessionId": sid, "metadata": map[string]any{"name": 1}}, 400},
		{"agent settings of a wrong shape", "POST", "/api/v1/sessions/update", alice, map[string]any{"sessionId": sid, "metadata": map[string]any{"agentSettings": map[string]any{"temperature": "hot"}}}, 400},
		{"create with bad tags", "POST", "/api/v1/sessions/create", alice, map[string]any{"tags": []string{""}}, 400},
		{"oneshot without query", "POST", "/api/v1/oneshot/query", alice, map[string]any{"sessionName": "x"}, 400},
		{"unknown route", "GET", "/api/v1/nothing", alice, nil, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if st := apiCall(t, e.Base, c.token, c.method, c.path, c.body, nil); st != c.want {
				t.Fatalf("%s %s: %d, want %d", c.method, c.path, st, c.want)
			}
		})
	}
	// Another media type is refused before anything is read.
	req, _ := http.NewRequest("POST", e.Base+"/api/v1/sessions/create", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d", resp.StatusCode)
	}
	// A resume naming a seq the session never had.
	data, _ := json.Marshal(map[string]any{"sessionId": sid, "query": "x"})
	req, _ = http.NewRequest("POST", e.Base+"/api/v1/sessions/query/stream", bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "application/json")
	for _, id := range []string{"abc", "0", "99999"} {
		req.Header.Set("Last-Event-ID", id)
		req.Body = io.NopCloser(bytes.NewReader(data))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("Last-Event-ID %s: %d", id, resp.StatusCode)
		}
	}
}

// TestAPIQueryTimeout: a run that does not end in time is a 504 naming
// the run; the run goes on and its answer can be streamed with the same
// messageId.
func TestAPIQueryTimeout(t *testing.T) {
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	alice := f.Token("alice", auth.RoleUser)
	var created struct{ SessionID string }
	apiCall(t, e.Base, alice, "POST", "/api/v1/sessions/create", nil, &created)
	msgID := haip.NewUUID()
	var to apiErr
	// No agent runs yet: the run stays queued.
	if st := apiCall(t, e.Base, alice, "POST", "/api/v1/sessions/query", map[string]any{"sessionId": created.SessionID, "query": "wait", "messageId": msgID, "timeoutMs": 200}, &to); st != http.StatusGatewayTimeout {
		t.Fatalf("timeout: %d %+v", st, to)
	}
	if to.Code != "QUERY_TIMEOUT" || to.Details["runId"] != haip.NameUUID("run", created.SessionID, msgID) {
		t.Fatalf("timeout answer: %+v", to)
	}
	f.Agent(-1)
	// The same messageId: stored once, run once, its answer streamed.
	resp := streamQuery(t, e.Base, alice, map[string]any{"sessionId": created.SessionID, "query": "wait", "messageId": msgID}, "")
	defer resp.Body.Close()
	var envs []*haip.Envelope
	for _, ev := range readSSE(t, resp.Body, nil) {
		if ev.id != "" {
			env, err := haip.Decode(ev.data)
			if err != nil {
				t.Fatal(err)
			}
			envs = append(envs, env)
		}
	}
	if got := harness.AnswerText(t, envs); got != demo.Answer("wait") {
		t.Fatalf("answer %q", got)
	}
	var det struct{ Session apiSession }
	testkit.Eventually(t, 10*time.Second, func() bool {
		apiCall(t, e.Base, alice, "GET", "/api/v1/sessions/details?sessionId="+created.SessionID, nil, &det)
		return det.Session.Runs != nil && det.Session.Runs.Running == 0 && det.Session.Runs.Queued == 0
	}, "the run never finished")
	if det.Session.Runs.Finished != 1 || *det.Session.LastInSeq != 2 {
		t.Fatalf("the query ran more than once: %+v, %d in", det.Session.Runs, *det.Session.LastInSeq)
	}
}
