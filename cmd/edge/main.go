// Command edge runs a HAIP edge: WebSocket clients in, JetStream behind.
//
// With NATS_URL empty it is the whole single-box system: an embedded
// nats-server with JetStream on DATA_DIR, the edge, and an agent: the demo
// agent, or with AGENT=llm a model (LLM_PROVIDER, LLM_BASE_URL, LLM_MODEL…).
// With NATS_URL set it joins an existing NATS (several edges may share it).
//
//	edge                     serve (configuration from the environment)
//	edge token [flags]       mint a token with JWT_SECRET or the data dir's secret
//	edge health [-url URL]   exit 0 when URL (default this edge's /health) answers 200:
//	                         a health check for images without a shell
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) < 2:
		err = run(ctx, os.Stdout, os.Stderr)
	case os.Args[1] == "token":
		err = runToken(os.Args[2:], os.Stdout, os.Stderr)
	case os.Args[1] == "health":
		err = runHealth(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want none (serve), \"token\" or \"health\"", os.Args[1])
	}
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the usage is printed
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		slog.Error("edge stopped", slog.Any("err", err))
		os.Exit(1)
	}
}
