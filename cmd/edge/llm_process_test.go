package main_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/worker/llm/llmtest"
)

// An LLM agent process is SIGKILLed in the middle of an answer. Another
// replica takes the run over and continues the answer where the log says
// it stopped: the client gets one RUN_STARTED, one text message whose
// text is the first attempt's part then the continuation (nothing twice),
// one RUN_FINISHED, dense. A later run, on the new replica, sends the
// model the whole conversation read from the log.
func TestLLMAgentKilledMidAnswer(t *testing.T) {
	t.Parallel()
	words := make([]string, 80)
	for i := range words {
		words[i] = fmt.Sprintf("w%02d ", i)
	}
	fake := llmtest.New(t, func(n int, r llmtest.Request) llmtest.Reply {
		switch n {
		case 0:
			return llmtest.Reply{Text: words, Delay: 50 * time.Millisecond}
		case 1:
			return llmtest.Reply{Text: []string{"and the rest."}}
		}
		return llmtest.Reply{Text: []string{"You asked for words."}}
	})
	e := startEdge(t, t.TempDir(), map[string]string{"NATS_LISTEN": "127.0.0.1:0", "DEMO_AGENT": "false"})
	natsURL := e.waitLine(reNATS, 5*time.Second)
	worker := func(name string) *proc {
		w := start(t, bins.toolworker, map[string]string{"NATS_URL": natsURL, "BUILTIN_TOOLS": "false", "AGENT_ACK_WAIT": "2s",
			"AGENT": "llm", "LLM_BASE_URL": fake.OpenAIURL(), "LLM_MODEL": "fake-model", "LLM_API_KEY": "sk-test", "WORKER_NAME": name})
		w.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)
		return w
	}
	a := worker("a")
	c := dial(t, e, client.Options{})
	if _, err := c.SendText(context.Background(), "say many words"); err != nil {
		t.Fatal(err)
	}
	parts := 0
	first, err := readLog(t, c, 30*time.Second, func(env *haip.Envelope) bool {
		if env.Type == haip.TypeTextMessagePart {
			parts++
		}
		return parts == 5
	})
	if err != nil {
		t.Fatal(err)
	}
	a.signal(syscall.SIGKILL)
	if err := a.wait(10 * time.Second); err == nil {
		t.Fatal("worker a exited cleanly after SIGKILL")
	}
	worker("b")
	rest, err := readLog(t, c, 60*time.Second, harness.IsRunFinished)
	if err != nil {
		t.Fatal(err)
	}
	all := append(first, rest...)
	harness.AssertDense(t, all, 1)
	count := map[haip.Type]int{}
	for _, env := range all {
		count[env.Type]++
	}
	if count[haip.TypeRunStarted] != 1 || count[haip.TypeRunFinished] != 1 || count[haip.TypeTextMessageStart] != 1 || count[haip.TypeTextMessageEnd] != 1 || count[haip.TypeRunError] != 0 {
		t.Fatalf("messages %v", count)
	}
	text := harness.AnswerText(t, all)
	prefix, ok := strings.CutSuffix(text, "and the rest.")
	if !ok || len(prefix) < 5*len(words[0]) || prefix != strings.Join(words[:len(prefix)/len(words[0])], "") {
		t.Fatalf("answer %q: want the first attempt's words once, then the continuation", text)
	}
	reqs := fake.Requests()
	if len(reqs) != 2 || !strings.Contains(string(reqs[1].Body), strings.TrimSpace(prefix)) || !strings.Contains(string(reqs[1].Body), "was interrupted") {
		t.Fatalf("%d requests; the continuation request: %s", len(reqs), reqs[len(reqs)-1].Body)
	}

	// The next run sees the whole conversation, from the log.
	if _, err := c.SendText(context.Background(), "what did you say?"); err != nil {
		t.Fatal(err)
	}
	if _, err := readLog(t, c, 30*time.Second, harness.IsRunFinished); err != nil {
		t.Fatal(err)
	}
	reqs = fake.Requests()
	last := string(reqs[len(reqs)-1].Body)
	for _, want := range []string{"say many words", text, "what did you say?"} {
		if !strings.Contains(last, want) {
			t.Fatalf("the next run's request lacks %q: %s", want, last)
		}
	}
}
