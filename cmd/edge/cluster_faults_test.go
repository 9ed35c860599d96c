package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/localcluster"
	"github.com/haipfabric/haipfabric/internal/sse"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
)

// In a cluster, an edge is SIGKILLed while the agent (in a toolworker
// process) streams: the client resumes on the other edge and gets the
// rest, nothing lost or repeated.
func TestClusterEdgeKilled(t *testing.T) {
	t.Parallel()
	cl, edges := topology(t, localcluster.Options{Edges: 2, ToolWorkers: 1,
		ToolWorkerEnv: map[string]string{"DEMO_AGENT_DELAY": "30ms", "AGENT_ACK_WAIT": "3s", "BUILTIN_TOOLS": "false"}})
	e1, e2 := edges[0], edges[1]

	conn := dialUntil(t, e1, client.Options{}, 30*time.Second)
	if _, err := conn.SendText(context.Background(), "edge dies"); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, conn, 30*time.Second, func(*haip.Envelope) bool { return conn.LastSeq() >= 5 })
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.KillEdge(0); err != nil {
		t.Fatal(err)
	}
	last := conn.LastSeq()
	conn2 := dialUntil(t, e2, client.Options{Session: conn.Session(), LastRxSeq: &last}, 30*time.Second)
	rest, _ := readResuming(t, e2, conn2, 60*time.Second, func(_ *client.Conn, env *haip.Envelope) bool { return harness.IsRunFinished(env) })
	harness.CheckAnswer(t, append(first, rest...), "edge dies")
}

// In a cluster, a tool worker is SIGKILLed mid-call: another worker
// completes the call and the session holds exactly one TOOL_DONE.
func TestClusterToolWorkerKilled(t *testing.T) {
	t.Parallel()
	cl, edges := topology(t, localcluster.Options{Edges: 1, ToolWorkers: -1})
	toolWorkerKilledMidCall(t, edges[0].edgeProc, cl.NATSURLs())
}

// In a cluster, a streamed query of the sessions API is cut by an edge
// SIGKILL mid-answer and resumed on the other edge with Last-Event-ID:
// the run's envelopes arrive once each, in order, to RUN_FINISHED.
func TestClusterQueryStreamEdgeKilled(t *testing.T) {
	t.Parallel()
	cl, edges := topology(t, localcluster.Options{Edges: 2, ToolWorkers: 1,
		ToolWorkerEnv: map[string]string{"DEMO_AGENT_DELAY": "30ms", "AGENT_ACK_WAIT": "3s", "BUILTIN_TOOLS": "false"}})
	e1, e2 := edges[0], edges[1]
	var created struct{ SessionID string }
	if st := apiPost(t, e1.base+"/api/v1/sessions/create", e1.token, nil, &created); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	body := map[string]any{"sessionId": created.SessionID, "query": "edge dies mid stream"}
	resp := apiStream(t, e1.base, e1.token, body, "")
	rd := sse.NewReader(resp.Body, 1<<20)
	var envs []*haip.Envelope
	for parts := 0; parts < 3; {
		ev, err := rd.Next()
		if err != nil {
			t.Fatalf("first stream: %v after %d envelopes", err, len(envs))
		}
		if ev.ID == "" {
			continue
		}
		env, err := haip.Decode(ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, env)
		if env.Type == haip.TypeTextMessagePart {
			parts++
		}
	}
	if err := cl.KillEdge(0); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	last := strconv.FormatUint(uint64(envs[len(envs)-1].Seq), 10)
	resp2 := apiStream(t, e2.base, e2.token, body, last)
	defer resp2.Body.Close()
	rd = sse.NewReader(resp2.Body, 1<<20)
	for {
		ev, err := rd.Next()
		if err != nil {
			break
		}
		if ev.ID == "" {
			continue
		}
		env, err := haip.Decode(ev.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.ID != strconv.FormatUint(uint64(env.Seq), 10) {
			t.Fatalf("event id %s for seq %d", ev.ID, env.Seq)
		}
		envs = append(envs, env)
	}
	harness.CheckAnswer(t, envs, "edge dies mid stream")
}

// apiPost POSTs a JSON body to the sessions API and decodes the answer.
func apiPost(t *testing.T, url, token string, body any, out any) int {
	t.Helper()
	data, _ := json.Marshal(body)
	if body == nil {
		data = []byte("{}")
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0 // an edge going down: the caller retries or fails
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// apiStream starts (or, with lastEventID, resumes) a streamed query.
func apiStream(t *testing.T, base, token string, body any, lastEventID string) *http.Response {
	t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/sessions/query/stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("query stream: %d %s", resp.StatusCode, b)
	}
	return resp
}
