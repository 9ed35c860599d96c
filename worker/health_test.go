package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// deleteConsumers deletes every consumer of stream, as an operator might.
func deleteConsumers(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for lister := s.ConsumerNames(ctx); ; {
		name, ok := <-lister.Name()
		if !ok {
			break
		}
		names = append(names, name)
	}
	for _, name := range names {
		if err := js.DeleteConsumer(ctx, stream, name); err != nil {
			t.Fatal(err)
		}
	}
}

// An agent whose consumers are deleted under it makes them again and goes
// on taking runs: it does not stop while its process looks healthy.
func TestAgentRemakesDeletedConsumers(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nc := e.Conn()
	a, err := worker.NewAgent(context.Background(), nc, mustJS(t, nc), worker.RunHandlerFunc(func(ctx context.Context, r *worker.Run) error {
		_, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: haip.NewUUID(), Text: "still here"})
		return err
	}), worker.AgentConfig{Name: "remade"})
	if err != nil {
		t.Fatal(err)
	}
	e.Run(a.Run)
	deleteConsumers(t, e.JS, streams.RunStream)
	e.queue("after-delete", "anyone?")
	testkit.Eventually(t, 30*time.Second, func() bool {
		for _, env := range e.out("after-delete") {
			if env.Type == haip.TypeRunFinished {
				return true
			}
		}
		return false
	}, "a run queued after the consumers were deleted was never answered")
	if err := a.Healthy(); err != nil {
		t.Fatalf("Healthy after the consumers were made again: %v", err)
	}
}

// An agent whose run queue is gone altogether (it cannot make its
// consumers again) does not stop silently: Healthy reports it, naming
// what fails, once the failures have lasted UnhealthyAfter.
func TestAgentHealthReportsFailingQueue(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nc := e.Conn()
	a, err := worker.NewAgent(context.Background(), nc, mustJS(t, nc), worker.RunHandlerFunc(func(context.Context, *worker.Run) error { return nil }),
		worker.AgentConfig{Name: "healthy", UnhealthyAfter: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.Run(a.Run)
	if err := a.Healthy(); err != nil {
		t.Fatalf("a new agent is unhealthy: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.JS.DeleteStream(ctx, streams.RunStream); err != nil {
		t.Fatal(err)
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
