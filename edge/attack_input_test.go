package edge_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// Attacks with forged input: tokens the edge should not take, events a
// user should not send.

// Tokens with a NUL (or another control character) in "sub", or valid
// for a century, were accepted. Now both are refused before the upgrade,
// with the reason.
func TestAttackTokenSubjectAndLifetime(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	now := time.Now()
	century := now.AddDate(100, 0, 0).Unix()
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		reason string
	}{
		{"NUL in sub", jwt.MapClaims{"sub": "alice\x00admin", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, auth.ReasonClaims},
		{"newline in sub", jwt.MapClaims{"sub": "alice\nlevel=ERROR", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, auth.ReasonClaims},
		{"DEL in userId", jwt.MapClaims{"userId": "bob\x7f", "exp": now.Add(time.Hour).Unix()}, auth.ReasonClaims},
		{"century with iat", jwt.MapClaims{"sub": "alice", "iat": now.Unix(), "exp": century}, auth.ReasonLifetime},
		{"century without iat", jwt.MapClaims{"sub": "alice", "exp": century}, auth.ReasonLifetime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := signJWT(t, jwt.SigningMethodHS256, harness.Secret, tc.claims)
			status, b, raw := refusal(t, tokenURL(e, tok), nil)
			if status != http.StatusUnauthorized || b.Details["reason"] != tc.reason {
				t.Errorf("HTTP %d %s, want 401 with reason %s", status, raw, tc.reason)
			}
		})
	}
}

// A user could store the agent's own events (RUN_STARTED, RUN_FINISHED,
// RUN_ERROR, TOOL_UPDATE, TOOL_DONE) in the log agents read, forging a
// run's end or a tool's result. Now they are UNSUPPORTED_TYPE from a user
// on every transport, nothing is stored, and the edge's HAI no longer
// lists them as accepted (but TOOL_DONE, which decides an approval
// request of the session and nothing else).
func TestAttackUserSendsAgentEvents(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	runID, callID := haip.NewUUID(), haip.NewUUID()
	forged := []struct {
		typ     haip.Type
		payload any
	}{
		{haip.TypeRunStarted, map[string]any{}},
		{haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK}},
		{haip.TypeRunError, haip.ErrorPayload{Code: "X", Message: "forged"}},
		{haip.TypeToolUpdate, map[string]any{"call_id": callID, "status": "RUNNING"}},
		{haip.TypeToolDone, map[string]any{"call_id": callID, "status": "OK", "result": 42}},
	}

	// WebSocket.
	r := rawDial(t, tokenURL(e, tok))
	hai, _ := r.handshake()
	var accepts haip.HelloPayload
	if err := hai.DecodePayload(&accepts); err != nil {
		t.Fatal(err)
	}
	for _, fe := range forged {
		for _, typ := range accepts.AcceptEvents {
			// TOOL_DONE is listed: a user decides an approval request
			// with it (and with it only: the forged one below is refused).
			if typ == fe.typ && typ != haip.TypeToolDone {
				t.Errorf("the edge's HAI to a user lists %s as accepted", fe.typ)
			}
		}
		env := r.env(haip.ChannelSystem, fe.typ, fe.payload)
		env.RunID = runID
		r.sendEnv(env)
		if ep := r.expectError(5 * time.Second); ep.Code != haip.CodeUnsupportedType || ep.RelatedID != env.ID {
			t.Errorf("WebSocket %s: ERROR %+v, want UNSUPPORTED_TYPE", fe.typ, ep)
		}
	}
	// POST.
	var records [][]byte
	for _, fe := range forged {
		env, err := haip.New(r.session, haip.ChannelUser, fe.typ, fe.payload)
		if err != nil {
			t.Fatal(err)
		}
		env.RunID = runID
		records = append(records, encode(t, env))
	}
	_, pr := post(t, e.Base+"/haip/messages", tok, nil, records...)
	for i, res := range pr.Results {
		if res.Status != "error" || res.Error == nil || res.Error.Code != haip.CodeUnsupportedType {
			t.Errorf("POST %s: %+v, want UNSUPPORTED_TYPE", forged[i].typ, res)
		}
	}
	// HTTP streaming.
	hello, _ := haip.Encode(helloEnvelope(r.session))
	body := append(append(hello, '\n'), bytes.Join(records, []byte("\n"))...)
	s := openStream(t, nil, e.Base+"/haip/stream", tok, bytes.NewReader(append(body, '\n')), nil)
	for range forged {
		if ep := harness.ErrorPayload(t, s.nextOf(haip.TypeError)); ep.Code != haip.CodeUnsupportedType {
			t.Errorf("stream: ERROR %+v, want UNSUPPORTED_TYPE", ep)
		}
	}
	if n := logLen(t, f, r.session, streams.In); n != 0 {
		t.Fatalf("%d forged agent events stored in the log agents read", n)
	}

	// An agent still sends them.
	ag := rawDial(t, tokenURL(e, f.Token("bot", auth.RoleAgent)))
	ag.session = r.session
	ag.handshake()
	env := ag.env(haip.ChannelAgent, haip.TypeRunStarted, map[string]any{})
	env.RunID = runID
	ag.sendEnv(env)
	ag.pingPong("after RUN_STARTED")
	if n := logLen(t, f, r.session, streams.Out); n != 1 {
		t.Fatalf("agent's RUN_STARTED: %d messages in the log users read, want 1", n)
	}
}
