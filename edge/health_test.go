package edge_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/streams"
)

// /health reports a part of the process that stopped working (the
// in-process agent, the built-in tools): 503 naming it, and 200 again
// when it works again.
func TestHealthReportsChecks(t *testing.T) {
	t.Parallel()
	f := newFabric(t, streams.Config{})
	e := f.Edge(edge.Config{})
	var failing atomic.Bool
	e.Srv.AddCheck("demo agent", func() error {
		if failing.Load() {
			return errors.New("cannot take work")
		}
		return nil
	})
	health := func() (int, string) {
		t.Helper()
		resp, err := http.Get(e.Base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error
	}
	if st, _ := health(); st != http.StatusOK {
		t.Fatalf("health %d with every check passing", st)
	}
	failing.Store(true)
	if st, msg := health(); st != http.StatusServiceUnavailable || !strings.Contains(msg, "demo agent: cannot take work") {
		t.Fatalf("health %d %q with the agent failing", st, msg)
	}
	failing.Store(false)
	if st, _ := health(); st != http.StatusOK {
		t.Fatalf("health %d after the agent recovered", st)
	}
}
