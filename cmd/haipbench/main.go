// Command haipbench is the fabric's load tool: it drives HAIP clients over
// WebSocket and the agent side (streams.Log.Append) against one edge, and
// measures every result against raw JetStream on the same nats-server in
// the same run.
//
//	go run ./cmd/haipbench -scenario fanout -sessions 100 -messages 500
//	go run ./cmd/haipbench -scenario all -json results.json
//
// By default (-self) it starts an embedded nats-server on a temporary
// directory, one edge on 127.0.0.1:0 and a generated HMAC secret, all in
// this process. With -url, -token and -nats it runs against an edge that is
// already running (started with NATS_LISTEN). Only loopback addresses are
// accepted, and every run is bounded in count and time.
//
// Scenarios: baseline, fanout, latency, resume, conns, or all. See
// docs/BENCHMARKS.md for the commands and the latest figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	f, err := openFabric(ctx, cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(out, "haipbench: mode %s, edge %s, payload %d bytes of text\n", f.mode, f.wsURL, cfg.Size)
	b := &bench{cfg: cfg, f: f}
	results, err := b.runScenarios(ctx, out)
	if cfg.JSONFile != "" && len(results) > 0 {
		if werr := writeJSON(cfg.JSONFile, results); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
