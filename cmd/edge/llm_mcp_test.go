package main_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/worker/llm/llmtest"
)

// The whole path as a new user would set it up: an edge whose in-process
// agent is the LLM agent, a toolworker bridging two MCP servers (one by
// MCP_COMMAND with a quoted argument, one by MCP_SERVERS), and a
// TOOL_ACCESS rule keeping one tool to admins. The model is offered the
// MCP tools the user may call and not the other; its call of the offered
// one becomes a TOOL_CALL the client sees, whose result (the server's
// arguments, quotes honoured) reaches the model; its call of the other is
// refused to the model without being made. The user's own call of the
// kept tool is refused by the edge.
func TestLLMWithMCPServersAndToolAccess(t *testing.T) {
	t.Parallel()
	mcpServer := filepath.Join(t.TempDir(), "mcpserver")
	if out, err := exec.Command("go", "build", "-o", mcpServer, "../../worker/mcpbridge/testdata/mcpserver").CombinedOutput(); err != nil {
		t.Fatalf("build the MCP server: %v\n%s", err, out)
	}
	fake := llmtest.New(t, func(n int, _ llmtest.Request) llmtest.Reply {
		if n == 0 {
			return llmtest.Reply{Calls: []llmtest.Call{{Name: "a_args", Args: `{}`}, {Name: "b_greet", Args: `{"name":"x"}`}}}
		}
		return llmtest.Reply{Text: []string{"done"}}
	})
	e := startEdge(t, t.TempDir(), map[string]string{"NATS_LISTEN": "127.0.0.1:0", "BUILTIN_TOOLS": "false",
		"AGENT": "llm", "LLM_BASE_URL": fake.OpenAIURL(), "LLM_MODEL": "fake-model", "TOOL_ACCESS": "b_greet=admin"})
	natsURL := e.waitLine(reNATS, 5*time.Second)
	w := start(t, bins.toolworker, map[string]string{"NATS_URL": natsURL, "DEMO_AGENT": "false", "BUILTIN_TOOLS": "false",
		"MCP_COMMAND": mcpServer + ` --dir "/srv/my data"`, "MCP_TOOL_PREFIX": "a_",
		"MCP_SERVERS": `[{"name":"b","command":"` + mcpServer + ` --name 'second one'"}]`})
	w.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)

	c := dial(t, e, client.Options{})
	waitTool(t, c, "a_args", 20*time.Second)
	waitTool(t, c, "b_args", 20*time.Second)
	if _, err := c.SendText(context.Background(), "show me your arguments"); err != nil {
		t.Fatal(err)
	}
	got, err := readLog(t, c, 30*time.Second, harness.IsRunFinished)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, env := range got {
		switch env.Type {
		case haip.TypeToolCall:
			var p haip.ToolCallPayload
			_ = env.DecodePayload(&p)
			calls = append(calls, p.Tool)
		case haip.TypeToolDone:
			var p haip.ToolDonePayload
			if _ = env.DecodePayload(&p); p.Status != haip.ToolDoneOK || string(p.Result) != `{"args":["--dir","/srv/my data"]}` {
				t.Fatalf("TOOL_DONE %+v %s", p, p.Result)
			}
		}
	}
	if strings.Join(calls, ",") != "a_args" || harness.AnswerText(t, got) != "done" {
		t.Fatalf("tool calls %v, answer %q", calls, harness.AnswerText(t, got))
	}
	reqs := fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model requests", len(reqs))
	}
	first, second := string(reqs[0].Body), string(reqs[1].Body)
	if !strings.Contains(first, `"b_args"`) || strings.Contains(first, `"b_greet"`) {
		t.Fatalf("tools offered: %s", first)
	}
	if !strings.Contains(second, `/srv/my data`) || !strings.Contains(second, "tool b_greet is not available") {
		t.Fatalf("tool results sent back: %s", second)
	}

	// The user's own call of the admins' tool is refused by the edge; the
	// second server's tools work.
	if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: haip.NewUUID(), Tool: "b_greet", Params: json.RawMessage(`{"name":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if p := harness.ErrorPayload(t, harness.ReadControl(t, c, haip.TypeError, 10*time.Second)); p.Code != haip.CodeToolNotFound {
		t.Fatalf("refusal %+v", p)
	}
	if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: haip.NewUUID(), Tool: "b_args", Params: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	done, err := readLog(t, c, 20*time.Second, func(env *haip.Envelope) bool { return env.Type == haip.TypeToolDone })
	if err != nil {
		t.Fatal(err)
	}
	var p haip.ToolDonePayload
	if _ = done[len(done)-1].DecodePayload(&p); string(p.Result) != `{"args":["--name","second one"]}` {
		t.Fatalf("b_args: %+v %s", p, p.Result)
	}
}
