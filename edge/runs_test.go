package edge_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

type runsBody struct {
	Active []streams.RunState `json:"active"`
	Recent []streams.RunState `json:"recent"`
}

// runsCall makes an authenticated request to a session's runs endpoint.
func runsCall(t *testing.T, e *testEdge, tok, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.Base+"/haip/sessions/"+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func getRuns(t *testing.T, e *testEdge, tok, session string) runsBody {
	t.Helper()
	status, b := runsCall(t, e, tok, http.MethodGet, session+"/runs")
	if status != 200 {
		t.Fatalf("GET runs: %d %s", status, b)
	}
	var rb runsBody
	if err := json.Unmarshal(b, &rb); err != nil {
		t.Fatal(err)
	}
	return rb
}

func postCancel(t *testing.T, e *testEdge, tok, session, runID string) (int, httpErrorBody) {
	t.Helper()
	status, b := runsCall(t, e, tok, http.MethodPost, session+"/runs/"+runID+"/cancel")
	var eb httpErrorBody
	_ = json.Unmarshal(b, &eb)
	return status, eb
}

// A session may have MAX_CONCURRENT_RUNS runs queued or running; the next
// text is refused with RUN_LIMIT_EXCEEDED and not stored, and is accepted
// when sent again after a run has finished.
func TestRunLimit(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{MaxConcurrentRuns: 2})
	tok := f.Token("alice", auth.RoleUser)
	r := rawDial(t, tokenURL(e, tok))
	r.handshake()
	var ends []*haip.Envelope
	for i := range 3 {
		id := haip.NewUUID()
		r.send(haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: id, Text: "hello"})
		ends = append(ends, r.send(haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: id}))
		if i < 2 {
			r.pingPong("admitted")
		}
	}
	p := r.expectError(10 * time.Second)
	if p.Code != haip.CodeRunLimitExceeded || p.RelatedID != ends[2].ID {
		t.Fatalf("error %+v, want RUN_LIMIT_EXCEEDED for the third END", p)
	}
	if n := logLen(t, f, r.session, streams.In); n != 5 {
		t.Fatalf("%d messages stored, want 5 (the refused END is not)", n)
	}
	if rb := getRuns(t, e, tok, r.session); len(rb.Active) != 2 || rb.Active[0].Status != streams.RunQueued {
		t.Fatalf("runs %+v, want 2 queued", rb)
	}
	// An agent answers both; the third END goes through when sent again.
	f.Agent(-1)
	finished := 0
	r.expect(30*time.Second, func(e *haip.Envelope) bool {
		if e.Type == haip.TypeRunFinished {
			finished++
		}
		return finished == 2
	})
	testkit.Eventually(t, 10*time.Second, func() bool { return len(getRuns(t, e, tok, r.session).Active) == 0 }, "runs still active after they finished")
	r.sendEnv(ends[2])
	env, _ := r.expect(30*time.Second, func(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished })
	var fin haip.RunFinishedPayload
	_ = env.DecodePayload(&fin)
	if fin.Status != haip.RunStatusOK {
		t.Fatalf("third run ended %s", fin.Status)
	}
	// The run state is updated just after RUN_FINISHED is stored.
	var rb runsBody
	testkit.Eventually(t, 10*time.Second, func() bool { rb = getRuns(t, e, tok, r.session); return len(rb.Recent) == 3 }, "3 ended runs not recorded")
	for _, st := range rb.Recent {
		if st.Status != streams.RunOK || st.Agent == "" {
			t.Fatalf("recent run %+v", st)
		}
	}
}

