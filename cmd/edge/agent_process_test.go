package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
)

// The agent worker process is SIGKILLed in the middle of a run. Another
// replica takes the run over after AGENT_ACK_WAIT, and the client gets the
// whole answer once: one RUN_STARTED, one RUN_FINISHED, dense seqs. The
// run state ends OK, on the second replica.
func TestAgentWorkerKilledMidRun(t *testing.T) {
	t.Parallel()
	e := startEdge(t, t.TempDir(), map[string]string{"NATS_LISTEN": "127.0.0.1:0", "DEMO_AGENT": "false"})
	natsURL := e.waitLine(reNATS, 5*time.Second)
	worker := func(name string) *proc {
		w := start(t, bins.toolworker, map[string]string{"NATS_URL": natsURL, "BUILTIN_TOOLS": "false", "AGENT_ACK_WAIT": "2s",
			"DEMO_AGENT_DELAY": "60ms", "DEMO_AGENT_AUTHOR": name, "WORKER_NAME": name})
		w.waitLine(regexp.MustCompile(`toolworker ready`), 30*time.Second)
		return w
	}
	a := worker("a")

	c := dial(t, e, client.Options{})
	text := "a question long enough to be cut in the middle"
	if _, err := c.SendText(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	first, err := readLog(t, c, 30*time.Second, func(env *haip.Envelope) bool { return env.Type == haip.TypeTextMessagePart })
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
	harness.CheckAnswer(t, all, text)

	base := "http" + strings.TrimPrefix(strings.TrimSuffix(e.ws, "/haip/websocket"), "ws")
	var runs struct {
		Active []streams.RunState `json:"active"`
		Recent []streams.RunState `json:"recent"`
	}
	// The run state is updated just after RUN_FINISHED is stored.
	testkit.Eventually(t, 10*time.Second, func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/haip/sessions/"+c.Session()+"/runs", nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&runs)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return len(runs.Recent) == 1
	}, "the run never came into the recent runs", func() string { return fmt.Sprintf("run state %+v", runs) })
	if len(runs.Active) != 0 || len(runs.Recent) != 1 || runs.Recent[0].Status != streams.RunOK || runs.Recent[0].Agent == "" {
		t.Fatalf("run state %+v", runs)
	}
}
