// Command haipbench is the fabric's load tool: it drives HAIP clients
// (WebSocket, SSE or HTTP streaming) and the agent side (streams.Log.Append)
// against the edge, and measures every rate against raw JetStream on the
// same nats-server in the same run.
//
//	go run ./cmd/haipbench -scenario fanout -sessions 100 -messages 500
//	go run ./cmd/haipbench -scenario fanout,resume -transport sse
//	go run ./cmd/haipbench -scenario tools -toolworkers 1,2,4
//	go run ./cmd/haipbench -spawn -scenario conns -conns 9000
//	go run ./cmd/haipbench -scenario all -json results.json
//
// By default (-self) it starts an embedded nats-server on a temporary
// directory, one edge on 127.0.0.1:0 and a generated HMAC secret, all in
// this process. -spawn builds nats-server and cmd/edge with go build and
// runs them as child processes, so that their memory is measured apart
// from the clients'; -cluster runs the loopback cluster of
// internal/localcluster (3 nats-servers, R3 streams, 2 edges, 2 tool
// workers) and spreads clients over the edges. With -url, -token and
// -nats it runs against an edge that is already running (started with
// NATS_LISTEN). Only loopback addresses are accepted, every run is bounded
// in count and time, and child processes are stopped on every exit.
//
// Scenarios: baseline, fanout, latency, resume, conns, tools, all, or a
// comma-separated list. See docs/BENCHMARKS.md for the commands and the
// latest figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "haipbench:", err)
		os.Exit(1)
	}
}

// run parses args, sets up the fabric (embedded or external), runs the
// chosen scenarios, prints their tables to out and writes the JSON file.
func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProf != "" {
		stop, err := startCPUProfile(cfg.CPUProf)
		if err != nil {
			return err
		}
		defer stop()
	}
	f, err := openFabric(ctx, cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(out, "haipbench: mode %s, %d edge(s), first %s, transport %s, payload %d bytes of text\n",
		f.mode, len(f.eps), f.wsURL(), cfg.Transport, cfg.Size)
	b, err := newBench(cfg, f)
	if err != nil {
		return err
	}
	results, err := b.runScenarios(ctx, out)
	if cfg.JSONFile != "" && len(results) > 0 {
		if werr := writeJSON(cfg.JSONFile, results); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// startCPUProfile writes a CPU profile to path until the returned stop is
// called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "haipbench: cpu profile:", err)
		}
	}, nil
}
