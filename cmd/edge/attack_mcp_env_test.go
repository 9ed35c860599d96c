package main_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
)

// A user calls a tool of a stdio MCP server that returns its environment:
// the server, started by a toolworker process, got only the variables
// MCP_ENV names, not the worker's secrets (JWT_SECRET, NATS_URL, …).
func TestAttackMCPToolReadsWorkerEnvironment(t *testing.T) {
	t.Parallel()
	mcpServer := filepath.Join(t.TempDir(), "mcpserver")
	if out, err := exec.Command("go", "build", "-o", mcpServer, "../../worker/mcpbridge/testdata/mcpserver").CombinedOutput(); err != nil {
		t.Fatalf("build the MCP server: %v\n%s", err, out)
	}
	e := startEdge(t, t.TempDir(), map[string]string{"NATS_LISTEN": "127.0.0.1:0", "BUILTIN_TOOLS": "false", "DEMO_AGENT": "false"})
	natsURL := e.waitLine(reNATS, 5*time.Second)
	const secret = "s3cr3t-of-the-worker-0123456789abcdef"
	w := start(t, bins.toolworker, map[string]string{
		"NATS_URL": natsURL, "DEMO_AGENT": "false", "BUILTIN_TOOLS": "false", "WORKER_NAME": "mcp-worker",
		"MCP_COMMAND": mcpServer, "JWT_SECRET": secret, "HAIP_WORKER_TOKEN": secret,
		"MCP_ENV": "PATH,MCP_PASSED,MCP_FIXED=fixed-value", "MCP_PASSED": "passed-value",
	})
	w.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)

	c := dial(t, e, client.Options{})
	waitTool(t, c, "env", 20*time.Second)
	callID := haip.NewUUID()
	if _, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: callID, Tool: "env", Params: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	all, err := readLog(t, c, 20*time.Second, func(env *haip.Envelope) bool { return env.Type == haip.TypeToolDone })
	if err != nil {
		t.Fatal(err)
	}
	var done haip.ToolDonePayload
	if err := all[len(all)-1].DecodePayload(&done); err != nil || done.Status != haip.ToolDoneOK {
		t.Fatalf("TOOL_DONE %+v %s (%v)", done, done.Result, err)
	}
	var result struct {
		Env []string `json:"env"`
	}
	if err := json.Unmarshal(done.Result, &result); err != nil {
		t.Fatalf("result %s: %v", done.Result, err)
	}
	var names []string
	for _, kv := range result.Env {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	slices.Sort(names)
	if got := strings.Join(names, ","); got != "MCP_FIXED,MCP_PASSED,PATH" || strings.Contains(string(done.Result), secret) ||
		!slices.Contains(result.Env, "MCP_PASSED=passed-value") || !slices.Contains(result.Env, "MCP_FIXED=fixed-value") {
		t.Fatalf("the MCP server's environment holds %s, want exactly MCP_FIXED,MCP_PASSED,PATH and no secret:\n%s", got, done.Result)
	}
}

// waitTool asks the edge (TOOL_LIST) until tool has a live worker.
func waitTool(t *testing.T, c *client.Conn, tool string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolList, haip.ToolListPayload{Tools: []haip.ToolInfo{}}); err != nil {
			t.Fatalf("waiting for tool %s: %v", tool, err)
		}
		for {
			env, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("waiting for tool %s: %v", tool, err)
			}
			if env.Type != haip.TypeToolList {
				continue
			}
			var list haip.ToolListPayload
			_ = env.DecodePayload(&list)
			if slices.ContainsFunc(list.Tools, func(i haip.ToolInfo) bool { return i.Name == tool }) {
				return
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tool %s never advertised", tool)
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
}
