package llm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/llm"
	"github.com/haipfabric/haipfabric/worker/llm/llmtest"
)

// testKey is the API key the agent sends; no RUN_ERROR may show it.
const testKey = "sk-fake-secret-key-3xyz"

// rig is a fabric (embedded NATS, an edge, the built-in tools) with an
// LLM agent talking to a fake provider.
type rig struct {
	f         *harness.Fabric
	e         *harness.Edge
	fake      *llmtest.Server
	cfg       llm.Config
	stopAgent func() // stops the rig's first replica
}

// stopRigAgent stops the replica the rig started with.
func (r *rig) stopRigAgent() { r.stopAgent() }

func newRig(t testing.TB, provider string, script func(int, llmtest.Request) llmtest.Reply, edit func(*llm.Config)) *rig {
	t.Helper()
	f := harness.New(t, streams.Config{})
	f.Tools("w1", 0)
	fake := llmtest.New(t, script)
	cfg := llm.Config{Provider: provider, APIKey: testKey, Model: "fake-model", SystemPrompt: "Be brief.",
		StallTimeout: 5 * time.Second, RetryBudget: 5 * time.Second}
	cfg.BaseURL = fake.OpenAIURL()
	if provider == llm.ProviderAnthropic {
		cfg.BaseURL = fake.AnthropicURL()
	}
	if edit != nil {
		edit(&cfg)
	}
	r := &rig{f: f, fake: fake, cfg: cfg}
	r.stopAgent = r.startAgent(t)
	r.e = f.Edge(edge.Config{})
	return r
}

// startAgent runs one replica of the LLM agent until the test ends or the
// returned stop is called.
func (r *rig) startAgent(t testing.TB) (stop func()) {
	t.Helper()
	nc := r.f.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := llm.New(ctx, nc, js, r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	w, err := worker.NewAgent(ctx, nc, js, a, worker.AgentConfig{Name: "llm", AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r.f.Run(w.Run)
}

func eachProvider(t *testing.T, fn func(t *testing.T, provider string)) {
	for _, p := range []string{llm.ProviderOpenAI, llm.ProviderAnthropic} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			fn(t, p)
		})
	}
}

