// Command haipcluster runs the cluster topology of docker-compose.yml on
// this machine, without Docker: three nats-server processes with nats.conf
// (R3 streams), two edges and two tool workers (built-in tools and
// demo-agent replicas), all on 127.0.0.1. It builds the binaries from the
// module, starts everything, prints the edges' URLs, the NATS URLs, a user
// token, an operator token (for /metrics and /stats) and a haipchat
// command, and stops everything on SIGINT or SIGTERM.
//
//	go run ./cmd/haipcluster [-dir DIR] [-edges 2] [-toolworkers 2] [-port 8081]
//
// The edges listen on 127.0.0.1:8081, :8082, … (as docker-compose.yml
// publishes them), so their URLs stay the same between runs; -port 0
// picks free ports instead.
// Run it from the module (it finds go.mod and nats.conf above the working
// directory). With -dir, data, logs and binaries stay in DIR between runs
// (and tokens stay valid: the JWT secret is kept there too); without it
// everything lives in a temporary directory removed at exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/internal/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, logger)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		logger.Error("haipcluster stopped", slog.Any("err", err))
		os.Exit(1)
	}
}

// errUsage is a bad command line (the flag package has said why).
var errUsage = errors.New("usage")

// config is the command line.
type config struct {
	dir          string
	edges        int
	toolWorkers  int
	port         int
	startTimeout time.Duration
	tokenTTL     time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("haipcluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dir, "dir", "", "directory for data, logs and binaries, kept between runs (default: a temporary directory removed at exit)")
	fs.IntVar(&c.edges, "edges", localcluster.DefaultEdges, "number of edges (1-16)")
	fs.IntVar(&c.toolWorkers, "toolworkers", localcluster.DefaultToolWorkers, "number of tool workers (0-16)")
	fs.IntVar(&c.port, "port", 8081, "edge 1's port on 127.0.0.1 (edge 2 gets the next one, and so on); 0 picks free ports")
	fs.DurationVar(&c.startTimeout, "start-timeout", 10*time.Minute, "bound on building and starting everything")
	fs.DurationVar(&c.tokenTTL, "token-ttl", 24*time.Hour, "lifetime of the printed user and operator tokens (at most 720h)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if c.edges < 1 || c.edges > 16 {
		errs = append(errs, fmt.Errorf("-edges %d: want 1-16", c.edges))
	}
	if c.toolWorkers < 0 || c.toolWorkers > 16 {
		errs = append(errs, fmt.Errorf("-toolworkers %d: want 0-16", c.toolWorkers))
	}
	if c.port < 0 || c.port+c.edges-1 > 65535 {
		errs = append(errs, fmt.Errorf("-port %d: want 0 (free ports) or 1-%d", c.port, 65536-c.edges))
	}
	if c.startTimeout <= 0 || c.tokenTTL <= 0 {
		errs = append(errs, errors.New("-start-timeout and -token-ttl must be positive"))
	}
	if c.tokenTTL > auth.DefaultMaxTTL {
		errs = append(errs, fmt.Errorf("-token-ttl %v: the edges refuse tokens living longer than %v (JWT_MAX_TTL)", c.tokenTTL, auth.DefaultMaxTTL))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(stderr, err)
		return c, errUsage
	}
	return c, nil
}

// run starts the topology, prints how to use it, and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, logger *slog.Logger) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	toolWorkers := cfg.toolWorkers
	if toolWorkers == 0 {
		toolWorkers = -1 // none (0 means the default in Options)
	}
	startCtx, cancel := context.WithTimeout(ctx, cfg.startTimeout)
	defer cancel()
	began := time.Now()
	c, err := localcluster.Start(startCtx, localcluster.Options{
		Dir:         cfg.dir,
		Edges:       cfg.edges,
		ToolWorkers: toolWorkers,
		EdgePort:    cfg.port,
		Log:         &logWriter{logger: logger},
	})
	if err != nil {
		return fmt.Errorf("start the cluster: %w", err)
	}
	logger.Info("cluster ready", slog.Duration("took", time.Since(began).Round(time.Millisecond)), slog.String("dir", c.Dir()))
	token, err := c.Mint(userToken(cfg.tokenTTL))
	if err != nil {
		return errors.Join(err, c.Close())
	}
	operator, err := c.Mint(operatorToken(cfg.tokenTTL))
	if err != nil {
		return errors.Join(err, c.Close())
	}
	printBanner(stdout, c, token, operator)
	<-ctx.Done()
	logger.Info("stopping the cluster")
	if err := c.Close(); err != nil {
		return fmt.Errorf("stop the cluster: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// logWriter turns the harness's progress lines into log records.
type logWriter struct{ logger *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	msg := string(p)
	for len(msg) > 0 && msg[len(msg)-1] == '\n' {
		msg = msg[:len(msg)-1]
	}
	w.logger.Info(msg)
	return len(p), nil
}
