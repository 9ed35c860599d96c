package edge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// The fairness tests run one user's flood and measure how long another
// user's work waits behind it. They do not run in parallel with other
// tests: they measure latency on a machine they must not share.
const (
	flooder = "mallory"
	victim  = "bob"
	// fairWait is how long the other user's work may wait.
	fairWait = time.Second
	// floodRunSessions × floodRunsPerSession runs are queued by the
	// flooder, the most the default MAX_CONCURRENT_RUNS admits.
	floodRunSessions    = 150
	floodRunsPerSession = edge.DefaultMaxConcurrentRuns
	// floodCalls long sleep calls are queued by the flooder in one session.
	floodCalls = 2000
	// floodPosts is how many POSTs the flooder has in flight at once,
	// floodPerPost the most envelopes one POST may carry.
	floodPosts   = 8
	floodPerPost = 1000
)

// floodAndVictimInOtherShards makes sure the test measures what it means
// to: users who share a shard share its queue (the per-user caps of the
// edge bound that case).
func floodAndVictimInOtherShards(t *testing.T) {
	t.Helper()
	if streams.UserShard(flooder) == streams.UserShard(victim) {
		t.Fatalf("%s and %s share shard %d: pick other names", flooder, victim, streams.UserShard(flooder))
	}
}

// TestAttackRunFloodFairness: one user queues 1,200 runs over 150
// sessions; another user's run starts (RUN_STARTED in its log) within a
// second all the same.
func TestAttackRunFloodFairness(t *testing.T) {
	floodAndVictimInOtherShards(t)
	f := newFabric(t, streams.Config{})
	// The queues must be fair even to a flood the per-user limits would
	// stop at the edge (a user spread over many edges): measured with
	// them off.
	cfg := edge.Config{}
	cfg.NoUserLimits()
	e := f.Edge(cfg)
	f.Agent(20 * time.Millisecond)

	var bodies [][]byte
	for range floodRunSessions {
		session := haip.NewUUID()
		var lines [][]byte
		for i := range floodRunsPerSession {
			id := haip.NewUUID()
			lines = append(lines, encodeEnv(t, session, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: id, Text: fmt.Sprint("flood ", i)}),
				encodeEnv(t, session, haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: id}))
		}
		bodies = append(bodies, bytes.Join(lines, []byte("\n")))
	}
	began := time.Now()
	flood(t, e.Base+"/haip/messages", f.Token(flooder, auth.RoleUser), bodies)
	t.Logf("%d runs queued by %s in %s; %d still queued", floodRunSessions*floodRunsPerSession, flooder,
		time.Since(began).Round(time.Millisecond), queued(t, f, streams.RunStream))

	c := f.Dial(e, client.Options{Token: f.Token(victim, auth.RoleUser)})
	sent := time.Now()
	if _, err := c.SendText(context.Background(), "am I next?"); err != nil {
		t.Fatal(err)
	}
	harness.ReadUntil(t, c, 2*time.Minute, func(env *haip.Envelope) bool { return env.Type == haip.TypeRunStarted })
	waited := time.Since(sent)
	t.Logf("%s's run started %s after it was sent; %d of the flood still queued", victim, waited.Round(time.Millisecond), queued(t, f, streams.RunStream))
	if waited > fairWait {
		t.Fatalf("%s's run waited %s behind %s's flood, want at most %s", victim, waited.Round(time.Millisecond), flooder, fairWait)
	}
}

// TestAttackToolFloodFairness: one user queues 2,000 long sleep calls in
// one session; another user's sleep(0) finishes (TOOL_DONE) within a
// second all the same.
func TestAttackToolFloodFairness(t *testing.T) {
	floodAndVictimInOtherShards(t)
	f := newFabric(t, streams.Config{})
	cfg := edge.Config{}
	cfg.NoUserLimits() // as above
	e := f.Edge(cfg)
	f.Tools("tools", 8)

	session := haip.NewUUID()
	params, _ := json.Marshal(map[string]int{"ms": 60_000})
	var bodies [][]byte
	for batch := 0; batch < floodCalls; batch += floodPerPost {
		var lines [][]byte
		for range min(floodPerPost, floodCalls-batch) {
			lines = append(lines, encodeEnv(t, session, haip.TypeToolCall, haip.ToolCallPayload{CallID: haip.NewUUID(), Tool: "sleep", Params: params}))
		}
		bodies = append(bodies, bytes.Join(lines, []byte("\n")))
	}
	began := time.Now()
	flood(t, e.Base+"/haip/messages", f.Token(flooder, auth.RoleUser), bodies)
	t.Logf("%d long calls queued by %s in %s; %d still queued", floodCalls, flooder, time.Since(began).Round(time.Millisecond), queued(t, f, streams.ToolStream))

	c := f.Dial(e, client.Options{Token: f.Token(victim, auth.RoleUser)})
	sent := time.Now()
	callID := callTool(t, c, "sleep", map[string]int{"ms": 0})
	harness.ReadUntil(t, c, 2*time.Minute, func(env *haip.Envelope) bool {
		var d haip.ToolDonePayload
		return env.Type == haip.TypeToolDone && env.DecodePayload(&d) == nil && d.CallID == callID
	})
	waited := time.Since(sent)
	t.Logf("%s's sleep(0) done %s after it was sent", victim, waited.Round(time.Millisecond))
	if waited > fairWait {
		t.Fatalf("%s's sleep(0) waited %s behind %s's flood, want at most %s", victim, waited.Round(time.Millisecond), flooder, fairWait)
	}
}

func encodeEnv(t *testing.T, session string, typ haip.Type, payload any) []byte {
	t.Helper()
	env, err := haip.New(session, haip.ChannelUser, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := haip.Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flood POSTs each body (NDJSON envelopes), floodPosts at once, and fails
// the test unless every envelope is accepted.
func flood(t *testing.T, url, token string, bodies [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, len(bodies))
	slots := make(chan struct{}, floodPosts)
	var wg sync.WaitGroup
	for _, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			errs <- postAccepted(ctx, url, token, body)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func postAccepted(ctx context.Context, url, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var pr edge.PostResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &pr) != nil {
		return fmt.Errorf("POST: %d %s", resp.StatusCode, b)
	}
	for _, r := range pr.Results {
		if r.Status != "accepted" {
			return fmt.Errorf("POST result %+v", r)
		}
	}
	return nil
}

// queued is how many messages wait in a work-queue stream.
func queued(t *testing.T, f *fabric, stream string) uint64 {
	t.Helper()
	s, err := f.JS.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}
