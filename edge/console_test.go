package edge_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/streams"
)

// The console offers a development token only when the edge is given
// one, and the operator overview answers admins only, for every edge.
func TestConsoleDevTokenAndOverview(t *testing.T) {
	f := newFabric(t, streams.Config{})
	dev := f.Token("dev-user", auth.RoleUser)
	with := f.Edge(edge.Config{ConsoleDevToken: dev})
	without := f.Edge(edge.Config{})

	for _, c := range []struct {
		e      *testEdge
		status int
		token  string
	}{{with, http.StatusOK, dev}, {without, http.StatusNoContent, ""}} {
		resp, err := http.Get(c.e.Base + "/console/dev-token")
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.status || body.Token != c.token {
			t.Fatalf("dev token: %d %q, want %d %q", resp.StatusCode, body.Token, c.status, c.token)
		}
	}

	if st := apiCall(t, with.Base, f.Token("alice", auth.RoleUser), "GET", "/api/v1/operator/overview", nil, nil); st != http.StatusForbidden {
		t.Fatalf("a user's overview: %d, want 403", st)
	}
	if st := apiCall(t, with.Base, "", "GET", "/api/v1/operator/overview", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("an overview without a token: %d, want 401", st)
	}
	var ov edge.OperatorOverview
	if st := apiCall(t, with.Base, f.Token("ops", auth.RoleAdmin), "GET", "/api/v1/operator/overview", nil, &ov); st != http.StatusOK {
		t.Fatalf("overview: %d", st)
	}
	if len(ov.Edges) != 2 || ov.Edges[0].ID == ov.Edges[1].ID {
		t.Fatalf("overview lists %d edges, want both: %+v", len(ov.Edges), ov.Edges)
	}
}