// RUN_CANCEL, from the client (over each transport) or over HTTP, stops
// the agent's run, which cancels the tool call it waits for: TOOL_DONE
// CANCELLED, then RUN_FINISHED CANCELLED, and the run state says so.
func TestRunCancelStopsToolCall(t *testing.T) {
	t.Parallel()
	type tcase struct{ via, transport string }
	cases := []tcase{{"http", client.TransportWebSocket}}
	for _, tr := range client.Transports() {
		cases = append(cases, tcase{"client", tr})
	}
	for _, tc := range cases {
		via := tc.via
		t.Run(via+"/"+tc.transport, func(t *testing.T) {
			t.Parallel()
			f := newFabric(t, streams.Config{})
			e := f.Edge(edge.Config{})
			f.Agent(-1)
			f.Tools("w1", 2)
			tok := f.Token("alice", auth.RoleUser)
			c := f.Dial(e, client.Options{Token: tok, Transport: tc.transport})
			ctx := context.Background()
			if _, err := c.SendText(ctx, "sleep 60000"); err != nil {
				t.Fatal(err)
			}
			var runID, callID string
			harness.ReadUntil(t, c, 20*time.Second, func(env *haip.Envelope) bool {
				if env.Type == haip.TypeRunStarted {
					runID = env.RunID
				}
				if env.Type == haip.TypeToolUpdate {
					var p haip.ToolUpdatePayload
					_ = env.DecodePayload(&p)
					callID = p.CallID
					return p.Status == haip.ToolStatusRunning
				}
				return false
			})
			if runID == "" {
				t.Fatal("no RUN_STARTED before the tool ran")
			}
			if via == "client" {
				env, _ := haip.New(c.Session(), haip.ChannelUser, haip.TypeRunCancel, haip.RunCancelPayload{RunID: runID})
				env.RunID = runID
				if err := c.SendEnvelope(ctx, env); err != nil {
					t.Fatal(err)
				}
			} else if status, body := postCancel(t, e, tok, c.Session(), runID); status != http.StatusAccepted {
				t.Fatalf("POST cancel: %d %+v", status, body)
			}
			var toolDone *haip.ToolDonePayload
			envs := harness.ReadUntil(t, c, 20*time.Second, func(env *haip.Envelope) bool {
				if env.Type == haip.TypeToolDone {
					var p haip.ToolDonePayload
					_ = env.DecodePayload(&p)
					toolDone = &p
				}
				return env.Type == haip.TypeRunFinished
			})
			var fin haip.RunFinishedPayload
			_ = envs[len(envs)-1].DecodePayload(&fin)
			if fin.Status != haip.RunStatusCancelled || envs[len(envs)-1].RunID != runID {
				t.Fatalf("run ended %+v", fin)
			}
			if toolDone == nil || toolDone.CallID != callID || toolDone.Status != haip.ToolDoneCancelled {
				t.Fatalf("tool call ended %+v, want CANCELLED before the run ended", toolDone)
			}
			testkit.Eventually(t, 10*time.Second, func() bool {
				rb := getRuns(t, e, tok, c.Session())
				return len(rb.Active) == 0 && len(rb.Recent) == 1 && rb.Recent[0].Status == streams.RunCancelled
			}, "run state not CANCELLED")
		})
	}
}

// Cancelling a run the session does not have is RUN_NOT_FOUND (an ERROR,
// over each transport, or 404), and nothing is stored.
func TestRunCancelUnknown(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	tok := f.Token("alice", auth.RoleUser)
	ghost := haip.NewUUID()
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Token: tok, Transport: tr})
		cancel, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeRunCancel, haip.RunCancelPayload{RunID: ghost})
		if err != nil {
			t.Fatal(err)
		}
		if p := harness.ErrorPayload(t, harness.ReadControl(t, c, haip.TypeError, 10*time.Second)); p.Code != haip.CodeRunNotFound || p.RelatedID != cancel.ID {
			t.Fatalf("error %+v", p)
		}
		if n := logLen(t, f, c.Session(), streams.In); n != 0 {
			t.Fatalf("%d messages stored", n)
		}
	})
	r := f.Dial(e, client.Options{Token: tok})
	if status, body := postCancel(t, e, tok, r.Session(), ghost); status != http.StatusNotFound || body.Code != string(haip.CodeRunNotFound) {
		t.Fatalf("POST cancel of an unknown run: %d %+v", status, body)
	}
	if status, body := postCancel(t, e, f.Token("mallory", auth.RoleUser), r.Session(), ghost); status != http.StatusNotFound || body.Code != string(haip.CodeSessionNotFound) {
		t.Fatalf("POST cancel on another user's session: %d %+v", status, body)
	}
	if status, _ := postCancel(t, e, tok, r.Session(), "not-a-uuid"); status != http.StatusBadRequest {
		t.Fatalf("POST cancel with a bad run id: %d", status)
	}
}

// A run's envelopes carry its run_id and the thread_id of the message
// that started it, over each transport.
func TestRunCarriesThreadID(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	f.Agent(-1)
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr})
		id := haip.NewUUID()
		start, _ := haip.New(c.Session(), haip.ChannelUser, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: id, Text: "threaded"})
		end, _ := haip.New(c.Session(), haip.ChannelUser, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: id})
		for _, env := range []*haip.Envelope{start, end} {
			env.ThreadID = "support-42"
			if err := c.SendEnvelope(context.Background(), env); err != nil {
				t.Fatal(err)
			}
		}
		got := harness.ReadUntil(t, c, 30*time.Second, harness.IsRunFinished)
		runID := ""
		for _, env := range got {
			if env.ThreadID != "support-42" || env.RunID == "" || (runID != "" && env.RunID != runID) {
				t.Fatalf("%s with run %q thread %q", env.Type, env.RunID, env.ThreadID)
			}
			runID = env.RunID
		}
		if runID == "" {
			t.Fatal("no run messages")
		}
	})
}
