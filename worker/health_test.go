package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// An agent whose run queue can no longer be fetched from (its consumers
// deleted under it) does not stop silently: Healthy reports it, naming
// what fails, once the failures have lasted UnhealthyAfter.
func TestAgentHealthReportsFailingQueue(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nc := natstest.Conn(t, e.ns)
	js := e.js
	a, err := worker.NewAgent(context.Background(), nc, mustJS(t, nc), worker.RunHandlerFunc(func(context.Context, *worker.Run) error { return nil }),
		worker.AgentConfig{Name: "healthy", UnhealthyAfter: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.runUntilStopped(a.Run)
	if err := a.Healthy(); err != nil {
		t.Fatalf("a new agent is unhealthy: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, streams.RunStream)
	if err != nil {
		t.Fatal(err)
	}
	for names := s.ConsumerNames(ctx); ; {
		name, ok := <-names.Name()
		if !ok {
			break
		}
		if err := js.DeleteConsumer(ctx, streams.RunStream, name); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 30*time.Second, func() bool { return a.Healthy() != nil }, "the agent stays healthy with its queue gone")
	if err := a.Healthy(); !strings.Contains(err.Error(), "cannot take work") {
		t.Fatalf("Healthy: %v", err)
	}
}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
