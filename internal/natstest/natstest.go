// Package natstest runs a real embedded nats-server with JetStream for
// tests: a fresh store directory per test, shut down in t.Cleanup.
package natstest

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/internal/natsembed"
)

// Server starts an embedded JetStream server on a fresh temporary store.
// Set HAIP_TEST_NATS_LOG=1 to see the server's logs.
func Server(t testing.TB) *server.Server {
	t.Helper()
	return ServerAt(t, t.TempDir(), "")
}

// ServerAt starts an embedded JetStream server on dir; listen is a TCP
// address ("127.0.0.1:0") or empty for in-process only. It is shut down in
// t.Cleanup (a second Shutdown by the test is harmless).
func ServerAt(t testing.TB, dir, listen string) *server.Server {
	t.Helper()
	var logger *slog.Logger
	if os.Getenv("HAIP_TEST_NATS_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Listen: listen, Logger: logger})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Conn opens an in-process client to s, closed in t.Cleanup.
func Conn(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := natsembed.Connect(s, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
