package streams_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
)

func TestOpenFabric(t *testing.T) {
	t.Parallel()
	nc, js, _ := setup(t, streams.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := streams.Open(ctx, nc, js, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Log() == nil || f.Sessions() == nil || f.Runs() == nil || f.Tools() == nil || f.Queues() == nil || f.Router() == nil {
		t.Fatal("a part of the fabric is missing")
	}
	if err := f.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if d, err := f.Queues().Depth(ctx, 5*time.Second); err != nil || d != 0 {
		t.Fatalf("depth of empty queues: %d, %v", d, err)
	}
	if err := streams.PublishRun(ctx, js, streams.RunRequest{RunID: "r1", Session: "s1", User: "u"}); err != nil {
		t.Fatal(err)
	}
	if d, err := f.Queues().Depth(ctx, 5*time.Second); err != nil || d != 1 {
		t.Fatalf("depth with one run queued: %d, %v", d, err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWaitEnsured(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	nc := natstest.Conn(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	waits := 0
	if err := streams.WaitEnsured(ctx, js, func(error) { waits++ }); err == nil || waits == 0 {
		t.Fatalf("no topology: %v after %d waits", err, waits)
	}
	ectx, ecancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ecancel()
	if err := streams.Ensure(ectx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := streams.WaitEnsured(ectx, js, nil); err != nil {
		t.Fatalf("after Ensure: %v", err)
	}
}
