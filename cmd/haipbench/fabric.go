package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/internal/natsembed"
	"github.com/haipfabric/haipfabric/streams"
)

const (
	modeSelf     = "self"
	modeExternal = "external"
	modeSpawn    = "spawn"
	modeCluster  = "cluster"

	setupTimeout    = 30 * time.Second
	shutdownTimeout = 30 * time.Second
	// fdsPerSelfConn: in -self mode each connection holds two sockets
	// (client and edge end); fdReserve is left for everything else.
	fdsPerSelfConn = 2
	fdReserve      = 256
)

// proc is a process whose memory the conns scenario reads.
type proc struct {
	role string // "edge", "nats-server"
	pid  int
}

// fabric is what the scenarios run against: the edges' endpoints and a
// user token for clients, a NATS connection and session log for the
// agent side, and a second NATS connection for the raw baseline.
type fabric struct {
	mode string
	eps  []endpoint   // one per edge; clients are spread over them
	hc   *http.Client // SSE and stream clients
	// agent side
	nc  *nats.Conn
	js  jetstream.JetStream
	log *streams.Log
	// raw baseline, on its own connection
	rawNC *nats.Conn
	rawJS jetstream.JetStream
	// connect opens one more NATS connection (tool workers); nil when the
	// fabric has no NATS (external mode without -nats).
	connect func(name string) (*nats.Conn, error)
	// builtinTools: the edge serves the built-in tools itself (an
	// external cmd/edge with BUILTIN_TOOLS on, or the cluster's workers).
	builtinTools string

	maxConns int    // connections this fabric can hold
	procs    []proc // edge and nats-server processes (spawn, cluster, -edge-pid)

	closers []func()
}

// wsURL is the first edge's WebSocket URL (for the banner).
func (f *fabric) wsURL() string {
	if len(f.eps) == 0 {
		return ""
	}
	return f.eps[0].wsURL()
}

func openFabric(ctx context.Context, cfg config) (f *fabric, err error) {
	f = &fabric{hc: newHTTPClient()}
	f.closers = append(f.closers, f.hc.CloseIdleConnections)
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()
	fds := openFileLimit()
	switch {
	case cfg.Spawn:
		f.mode = modeSpawn
		f.maxConns = min(maxConns, fds-fdReserve)
		return f, f.openSpawn(ctx, cfg)
	case cfg.Cluster:
		f.mode = modeCluster
		f.maxConns = min(maxConns, fds-fdReserve)
		return f, f.openCluster(ctx, cfg)
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if cfg.Self {
		f.mode = modeSelf
		f.maxConns = min(maxConns, (fds-fdReserve)/fdsPerSelfConn)
		return f, f.openSelf(ctx, cfg)
	}
	f.mode = modeExternal
	f.maxConns = min(maxConns, fds-fdReserve)
	base, err := baseFromWS(cfg.URL)
	if err != nil {
		return f, err
	}
	f.eps = []endpoint{{base: base, token: cfg.Token}}
	f.builtinTools = "an external cmd/edge also serves echo and takes calls unless started with BUILTIN_TOOLS=false"
	if cfg.EdgePID != 0 {
		f.procs = []proc{{role: "edge", pid: cfg.EdgePID}}
	}
	if cfg.NATS == "" {
		return f, nil
	}
	return f, f.dialNATS(ctx, cfg.NATS)
}

// dialNATS connects the agent side and the baseline to url over TCP.
func (f *fabric) dialNATS(ctx context.Context, url string) error {
	f.connect = func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(url, nats.Name(name), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("cannot connect to %s: %w", url, err)
		}
		return nc, nil
	}
	return f.openAgent(ctx)
}

