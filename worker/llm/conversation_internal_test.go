package llm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// logOf builds log entries (both directions, stored order) from envelopes
// given as (direction, type, channel, run, payload).
type logOf struct {
	entries []streams.Entry
	dirs    []streams.Direction
}

func (l *logOf) add(d streams.Direction, t haip.Type, ch haip.Channel, run string, payload any) {
	p, _ := json.Marshal(payload)
	data, _ := json.Marshal(map[string]any{"type": t, "channel": ch, "run_id": run, "payload": json.RawMessage(p)})
	n := uint64(len(l.entries) + 1)
	l.entries = append(l.entries, streams.Entry{Position: streams.Position{Seq: n, StreamSeq: n}, Type: string(t), Data: data})
	l.dirs = append(l.dirs, d)
}

func (l *logOf) user(id, text string) {
	l.add(streams.In, haip.TypeTextMessageStart, haip.ChannelUser, "", map[string]string{"message_id": id, "text": text})
	l.add(streams.In, haip.TypeTextMessageEnd, haip.ChannelUser, "", map[string]string{"message_id": id})
}

func (l *logOf) agent(run, id, text string, end bool) {
	l.add(streams.Out, haip.TypeTextMessageStart, haip.ChannelAgent, run, map[string]string{"message_id": id})
	l.add(streams.Out, haip.TypeTextMessagePart, haip.ChannelAgent, run, map[string]string{"message_id": id, "text": text})
	if end {
		l.add(streams.Out, haip.TypeTextMessageEnd, haip.ChannelAgent, run, map[string]string{"message_id": id})
	}
}

func describe(msgs []Message) string {
	var out []string
	for _, m := range msgs {
		s := string(m.Role) + ":" + m.Text
		for _, c := range m.ToolCalls {
			s += "[call " + c.ID + " " + c.Name + "]"
		}
		for _, r := range m.ToolResults {
			s += fmt.Sprintf("[result %s %s err=%v]", r.CallID, r.Content, r.IsError)
		}
		out = append(out, s)
	}
	return strings.Join(out, " | ")
}

func TestRebuild(t *testing.T) {
	t.Parallel()
	var l logOf
	l.user("u1", "hello")
	l.agent("r1", "a1", "hi there", true)
	l.add(streams.Out, haip.TypeToolCall, haip.ChannelAgent, "r1", map[string]any{"call_id": "c1", "tool": "add", "params": map[string]int{"a": 1}})
	l.user("u2", "typed while the tool ran") // before its result
	l.add(streams.Out, haip.TypeToolDone, haip.ChannelAgent, "r1", map[string]any{"call_id": "c1", "status": "OK", "result": 1})
	l.add(streams.Out, haip.TypeToolCall, haip.ChannelAgent, "r0", map[string]any{"call_id": "c0", "tool": "echo"}) // never answered
	l.user("u3", "current")
	l.add(streams.Out, haip.TypeRunStarted, haip.ChannelAgent, "r3", map[string]any{})
	l.user("u4", "a later run's question")
	l.agent("r3", "a3", "half an ans", false)
	h := rebuild(l.entries, l.dirs, streams.RunRequest{RunID: "r3", MessageID: "u3", Text: "current"}, 0)
	want := `user:hello | assistant:hi there[call c1 add] | tool:[result c1 1 err=false] | user:typed while the tool ran | ` +
		`assistant:[call c0 echo] | tool:[result c0 no result was recorded for this call err=true] | user:current | assistant:half an ans`
	if got := describe(h.Messages); got != want {
		t.Fatalf("conversation\n got %s\nwant %s", got, want)
	}
	if h.PartialID != "a3" || h.Answered || len(h.Pending) != 0 {
		t.Fatalf("history %+v", h)
	}
	// A small budget keeps the newest turns, starting on a user turn.
	h = rebuild(l.entries, l.dirs, streams.RunRequest{RunID: "r3", MessageID: "u3", Text: "current"}, 12)
	if got := describe(h.Messages); got != "user:current | assistant:half an ans" {
		t.Fatalf("within a budget: %s", got)
	}
	// This run's own call without a result is pending.
	l.add(streams.Out, haip.TypeToolCall, haip.ChannelAgent, "r3", map[string]any{"call_id": "c3", "tool": "add"})
	if h = rebuild(l.entries, l.dirs, streams.RunRequest{RunID: "r3", MessageID: "u3"}, 0); fmt.Sprint(h.Pending) != "[c3]" || h.PartialID != "" {
		t.Fatalf("pending %+v", h)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{http.Header{"Retry-After-Ms": {"150"}, "Retry-After": {"9"}}, 150 * time.Millisecond},
		{http.Header{"Retry-After": {now.Add(3 * time.Second).Format(http.TimeFormat)}}, 3 * time.Second},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{nil, 0},
	} {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("retryAfter(%v) = %s, want %s", tc.h, got, tc.want)
		}
	}
	e := providerError("openai", 401, nil, "Incorrect API key provided: sk-secret", "sk-secret")
	if strings.Contains(e.Error(), "secret") || !strings.Contains(e.Error(), "refused the API key") {
		t.Fatalf("401: %s", e)
	}
}

// FuzzRebuild feeds the conversation rebuild arbitrary stored envelopes:
// it never panics, and what it returns starts on a user turn.
func FuzzRebuild(f *testing.F) {
	f.Add(`{"type":"TEXT_MESSAGE_START","channel":"USER","payload":{"message_id":"u1","text":"hi"}}`, `{"type":"TOOL_DONE","channel":"AGENT","run_id":"r","payload":{"call_id":"c"}}`, true)
	f.Add(`{"type":"TOOL_CALL","channel":"AGENT","run_id":"r","payload":{"call_id":"c","tool":"t","params":[1]}}`, `not json`, false)
	f.Fuzz(func(t *testing.T, a, b string, in bool) {
		var l logOf
		d := streams.Out
		if in {
			d = streams.In
		}
		for i, data := range []string{a, b, a} {
			var head struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal([]byte(data), &head)
			n := uint64(i + 1)
			l.entries = append(l.entries, streams.Entry{Position: streams.Position{Seq: n, StreamSeq: n}, Type: head.Type, Data: []byte(data)})
			l.dirs = append(l.dirs, d)
		}
		h := rebuild(l.entries, l.dirs, streams.RunRequest{RunID: "r", MessageID: "u1", Text: "q"}, 8)
		if len(h.Messages) == 0 || h.Messages[0].Role != RoleUser {
			t.Fatalf("conversation %s", describe(h.Messages))
		}
	})
}