func payload[T any](t *testing.T, env *haip.Envelope) T {
	t.Helper()
	var p T
	if err := env.DecodePayload(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func ask(t *testing.T, c *client.Conn, text string) []*haip.Envelope {
	t.Helper()
	if _, err := c.SendText(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	return harness.ReadUntil(t, c, 20*time.Second, harness.IsRunFinished)
}

// The model asks for two tools at once: both become TOOL_CALLs before
// either result is awaited, both results go back to the model in one
// request, and the answer streams after them, with its usage.
func TestLLMParallelToolCalls(t *testing.T) {
	t.Parallel()
	eachProvider(t, func(t *testing.T, provider string) {
		r := newRig(t, provider, func(n int, _ llmtest.Request) llmtest.Reply {
			if n == 0 {
				return llmtest.Reply{Text: []string{"Let me ", "check."}, Calls: []llmtest.Call{
					{Name: "add", Args: `{"a": 2, "b": 3}`}, {Name: "sleep", Args: `{"ms": 300}`}}, InputTokens: 50, OutputTokens: 20}
			}
			return llmtest.Reply{Text: []string{"The sum ", "is 5."}, InputTokens: 90, OutputTokens: 7}
		}, nil)
		c := harness.Dial(t, r.e, client.Options{})
		got := ask(t, c, "add 2 and 3 and sleep")
		harness.AssertDense(t, got, 1)
		var kinds []string
		calls := map[string]string{}
		var texts []string
		var fin haip.RunFinishedPayload
		var tokens []string
		for _, env := range got {
			switch env.Type {
			case haip.TypeToolCall:
				p := payload[haip.ToolCallPayload](t, env)
				calls[p.CallID] = p.Tool
				kinds = append(kinds, "CALL")
			case haip.TypeToolDone:
				p := payload[haip.ToolDonePayload](t, env)
				if p.Status != haip.ToolDoneOK {
					t.Fatalf("tool %s: %s %s", calls[p.CallID], p.Status, p.Result)
				}
				kinds = append(kinds, "DONE")
			case haip.TypeTextMessagePart:
				texts = append(texts, payload[haip.TextMessagePartPayload](t, env).Text)
			case haip.TypeTextMessageEnd:
				if p := payload[haip.TextMessageEndPayload](t, env); p.Tokens != nil {
					tokens = append(tokens, fmt.Sprint(*p.Tokens))
				}
			case haip.TypeRunFinished:
				fin = payload[haip.RunFinishedPayload](t, env)
			}
		}
		if fmt.Sprint(kinds) != "[CALL CALL DONE DONE]" || len(calls) != 2 {
			t.Fatalf("tool traffic %v (calls %v): both calls must be made before any result", kinds, calls)
		}
		if got := strings.Join(texts, ""); got != "Let me check.The sum is 5." {
			t.Fatalf("text %q", got)
		}
		if fmt.Sprint(tokens) != "[20 7]" || fin.Status != haip.RunStatusOK || fin.Summary != "input_tokens=140 output_tokens=27" {
			t.Fatalf("usage: END tokens %v, RUN_FINISHED %+v", tokens, fin)
		}
		reqs := r.fake.Requests()
		if len(reqs) != 2 {
			t.Fatalf("%d model requests, want 2", len(reqs))
		}
		first, second := string(reqs[0].Body), string(reqs[1].Body)
		if !strings.Contains(first, `"add"`) || !strings.Contains(first, "Be brief.") || !strings.Contains(first, "add 2 and 3 and sleep") {
			t.Fatalf("first request lacks the tools, system prompt or user text: %s", first)
		}
		for id := range calls {
			if !strings.Contains(second, id) {
				t.Fatalf("second request lacks call %s: %s", id, second)
			}
		}
		if !strings.Contains(second, `{\"result\":5}`) {
			t.Fatalf("second request lacks the add result: %s", second)
		}
		if h := reqs[0].Header; h.Get("Authorization") != "Bearer "+testKey && h.Get("X-Api-Key") != testKey {
			t.Fatalf("the key was not sent: %v", h)
		}
	})
}

// RUN_CANCEL aborts the model stream within 100 ms of being sent, and the
// run ends CANCELLED with its text message closed.
func TestLLMCancelMidStream(t *testing.T) {
	t.Parallel()
	eachProvider(t, func(t *testing.T, provider string) {
		words := make([]string, 500)
		for i := range words {
			words[i] = "word "
		}
		r := newRig(t, provider, func(int, llmtest.Request) llmtest.Reply {
			return llmtest.Reply{Text: words, Delay: 10 * time.Millisecond}
		}, nil)
		c := harness.Dial(t, r.e, client.Options{})
		if _, err := c.SendText(context.Background(), "talk"); err != nil {
			t.Fatal(err)
		}
		var runID string
		harness.ReadUntil(t, c, 20*time.Second, func(e *haip.Envelope) bool {
			runID = e.RunID
			return e.Type == haip.TypeTextMessagePart
		})
		sent := time.Now()
		if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeRunCancel, haip.RunCancelPayload{RunID: runID}); err != nil {
			t.Fatal(err)
		}
		var ended time.Time
		testkit.Eventually(t, 5*time.Second, func() bool {
			ended = r.fake.Ended(0)
			return !ended.IsZero()
		}, "the model stream was never closed")
		if took := ended.Sub(sent); took > 100*time.Millisecond {
			t.Fatalf("the model stream ended %s after RUN_CANCEL, want < 100ms", took)
		}
		t.Logf("model stream closed %s after RUN_CANCEL was sent", ended.Sub(sent))
		got := harness.ReadUntil(t, c, 10*time.Second, harness.IsRunFinished)
		if fin := payload[haip.RunFinishedPayload](t, got[len(got)-1]); fin.Status != haip.RunStatusCancelled {
			t.Fatalf("run ended %+v", fin)
		}
		ends := 0
		for _, e := range got {
			if e.Type == haip.TypeTextMessageEnd {
				ends++
			}
		}
		if ends != 1 {
			t.Fatalf("%d TEXT_MESSAGE_ENDs after the cancel, want 1", ends)
		}
	})
}

// A cancelled run cancels the tool calls its model asked for.
func TestLLMCancelStopsToolCalls(t *testing.T) {
	t.Parallel()
	r := newRig(t, llm.ProviderOpenAI, func(int, llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Calls: []llmtest.Call{{Name: "sleep", Args: `{"ms": 20000, "steps": 20}`}, {Name: "sleep", Args: `{"ms": 20000, "steps": 20}`}}}
	}, nil)
	c := harness.Dial(t, r.e, client.Options{})
	if _, err := c.SendText(context.Background(), "sleep twice"); err != nil {
		t.Fatal(err)
	}
	var runID string
	running := 0
	harness.ReadUntil(t, c, 20*time.Second, func(e *haip.Envelope) bool {
		runID = e.RunID
		if e.Type == haip.TypeToolUpdate && payload[haip.ToolUpdatePayload](t, e).Status == haip.ToolStatusRunning {
			running++
		}
		return running == 2
	})
	if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeRunCancel, haip.RunCancelPayload{RunID: runID}); err != nil {
		t.Fatal(err)
	}
	got := harness.ReadUntil(t, c, 15*time.Second, harness.IsRunFinished)
	cancelled := 0
	for _, e := range got {
		if e.Type == haip.TypeToolDone && payload[haip.ToolDonePayload](t, e).Status == haip.ToolDoneCancelled {
			cancelled++
		}
	}
	if fin := payload[haip.RunFinishedPayload](t, got[len(got)-1]); cancelled != 2 || fin.Status != haip.RunStatusCancelled {
		t.Fatalf("%d calls cancelled, run %+v", cancelled, fin)
	}
}

