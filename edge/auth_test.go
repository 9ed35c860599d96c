package edge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// refusal dials url expecting a refusal before the upgrade, and returns
// the HTTP status and decoded JSON error body.
func refusal(t *testing.T, url string, hdr http.Header) (int, httpErrorBody, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err == nil {
		_ = ws.CloseNow()
		t.Fatalf("upgraded; want a refusal before the upgrade")
	}
	if resp == nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("HTTP %d with Content-Type %q", resp.StatusCode, ct)
	}
	raw, _ := io.ReadAll(resp.Body)
	b := decodeHTTPError(t, raw)
	if b.Error == "" || b.Code == "" || b.Message == "" {
		t.Fatalf("HTTP %d body %s lacks error, code or message", resp.StatusCode, raw)
	}
	return resp.StatusCode, b, string(raw)
}

// signJWT signs claims with method and key, bypassing auth.Signer's checks.
func signJWT(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A bad token is refused before the upgrade with 401 and a JSON body
// saying why, whether it comes in the query or in a Bearer header; a good
// one is accepted both ways.
func TestAuthToken(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "role": "user", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	hs := func(mod func(jwt.MapClaims)) string {
		return signJWT(t, jwt.SigningMethodHS256, harness.Secret, claims(mod))
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := f.Token("alice", auth.RoleUser)
	parts := strings.Split(valid, ".")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","role":"admin","exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`))

	cases := []struct {
		name, token, reason string
	}{
		{"garbage", "garbage", auth.ReasonMalformed},
		{"three garbage segments", "a.b.c", auth.ReasonMalformed},
		{"alg none", signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), auth.ReasonAlgorithm},
		{"ES256 not configured", signJWT(t, jwt.SigningMethodES256, ecKey, claims(nil)), auth.ReasonAlgorithm},
		{"HS256 with another secret", signJWT(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-another"), claims(nil)), auth.ReasonSignature},
		{"expired", hs(func(c jwt.MapClaims) {
			c["iat"] = now.Add(-2 * time.Hour).Unix()
			c["exp"] = now.Add(-time.Hour).Unix()
		}), auth.ReasonExpired},
		{"nbf in the future", hs(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), auth.ReasonNotYetValid},
		{"missing exp", hs(func(c jwt.MapClaims) { delete(c, "exp") }), auth.ReasonNoExpiry},
		{"missing sub", hs(func(c jwt.MapClaims) { delete(c, "sub") }), auth.ReasonNoSubject},
		{"bad role", hs(func(c jwt.MapClaims) { c["role"] = "root" }), auth.ReasonRole},
		{"tampered payload", parts[0] + "." + forged + "." + parts[2], auth.ReasonSignature},
	}
	check := func(t *testing.T, status int, b httpErrorBody, raw, token, reason string) {
		t.Helper()
		if status != http.StatusUnauthorized || b.Code != string(haip.CodeAuthenticationFailed) || b.Details["reason"] != reason {
			t.Fatalf("HTTP %d %s, want 401 AUTHENTICATION_FAILED with details.reason %q", status, raw, reason)
		}
		if token != "" && strings.Contains(raw, token) {
			t.Fatalf("the refusal echoes the token: %s", raw)
		}
	}
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		status, b, raw := refusal(t, e.WS, nil)
		check(t, status, b, raw, "", auth.ReasonMissing)
	})
	t.Run("empty bearer", func(t *testing.T) {
		t.Parallel()
		status, b, raw := refusal(t, e.WS, http.Header{"Authorization": {"Bearer "}})
		check(t, status, b, raw, "", auth.ReasonMissing)
	})
	for _, tc := range cases {
		t.Run(tc.name+"/query", func(t *testing.T) {
			t.Parallel()
			status, b, raw := refusal(t, e.WS+"?token="+url.QueryEscape(tc.token), nil)
			check(t, status, b, raw, tc.token, tc.reason)
		})
		t.Run(tc.name+"/header", func(t *testing.T) {
			t.Parallel()
			status, b, raw := refusal(t, e.WS, http.Header{"Authorization": {"Bearer " + tc.token}})
			check(t, status, b, raw, tc.token, tc.reason)
		})
	}
	for _, inHeader := range []bool{false, true} {
		name := "valid/query"
		if inHeader {
			name = "valid/header"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := client.Dial(context.Background(), client.Options{URL: e.WS, Token: valid, TokenInHeader: inHeader})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "x"}); err != nil {
				t.Fatal(err)
			}
			harness.ReadControl(t, c, haip.TypePong, 5*time.Second)
		})
	}
}

// An invalid ?session= is refused with 400 before the upgrade, and
// creates nothing.
func TestAuthBadSessionQuery(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	for _, id := range []string{"a.b", "a*", "a>", "a b", "a%20b", "a\tb", "été", "a\x00b", strings.Repeat("a", 129)} {
		t.Run(url.QueryEscape(id), func(t *testing.T) {
			t.Parallel()
			status, b, raw := refusal(t, tokenURL(e, tok)+"&session="+url.QueryEscape(id), nil)
			if status != http.StatusBadRequest || b.Code != string(haip.CodeProtocolViolation) {
				t.Fatalf("HTTP %d %s, want 400 PROTOCOL_VIOLATION", status, raw)
			}
		})
	}
	t.Cleanup(func() {
		// Runs after the parallel subtests: nothing was created.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sess, err := streams.OpenSessions(ctx, f.JS)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := sess.Count(ctx); err != nil || n != 0 {
			t.Errorf("%d sessions exist (%v), want none", n, err)
		}
		if subjects := sessionSubjects(t, f); len(subjects) != 0 {
			t.Errorf("session subjects %v, want none", subjects)
		}
		if st := e.Srv.Stats(ctx); st.TotalConnections != 0 {
			t.Errorf("%d connections were accepted", st.TotalConnections)
		}
	})
}

// sessionSubjects lists every subject holding messages in the session
// stream.
func sessionSubjects(t *testing.T, f *fabric) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := f.JS.Stream(ctx, streams.SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

// A session belongs to the user who opened it: another user is refused
// (403 before the upgrade with ?session=, SESSION_FORBIDDEN and 1008 when
// the session is named in HAI), an agent may attach, an allow-list claim
// narrows a token further, and the owner is unaffected by all of it.
func TestAuthForeignSession(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := f.Dial(e, client.Options{})
	S := alice.Session()
	bob := f.Token("bob", auth.RoleUser)
	sessions, err := streams.OpenSessions(ctx, f.JS)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("other user with ?session=", func(t *testing.T) {
		status, b, raw := refusal(t, tokenURL(e, bob)+"&session="+S, nil)
		if status != http.StatusForbidden || b.Code != string(haip.CodeSessionForbidden) {
			t.Fatalf("HTTP %d %s, want 403 SESSION_FORBIDDEN", status, raw)
		}
		_, err := f.TryDial(e, client.Options{Token: bob, Session: S, SessionInQuery: true})
		var he *client.HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusForbidden {
			t.Fatalf("client.Dial: %v, want HTTP 403", err)
		}
	})
	t.Run("other user naming it in HAI", func(t *testing.T) {
		_, err := f.TryDial(e, client.Options{Token: bob, Session: S})
		if haip.CodeOf(err) != haip.CodeSessionForbidden {
			t.Fatalf("client.Dial: %v, want *haip.Error SESSION_FORBIDDEN", err)
		}
		r := rawDial(t, tokenURL(e, bob))
		r.session = S
		hello := r.send(haip.ChannelSystem, haip.TypeHAI, helloPayload())
		code, got := r.expectClose(10 * time.Second)
		if code != websocket.StatusPolicyViolation || len(got) == 0 || got[0].Type != haip.TypeError {
			t.Fatalf("close %v after %s, want ERROR then 1008", code, types(got))
		}
		if ep := harness.ErrorPayload(t, got[0]); ep.Code != haip.CodeSessionForbidden || ep.RelatedID != hello.ID {
			t.Fatalf("ERROR %+v, want SESSION_FORBIDDEN related to %s", ep, hello.ID)
		}
	})
	t.Run("agent and admin attach", func(t *testing.T) {
		for _, role := range []auth.Role{auth.RoleAgent, auth.RoleAdmin} {
			for _, inQuery := range []bool{false, true} {
				c := f.Dial(e, client.Options{Token: f.Token("svc-"+string(role), role), Session: S, SessionInQuery: inQuery})
				if _, err := c.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "x"}); err != nil {
					t.Fatal(err)
				}
				harness.ReadControl(t, c, haip.TypePong, 5*time.Second)
				_ = c.Close()
			}
		}
	})
	t.Run("allow-list without the session", func(t *testing.T) {
		carol, err := f.Signer.Mint(auth.MintOptions{Subject: "carol", TTL: time.Hour, Sessions: []string{"carols-only"}})
		if err != nil {
			t.Fatal(err)
		}
		fresh := haip.NewUUID()
		for _, id := range []string{S, fresh} {
			status, b, raw := refusal(t, tokenURL(e, carol)+"&session="+id, nil)
			if status != http.StatusForbidden || b.Code != string(haip.CodeSessionForbidden) {
				t.Fatalf("session %s: HTTP %d %s, want 403 SESSION_FORBIDDEN", id, status, raw)
			}
		}
		if _, found, err := sessions.Get(ctx, fresh); err != nil || found {
			t.Fatalf("refused session %s was created (%v)", fresh, err)
		}
		// The list does allow its own entry.
		c := f.Dial(e, client.Options{Token: carol, Session: "carols-only", SessionInQuery: true})
		_ = c.Close()
	})
	t.Run("allow-list without a new session named in HAI", func(t *testing.T) {
		carol, err := f.Signer.Mint(auth.MintOptions{Subject: "carol", TTL: time.Hour, Sessions: []string{"carols-only"}})
		if err != nil {
			t.Fatal(err)
		}
		fresh := haip.NewUUID()
		_, err = f.TryDial(e, client.Options{Token: carol, Session: fresh})
		if haip.CodeOf(err) != haip.CodeSessionForbidden {
			t.Fatalf("client.Dial: %v, want *haip.Error SESSION_FORBIDDEN", err)
		}
		if _, found, err := sessions.Get(ctx, fresh); err != nil || found {
			t.Fatalf("refused session %s was created (%v)", fresh, err)
		}
	})
	t.Run("owner unaffected", func(t *testing.T) {
		if _, err := alice.Send(ctx, haip.ChannelSystem, haip.TypePing, haip.PingPayload{Nonce: "still-mine"}); err != nil {
			t.Fatal(err)
		}
		for {
			env := harness.ReadControl(t, alice, haip.TypePong, 5*time.Second)
			if pingNonce(t, env) == "still-mine" {
				break
			}
		}
		rec, found, err := sessions.Get(ctx, S)
		if err != nil || !found || rec.Owner != "alice" {
			t.Fatalf("session record %+v found %v err %v, want owner alice", rec, found, err)
		}
		again := f.Dial(e, client.Options{Session: S, SessionInQuery: true})
		_ = again.Close()
		if n := logLen(t, f, S, streams.In); n != 0 {
			t.Fatalf("%d messages in alice's session, want none", n)
		}
	})
}

// Session ids that would escape their subject ("a.b", "*", ">", "a b")
// are refused in the HAI envelope with PROTOCOL_VIOLATION, and nothing is
// created for them: the only session subjects that exist afterwards are
// those of a valid session.
func TestAuthSessionInjection(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	r := rawDial(t, tokenURL(e, tok))
	valid := r.session
	for _, bad := range []string{"a.b", "*", ">", "a b", "a.>", "haip.session.x", strings.Repeat("s", 129)} {
		hello := r.env(haip.ChannelSystem, haip.TypeHAI, helloPayload())
		hello.Session = bad // haip.New refuses it; Encode does not check
		r.sendEnv(hello)
		ep := r.expectError(5 * time.Second)
		if ep.Code != haip.CodeProtocolViolation || ep.RelatedID != hello.ID {
			t.Fatalf("session %q: ERROR %+v, want PROTOCOL_VIOLATION related to %s", bad, ep, hello.ID)
		}
		text := r.env(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: haip.NewUUID(), Text: "x"})
		text.Session = bad
		r.sendEnv(text)
		if ep := r.expectError(5 * time.Second); ep.Code != haip.CodeProtocolViolation {
			t.Fatalf("session %q text: ERROR %+v", bad, ep)
		}
	}
	// The same connection can still bind a valid session and use it.
	r.handshake()
	msgID := haip.NewUUID()
	r.send(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msgID, Text: "x"})
	r.pingPong("stored")

	subjectRE := regexp.MustCompile(`^haip\.session\.([A-Za-z0-9_-]{1,128})\.(in|out)$`)
	subjects := sessionSubjects(t, f)
	if len(subjects) == 0 {
		t.Fatal("the valid session has no subject")
	}
	for subj := range subjects {
		m := subjectRE.FindStringSubmatch(subj)
		if m == nil || m[1] != valid {
			t.Fatalf("unexpected subject %q in %s", subj, streams.SessionStream)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := f.JS.KeyValue(ctx, streams.SessionBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		if k != valid {
			t.Fatalf("unexpected session record %q", k)
		}
	}
}
