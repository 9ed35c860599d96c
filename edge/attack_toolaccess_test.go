package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// toolAccessEdge is a fabric with the built-in tools behind an edge whose
// TOOL_ACCESS keeps sleep to admins and add to alice.
func toolAccessEdge(t *testing.T) (*fabric, *harness.Edge) {
	t.Helper()
	access, err := auth.ParseToolAccess("sleep=admin; add=sub:alice,admin")
	if err != nil {
		t.Fatal(err)
	}
	f := newFabric(t, streams.Config{})
	f.Tools("w1", 0)
	return f, f.Edge(edge.Config{ToolAccess: access})
}

// A user's TOOL_CALL of a tool TOOL_ACCESS keeps from it is refused with
// TOOL_NOT_FOUND naming the tool, is not stored and reaches no worker, on
// every transport; a tool it may call still works.
func TestAttackToolCallRefusedByToolAccess(t *testing.T) {
	t.Parallel()
	f, e := toolAccessEdge(t)
	eachTransport(t, func(t *testing.T, tr string) {
		c := harness.Dial(t, e, client.Options{Transport: tr, Token: f.Token("bob", auth.RoleUser)})
		env, err := c.Send(context.Background(), haip.ChannelUser, haip.TypeToolCall,
			haip.ToolCallPayload{CallID: haip.NewUUID(), Tool: "sleep", Params: json.RawMessage(`{"ms":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		refusal := harness.ReadControl(t, c, haip.TypeError, 5*time.Second)
		p := harness.ErrorPayload(t, refusal)
		if p.Code != haip.CodeToolNotFound || p.RelatedID != env.ID || p.Message != "tool sleep is not available to this caller" {
			t.Fatalf("refusal %+v", p)
		}
		if n := logLen(t, f, c.Session(), streams.In); n != 0 {
			t.Fatalf("%d messages stored after a refused call", n)
		}
		// add is alice's (by subject), not bob's; echo is everyone's.
		callTool(t, c, "add", map[string]float64{"a": 1, "b": 2})
		if p := harness.ErrorPayload(t, harness.ReadControl(t, c, haip.TypeError, 5*time.Second)); p.Code != haip.CodeToolNotFound {
			t.Fatalf("add by bob: %+v", p)
		}
		id := callTool(t, c, "echo", map[string]string{"message": "hi"})
		if _, done := toolEvents(t, c, id); done.Status != haip.ToolDoneOK {
			t.Fatalf("echo: %+v", done)
		}
	})
}

// The tool lists (TOOL_LIST, TOOL_SCHEMA, GET /haip/tools) show each caller
// only what it may call.
func TestAttackToolListsFollowToolAccess(t *testing.T) {
	t.Parallel()
	f, e := toolAccessEdge(t)
	ctx := context.Background()
	for _, tc := range []struct {
		sub  string
		role auth.Role
		want string
	}{
		{"bob", auth.RoleUser, "[echo]"},
		{"alice", auth.RoleUser, "[add echo]"},
		{"root", auth.RoleAdmin, "[add echo sleep]"},
	} {
		token := f.Token(tc.sub, tc.role)
		req, _ := http.NewRequest(http.MethodGet, e.Base+"/haip/tools", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Tools []streams.ToolInfo `json:"tools"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		var names []string
		for _, tool := range body.Tools {
			names = append(names, tool.Name)
		}
		if err != nil || fmt.Sprint(names) != tc.want {
			t.Fatalf("GET /haip/tools as %s: %v (%v), want %s", tc.sub, names, err, tc.want)
		}
		if tc.role != auth.RoleUser {
			continue
		}
		c := harness.Dial(t, e, client.Options{Token: token})
		if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolList, haip.ToolListPayload{Tools: []haip.ToolInfo{}}); err != nil {
			t.Fatal(err)
		}
		var list haip.ToolListPayload
		if err := harness.ReadControl(t, c, haip.TypeToolList, 5*time.Second).DecodePayload(&list); err != nil {
			t.Fatal(err)
		}
		names = names[:0]
		for _, tool := range list.Tools {
			names = append(names, tool.Name)
		}
		if fmt.Sprint(names) != tc.want {
			t.Fatalf("TOOL_LIST as %s: %v, want %s", tc.sub, names, tc.want)
		}
		if _, err := c.Send(ctx, haip.ChannelUser, haip.TypeToolSchema, haip.ToolSchemaPayload{Tool: "sleep", Schema: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if p := harness.ErrorPayload(t, harness.ReadControl(t, c, haip.TypeError, 5*time.Second)); p.Code != haip.CodeToolNotFound {
			t.Fatalf("TOOL_SCHEMA sleep as %s: %+v", tc.sub, p)
		}
	}
}
