package mcpbridge_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/mcpbridge"
)

// supervised runs the test MCP server under a Supervisor on a fabric and
// waits for its tools (prefix "t_") to be advertised.
func supervised(t *testing.T) (*harness.Fabric, *streams.Tools) {
	t.Helper()
	bin := buildServer(t)
	f := harness.New(t, streams.Config{})
	sup := mcpbridge.NewSupervisor(f.NC, f.JS, mcpbridge.Command{Path: bin, Args: []string{"--dir", "/a path/with spaces"}}, "t_",
		mcpbridge.SupervisorConfig{Worker: worker.ToolWorkerConfig{Name: "mcp-test", AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond}})
	f.Run(sup.Run)
	reg, err := streams.OpenTools(context.Background(), f.JS)
	if err != nil {
		t.Fatal(err)
	}
	waitTools(t, reg, true, 30*time.Second)
	return f, reg
}

// waitTools waits until the server's tools are all listed (or none).
func waitTools(t *testing.T, reg *streams.Tools, listed bool, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, func() bool {
		list, err := reg.List(context.Background())
		if err != nil {
			return false
		}
		n := 0
		for _, tool := range list {
			if strings.HasPrefix(tool.Name, "t_") {
				n++
			}
		}
		return listed == (n == 6) && (listed || n == 0)
	}, "the MCP tools never became listed="+map[bool]string{true: "true", false: "false"}[listed])
}

// callAndWait queues a call and returns what the log says of it: its
// updates and its TOOL_DONE.
func callAndWait(t *testing.T, f *harness.Fabric, tool, params string) ([]haip.ToolUpdatePayload, haip.ToolDonePayload) {
	t.Helper()
	ctx := context.Background()
	session := haip.NewUUID()
	if err := streams.PublishToolCall(ctx, f.JS, streams.ToolCall{CallID: haip.NewUUID(), Tool: tool, Params: json.RawMessage(params), Session: session}); err != nil {
		t.Fatal(err)
	}
	var updates []haip.ToolUpdatePayload
	var done haip.ToolDonePayload
	testkit.Eventually(t, 20*time.Second, func() bool {
		es, _, err := f.Log().Read(ctx, session, streams.Out, 1, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		updates = updates[:0]
		for _, e := range es {
			env, _ := haip.Decode(e.Data)
			switch e.Type {
			case string(haip.TypeToolUpdate):
				var u haip.ToolUpdatePayload
				_ = env.DecodePayload(&u)
				updates = append(updates, u)
			case string(haip.TypeToolDone):
				_ = env.DecodePayload(&done)
				return true
			}
		}
		return false
	}, "no TOOL_DONE for "+tool)
	return updates, done
}

// MCP progress notifications become TOOL_UPDATE progress; an image reaches
// the result as base64 with its MIME type; quoted arguments reach the
// server as single words.
func TestBridgeProgressImagesAndArgs(t *testing.T) {
	t.Parallel()
	f, _ := supervised(t)
	updates, done := callAndWait(t, f, "t_slow", `{"steps": 4}`)
	var progress []float64
	for _, u := range updates {
		if u.Progress != nil && len(u.Partial) > 0 {
			progress = append(progress, *u.Progress)
			if !strings.Contains(string(u.Partial), `"message":"working"`) {
				t.Fatalf("progress partial %s", u.Partial)
			}
		}
	}
	if done.Status != haip.ToolDoneOK || len(progress) != 4 || progress[1] != 25 || progress[3] != 75 {
		t.Fatalf("progress %v, done %+v %s", progress, done, done.Result)
	}
	_, done = callAndWait(t, f, "t_picture", `{}`)
	var pic struct {
		Content     string `json:"content"`
		Attachments []struct {
			Type     string `json:"type"`
			MIMEType string `json:"mimeType"`
			Data     string `json:"data"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(done.Result, &pic); err != nil || pic.Content != "a pixel" || len(pic.Attachments) != 1 {
		t.Fatalf("picture: %s (%v)", done.Result, err)
	}
	raw, err := base64.StdEncoding.DecodeString(pic.Attachments[0].Data)
	if a := pic.Attachments[0]; err != nil || a.Type != "image" || a.MIMEType != "image/png" || !strings.HasPrefix(string(raw), "\x89PNG") {
		t.Fatalf("image attachment %+v (%v)", a, err)
	}
	_, done = callAndWait(t, f, "t_args", `{}`)
	if string(done.Result) != `{"args":["--dir","/a path/with spaces"]}` {
		t.Fatalf("args %s", done.Result)
	}
}

// An MCP server that dies is noticed at once: its tools leave the
// registry without waiting for their entries to expire, the server is
// started again, and its tools come back and work.
func TestSupervisorRestartsDeadServer(t *testing.T) {
	t.Parallel()
	f, reg := supervised(t)
	_, done := callAndWait(t, f, "t_crash", `{}`)
	if done.Status != haip.ToolDoneError {
		t.Fatalf("the call that killed the server: %+v", done)
	}
	began := time.Now()
	waitTools(t, reg, false, streams.ToolTTL/3) // well before an entry expires
	t.Logf("tools withdrawn %s after the crash was reported", time.Since(began))
	waitTools(t, reg, true, 20*time.Second)
	if _, done := callAndWait(t, f, "t_greet", `{"name":"again"}`); done.Status != haip.ToolDoneOK || string(done.Result) != `{"greeting":"Hello, again"}` {
		t.Fatalf("after the restart: %+v %s", done, done.Result)
	}
}

func TestParseServers(t *testing.T) {
	t.Parallel()
	servers, err := mcpbridge.ParseServers(`[{"name":"fs","command":"npx -y server '/my data'"},{"name":"git","command":"uvx git","prefix":"","env":"-"}]`)
	if err != nil || len(servers) != 2 || servers[0].ToolPrefix() != "fs_" || servers[1].ToolPrefix() != "" || *servers[1].Env != "-" {
		t.Fatalf("servers %+v %v", servers, err)
	}
	for _, bad := range []string{`{}`, `[{"name":"a b","command":"x"}]`, `[{"name":"a","command":""}]`, `[{"name":"a","command":"x 'y"}]`,
		`[{"name":"a","command":"x"},{"name":"a","command":"y"}]`, `[{"name":"a","command":"x","extra":1}]`} {
		if _, err := mcpbridge.ParseServers(bad); !errors.Is(err, mcpbridge.ErrBadCommand) {
			t.Errorf("ParseServers(%s): %v, want ErrBadCommand", bad, err)
		}
	}
}

func FuzzParseServers(f *testing.F) {
	f.Add(`[{"name":"fs","command":"npx -y server '/my data'","prefix":"fs_","env":"PATH"}]`)
	f.Add(`[{"name":"a","command":"x \"y"}]`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, s string) {
		servers, err := mcpbridge.ParseServers(s)
		if err != nil {
			if !errors.Is(err, mcpbridge.ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		for _, srv := range servers {
			if words, err := mcpbridge.SplitCommand(srv.Command); err != nil || len(words) == 0 {
				t.Fatalf("accepted server %+v with a bad command", srv)
			}
		}
	})
}
