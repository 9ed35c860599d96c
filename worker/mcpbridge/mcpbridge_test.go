package mcpbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/mcpbridge"
)

type greetIn struct {
	Name string `json:"name"`
}

type greetOut struct {
	Greeting string `json:"greeting"`
}

// inMemory serves an MCP server built with the Go SDK and returns a
// client session to it.
func inMemory(t *testing.T) *mcpbridge.Session {
	t.Helper()
	ctx := context.Background()
	s := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "greet", Description: "Greets someone."},
		func(_ context.Context, _ *mcp.CallToolRequest, in greetIn) (*mcp.CallToolResult, greetOut, error) {
			return nil, greetOut{Greeting: "Hello, " + in.Name}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "fs.fail", Description: "Always fails."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return nil, nil, errors.New("disk on fire")
		})
	st, ct := mcp.NewInMemoryTransports()
	if _, err := s.Connect(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	cs, err := mcpbridge.Open(ctx, ct)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// The MCP tools become fabric tools with their schemas, and calls through
// the tool work queue reach the MCP server and come back as TOOL_DONE.
func TestBridgeThroughTheFabric(t *testing.T) {
	t.Parallel()
	cs := inMemory(t)
	ctx := context.Background()
	tools, err := mcpbridge.Tools(ctx, cs, "mcp_")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]worker.Tool{}
	for _, tool := range tools {
		names[tool.Name] = tool
	}
	greet, ok := names["mcp_greet"]
	if !ok || names["mcp_fs_fail"].Name == "" || !strings.Contains(string(greet.ParamsSchema), `"name"`) {
		t.Fatalf("bridged tools %v (greet schema %s)", names, greet.ParamsSchema)
	}

	f := harness.New(t, streams.Config{})
	js := f.JS
	tw, err := worker.NewToolWorker(ctx, f.NC, js, tools, worker.ToolWorkerConfig{Name: "mcp"})
	if err != nil {
		t.Fatal(err)
	}
	f.Run(tw.Run)
	lg := f.Log()

	result := func(session, tool, params string) haip.ToolDonePayload {
		t.Helper()
		if err := streams.PublishToolCall(ctx, js, streams.ToolCall{CallID: haip.NewUUID(), Tool: tool, Params: json.RawMessage(params), Session: session}); err != nil {
			t.Fatal(err)
		}
		var d haip.ToolDonePayload
		testkit.Eventually(t, 10*time.Second, func() bool {
			es, _, err := lg.Read(ctx, session, streams.Out, 1, 100, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Type == string(haip.TypeToolDone) {
					env, _ := haip.Decode(e.Data)
					_ = env.DecodePayload(&d)
					return true
				}
			}
			return false
		}, "no TOOL_DONE for "+tool)
		return d
	}
	if d := result("m1", "mcp_greet", `{"name":"Ada"}`); d.Status != haip.ToolDoneOK || string(d.Result) != `{"greeting":"Hello, Ada"}` {
		t.Fatalf("greet: %+v %s", d, d.Result)
	}
	if d := result("m2", "mcp_greet", `{"name":3}`); d.Status != haip.ToolDoneError || !strings.Contains(string(d.Result), "schema") {
		t.Fatalf("bad params: %+v %s", d, d.Result)
	}
	if d := result("m3", "mcp_fs_fail", `{}`); d.Status != haip.ToolDoneError || !strings.Contains(string(d.Result), "disk on fire") {
		t.Fatalf("failing tool: %+v %s", d, d.Result)
	}
}

// buildServer builds the stdio MCP server of testdata and returns its path.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcpserver")
	build := exec.Command("go", "build", "-o", bin, "./testdata/mcpserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// call calls the tool named name of tools with params.
func call(t *testing.T, ctx context.Context, tools []worker.Tool, name, params string) []byte {
	t.Helper()
	for _, tool := range tools {
		if tool.Name != name {
			continue
		}
		got, err := tool.Handler.HandleTool(ctx, &worker.Call{ToolCall: streams.ToolCall{Params: json.RawMessage(params)}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := json.Marshal(got)
		return b
	}
	t.Fatalf("no tool %s in %v", name, tools)
	return nil
}

// A real stdio MCP server process (built here with the Go SDK) is bridged
// through Connect.
func TestBridgeStdioCommand(t *testing.T) {
	t.Parallel()
	bin := buildServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := mcpbridge.Connect(ctx, mcpbridge.Command{Path: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := mcpbridge.Tools(ctx, cs, "")
	if err != nil || len(tools) != 6 {
		t.Fatalf("tools %v %v", tools, err)
	}
	if got := call(t, ctx, tools, "greet", `{"name":"Grace"}`); string(got) != `{"greeting":"Hello, Grace"}` {
		t.Fatalf("stdio greet: %s", got)
	}
	// No Env: an empty environment, not this process's.
	if got := call(t, ctx, tools, "env", `{}`); string(got) != `{"env":[]}` {
		t.Fatalf("environment of a server started with no Env: %s", got)
	}
}

// The MCP server gets the variables its configuration names, and nothing
// else of the worker's environment: not a secret set there.
func TestConnectPassesOnlyNamedEnvironment(t *testing.T) {
	// Not parallel: it sets variables of this process's environment.
	const secret = "worker-secret-0123456789"
	t.Setenv("HAIP_TEST_SECRET", secret)
	t.Setenv("HAIP_TEST_PASSED", "passed")
	bin := buildServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env, err := mcpbridge.Environ("HAIP_TEST_PASSED, HAIP_TEST_FIXED=fixed=1, HAIP_TEST_UNSET", os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mcpbridge.Connect(ctx, mcpbridge.Command{Path: bin, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := mcpbridge.Tools(ctx, cs, "")
	if err != nil {
		t.Fatal(err)
	}
	got := call(t, ctx, tools, "env", `{}`)
	if string(got) != `{"env":["HAIP_TEST_PASSED=passed","HAIP_TEST_FIXED=fixed=1"]}` || strings.Contains(string(got), secret) {
		t.Fatalf("the server's environment: %s", got)
	}
}

func TestEnviron(t *testing.T) {
	t.Parallel()
	worker := map[string]string{"PATH": "/bin", "HOME": "/home/w", "EMPTY": "", "JWT_SECRET": "x"}
	lookup := func(name string) (string, bool) { v, ok := worker[name]; return v, ok }
	for _, tc := range []struct {
		spec string
		want string // entries joined by ";", or the error's text
		err  bool
	}{
		{spec: mcpbridge.DefaultEnv, want: "PATH=/bin;HOME=/home/w"},
		{spec: mcpbridge.NoEnv, want: ""},
		{spec: " - ", want: ""},
		{spec: "", want: ""},
		{spec: "EMPTY,UNSET", want: "EMPTY="},
		{spec: "A=1, B = 2 ,PATH", err: true, want: `entry "B = 2"`},
		{spec: "PATH=/opt/bin,HOME", want: "PATH=/opt/bin;HOME=/home/w"},
		{spec: "A=x,y/z", err: true, want: `entry "y/z"`},
		{spec: "1A,PATH,PATH,=v", err: true, want: `entry "1A"`},
		{spec: "PATH,PATH", err: true, want: "PATH named twice"},
	} {
		got, err := mcpbridge.Environ(tc.spec, lookup)
		switch {
		case tc.err && (!errors.Is(err, mcpbridge.ErrBadEnv) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Environ(%q): %v, want an error with %s", tc.spec, err, tc.want)
		case !tc.err && (err != nil || strings.Join(got, ";") != tc.want || got == nil):
			t.Errorf("Environ(%q) = %q %v, want %q", tc.spec, got, err, tc.want)
		}
	}
}