// runError reads a run to its end and returns its RUN_ERROR message.
func runError(t *testing.T, c *client.Conn, text string) string {
	t.Helper()
	got := ask(t, c, text)
	for _, e := range got {
		if e.Type == haip.TypeRunError {
			msg := payload[haip.ErrorPayload](t, e).Message
			if strings.Contains(msg, testKey) || strings.Contains(msg, "3xyz") {
				t.Fatalf("RUN_ERROR shows the key: %s", msg)
			}
			return msg
		}
	}
	t.Fatalf("no RUN_ERROR in %d messages", len(got))
	return ""
}

// A refused key, an unknown model, a spent retry budget and a stalled
// stream each end the run with a RUN_ERROR naming the cause; a 429 with
// retry-after is retried after the time it asks for.
func TestLLMProviderFailures(t *testing.T) {
	t.Parallel()
	eachProvider(t, func(t *testing.T, provider string) {
		cases := []struct {
			name  string
			reply llmtest.Reply
			want  string
		}{
			{"bad key", llmtest.Reply{Status: 401}, "refused the API key (HTTP 401)"},
			{"unknown model", llmtest.Reply{Status: 404}, "does not know the model"},
			{"always overloaded", llmtest.Reply{Status: 503}, "retry budget"},
			{"stall", llmtest.Reply{Text: []string{"a", "b"}, StallAfter: 1}, "stalled"},
		}
		r := newRig(t, provider, nil, func(c *llm.Config) { c.RetryBudget, c.StallTimeout = 1500*time.Millisecond, 500*time.Millisecond })
		c := harness.Dial(t, r.e, client.Options{})
		for _, tc := range cases {
			r.fake.SetScript(func(int, llmtest.Request) llmtest.Reply { return tc.reply })
			if msg := runError(t, c, tc.name); !strings.Contains(msg, tc.want) {
				t.Fatalf("%s: RUN_ERROR %q, want it to say %q", tc.name, msg, tc.want)
			}
		}
		// 429 with retry-after: 1 s, then an answer.
		before := len(r.fake.Requests())
		r.fake.SetScript(func(n int, _ llmtest.Request) llmtest.Reply {
			if n == before {
				return llmtest.Reply{Status: 429, RetryAfter: "1"}
			}
			return llmtest.Reply{Text: []string{"ok"}}
		})
		began := time.Now()
		got := ask(t, c, "rate limited")
		if fin := payload[haip.RunFinishedPayload](t, got[len(got)-1]); fin.Status != haip.RunStatusOK || harness.AnswerText(t, got) != "ok" {
			t.Fatalf("after a 429 the run ended %+v", fin)
		}
		if took := time.Since(began); took < time.Second {
			t.Fatalf("retried after %s, before the retry-after of 1s", took)
		}
	})
}