// openSelf starts nats-server, the streams and one edge in this process.
func (f *fabric) openSelf(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "haipbench-")
	if err != nil {
		return fmt.Errorf("cannot create store dir: %w", err)
	}
	f.closers = append(f.closers, func() { _ = os.RemoveAll(dir) })
	ns, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, ServerName: "haipbench"})
	if err != nil {
		return err
	}
	f.closers = append(f.closers, func() { ns.Shutdown(); ns.WaitForShutdown() })
	f.connect = func(name string) (*nats.Conn, error) { return natsembed.Connect(ns, name) }
	if err := f.openAgent(ctx); err != nil {
		return err
	}
	if err := streams.Ensure(ctx, f.js, streams.Config{}); err != nil {
		return fmt.Errorf("cannot create streams: %w", err)
	}
	if err := f.openLog(ctx); err != nil {
		return err
	}
	return f.startEdge(ctx, ns, cfg)
}

// startEdge runs edge.NewServer behind net/http on 127.0.0.1:0, on its own
// NATS connection as a separate process would have.
func (f *fabric) startEdge(ctx context.Context, ns *server.Server, cfg config) error {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("cannot generate secret: %w", err)
	}
	signer, err := auth.NewHMACSigner(secret)
	if err != nil {
		return err
	}
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	if err != nil {
		return err
	}
	token, err := signer.Mint(auth.MintOptions{Subject: "haipbench", Role: auth.RoleUser, TTL: time.Hour})
	if err != nil {
		return err
	}
	enc, err := natsembed.Connect(ns, "haipbench-edge")
	if err != nil {
		return err
	}
	f.closers = append(f.closers, enc.Close)
	ejs, err := jetstream.New(enc)
	if err != nil {
		return err
	}
	ecfg := edge.Config{MaxConnections: max(cfg.Conns, cfg.Sessions*cfg.PerSession, cfg.Clients, cfg.Concurrency) + 16}
	ecfg.NoUserLimits() // one token speaks for every simulated client
	srv, err := edge.NewServer(ctx, ecfg, edge.Deps{NC: enc, JS: ejs, Verifier: v})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = srv.Shutdown(ctx)
		return fmt.Errorf("cannot listen: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	f.closers = append(f.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = hs.Shutdown(sctx)
	})
	f.eps = []endpoint{{base: "http://" + ln.Addr().String(), token: token}}
	return nil
}

// openAgent opens the agent side's and the baseline's NATS connections;
// openLog then opens the session log (the streams must exist).
func (f *fabric) openAgent(ctx context.Context) error {
	conn := func(name string) (*nats.Conn, error) {
		nc, err := f.connect(name)
		if err != nil {
			return nil, err
		}
		f.closers = append(f.closers, nc.Close)
		return nc, nil
	}
	var err error
	if f.nc, err = conn("haipbench-agent"); err != nil {
		return err
	}
	if f.rawNC, err = conn("haipbench-raw"); err != nil {
		return err
	}
	if f.js, err = jetstream.New(f.nc); err != nil {
		return err
	}
	if f.rawJS, err = jetstream.New(f.rawNC, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		return err
	}
	if f.mode == modeSelf {
		return nil // the streams are made next
	}
	return f.openLog(ctx)
}

func (f *fabric) openLog(ctx context.Context) error {
	var err error
	if f.log, err = streams.OpenLog(ctx, f.nc, f.js); err != nil {
		return fmt.Errorf("cannot open session log: %w", err)
	}
	f.closers = append(f.closers, func() {
		cctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = f.log.Close(cctx)
	})
	return nil
}

// needNATS fails a scenario that drives the agent side without -nats.
func (f *fabric) needNATS() error {
	if f.nc == nil {
		return errors.New("this scenario needs -nats")
	}
	return nil
}

// Close stops everything in the reverse order of start. Idempotent.
func (f *fabric) Close() {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i]()
	}
	f.closers = nil
}

// openFileLimit is the soft RLIMIT_NOFILE (Go raises it to the hard limit
// at start-up on Linux).
func openFileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<20 {
		return 1 << 20
	}
	return int(rl.Cur)
}