// The second run's request carries the first run's user text and answer,
// read from the log by a replica that did not answer the first.
func TestLLMContextFromLog(t *testing.T) {
	t.Parallel()
	eachProvider(t, func(t *testing.T, provider string) {
		r := newRig(t, provider, func(n int, _ llmtest.Request) llmtest.Reply {
			return llmtest.Reply{Text: []string{fmt.Sprintf("Answer number %d.", n)}}
		}, nil)
		c := harness.Dial(t, r.e, client.Options{})
		ask(t, c, "My name is Ada.")
		// Another replica joins; the first goes. (The first's stop
		// returns once it has drained.)
		r.startAgent(t)
		ask(t, c, "What is my name?")
		reqs := r.fake.Requests()
		last := string(reqs[len(reqs)-1].Body)
		for _, want := range []string{"My name is Ada.", "Answer number 0.", "What is my name?"} {
			if !strings.Contains(last, want) {
				t.Fatalf("second request lacks %q: %s", want, last)
			}
		}
		if strings.Index(last, "My name is Ada.") > strings.Index(last, "Answer number 0.") ||
			strings.Index(last, "Answer number 0.") > strings.Index(last, "What is my name?") {
			t.Fatalf("conversation out of order: %s", last)
		}
	})
}

// A session's modelConfig and agentSettings reach the provider; a bad one
// ends the run with a RUN_ERROR.
func TestLLMSessionOverride(t *testing.T) {
	t.Parallel()
	r := newRig(t, llm.ProviderOpenAI, nil, nil)
	c := harness.Dial(t, r.e, client.Options{})
	setMeta := func(meta map[string]string) {
		t.Helper()
		kv, err := r.f.JS.KeyValue(context.Background(), streams.SessionBucket)
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv.Get(context.Background(), c.Session())
		if err != nil {
			t.Fatal(err)
		}
		var rec streams.SessionRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		rec.Metadata = map[string]json.RawMessage{}
		for k, v := range meta {
			rec.Metadata[k] = json.RawMessage(v)
		}
		data, _ := json.Marshal(rec)
		if _, err := kv.Put(context.Background(), c.Session(), data); err != nil {
			t.Fatal(err)
		}
	}
	setMeta(map[string]string{streams.MetaModelConfig: `{"provider":"openai","id":"session-model"}`,
		streams.MetaAgentSettings: `{"systemPrompt":"Answer in French.","temperature":0.25,"maxTokens":77}`})
	ask(t, c, "hello")
	reqs := r.fake.Requests()
	body := string(reqs[len(reqs)-1].Body)
	if reqs[len(reqs)-1].Model != "session-model" || !strings.Contains(body, "Answer in French.") ||
		!strings.Contains(body, `"temperature":0.25`) || !strings.Contains(body, `"max_completion_tokens":77`) {
		t.Fatalf("the session's settings did not reach the provider: %s", body)
	}
	setMeta(map[string]string{streams.MetaAgentSettings: `{"temperature":"hot"}`})
	if msg := runError(t, c, "again"); !strings.Contains(msg, "bad session settings") {
		t.Fatalf("RUN_ERROR %q", msg)
	}
	setMeta(map[string]string{streams.MetaModelConfig: `{"provider":"anthropic"}`})
	if msg := runError(t, c, "again"); !strings.Contains(msg, `this agent serves "openai"`) {
		t.Fatalf("RUN_ERROR %q", msg)
	}
}

// The model is offered only the tools the run's user may call, and a call
// of any other is answered with an error result, not made.
func TestLLMOffersOnlyAllowedTools(t *testing.T) {
	t.Parallel()
	access, err := auth.ParseToolAccess("sleep=admin")
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, llm.ProviderOpenAI, func(n int, _ llmtest.Request) llmtest.Reply {
		if n == 0 {
			return llmtest.Reply{Calls: []llmtest.Call{{Name: "sleep", Args: `{"ms": 1}`}}}
		}
		return llmtest.Reply{Text: []string{"done"}}
	}, func(c *llm.Config) { c.ToolAccess = access })
	c := harness.Dial(t, r.e, client.Options{})
	got := ask(t, c, "please rest")
	for _, e := range got {
		if e.Type == haip.TypeToolCall {
			t.Fatalf("a refused tool was called: %s", e.Payload)
		}
	}
	reqs := r.fake.Requests()
	if first := string(reqs[0].Body); strings.Contains(first, `"sleep"`) || !strings.Contains(first, `"add"`) {
		t.Fatalf("offered tools: %s", first)
	}
	if second := string(reqs[1].Body); !strings.Contains(second, "tool sleep is not available") {
		t.Fatalf("the refusal did not reach the model: %s", second)
	}
}

// A replica stopped in the middle of an answer hands the run back; the
// next replica continues the same text message from where the log says it
// stopped (Anthropic: the partial answer as the last assistant turn; the
// OpenAI API: with an instruction to continue), and nothing is written
// twice.
func TestLLMStoppedReplicaContinues(t *testing.T) {
	t.Parallel()
	eachProvider(t, func(t *testing.T, provider string) {
		words := make([]string, 300)
		for i := range words {
			words[i] = fmt.Sprintf("w%03d ", i)
		}
		r := newRig(t, provider, func(n int, _ llmtest.Request) llmtest.Reply {
			if n == 0 {
				return llmtest.Reply{Text: words, Delay: 10 * time.Millisecond}
			}
			return llmtest.Reply{Text: []string{"and the rest."}}
		}, nil)
		stopFirst := r.startAgent(t) // the rig's own replica takes the run, or this one
		c := harness.Dial(t, r.e, client.Options{})
		if _, err := c.SendText(context.Background(), "words please"); err != nil {
			t.Fatal(err)
		}
		parts := 0
		first := harness.ReadUntil(t, c, 20*time.Second, func(e *haip.Envelope) bool {
			if e.Type == haip.TypeTextMessagePart {
				parts++
			}
			return parts == 3
		})
		// Stop whichever replica runs it: start a third, stop the first
		// two (one of them hands the run back to the third).
		r.startAgent(t)
		stopFirst()
		r.stopRigAgent()
		rest := harness.ReadUntil(t, c, 30*time.Second, harness.IsRunFinished)
		all := append(first, rest...)
		harness.AssertDense(t, all, 1)
		count := map[haip.Type]int{}
		for _, e := range all {
			count[e.Type]++
		}
		if count[haip.TypeTextMessageStart] != 1 || count[haip.TypeTextMessageEnd] != 1 || count[haip.TypeRunFinished] != 1 || count[haip.TypeRunError] != 0 {
			t.Fatalf("messages %v", count)
		}
		text := harness.AnswerText(t, all)
		prefix, ok := strings.CutSuffix(text, "and the rest.")
		if !ok || len(prefix) < 3*len(words[0]) || prefix != strings.Join(words[:len(prefix)/len(words[0])], "") {
			t.Fatalf("answer %q", text)
		}
		reqs := r.fake.Requests()
		cont := string(reqs[len(reqs)-1].Body)
		partial := strings.Index(cont, strings.TrimSpace(prefix))
		if partial < 0 || partial < strings.Index(cont, "words please") {
			t.Fatalf("the continuation request does not end on the partial answer: %s", cont)
		}
	})
}
