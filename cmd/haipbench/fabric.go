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

	setupTimeout    = 30 * time.Second
	shutdownTimeout = 30 * time.Second
	// fdsPerSelfConn: in -self mode each connection holds two sockets
	// (client and edge end); fdReserve is left for everything else.
	fdsPerSelfConn = 2
	fdReserve      = 256
)

// fabric is what the scenarios run against: a WebSocket URL and token for
// clients, a NATS connection and session log for the agent side, and a
// second NATS connection for the raw baseline.
type fabric struct {
	mode  string
	wsURL string
	token string
	// agent side
	nc  *nats.Conn
	js  jetstream.JetStream
	log *streams.Log
	// raw baseline, on its own connection
	rawNC *nats.Conn
	rawJS jetstream.JetStream

	maxConns int // connections this fabric can hold
	edgePID  int // 0: the edge is this process (self) or unknown

	closers []func()
}

func openFabric(ctx context.Context, cfg config) (f *fabric, err error) {
	f = &fabric{}
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	fds := openFileLimit()
	if cfg.Self {
		f.mode = modeSelf
		f.maxConns = min(maxConns, (fds-fdReserve)/fdsPerSelfConn)
		return f, f.openSelf(ctx, cfg)
	}
	f.mode = modeExternal
	f.maxConns = min(maxConns, fds-fdReserve)
	f.wsURL, f.token, f.edgePID = cfg.URL, cfg.Token, cfg.EdgePID
	if cfg.NATS == "" {
		return f, nil
	}
	connect := func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(cfg.NATS, nats.Name(name))
		if err != nil {
			return nil, fmt.Errorf("cannot connect to %s: %w", cfg.NATS, err)
		}
		f.closers = append(f.closers, nc.Close)
		return nc, nil
	}
	if f.nc, err = connect("haipbench-agent"); err != nil {
		return f, err
	}
	if f.rawNC, err = connect("haipbench-raw"); err != nil {
		return f, err
	}
	return f, f.openAgent(ctx)
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
	conn := func(name string) (*nats.Conn, error) {
		nc, err := natsembed.Connect(ns, name)
		if err != nil {
			return nil, err
		}
		f.closers = append(f.closers, nc.Close)
		return nc, nil
	}
	if f.nc, err = conn("haipbench-agent"); err != nil {
		return err
	}
	if f.rawNC, err = conn("haipbench-raw"); err != nil {
		return err
	}
	js, err := jetstream.New(f.nc)
	if err != nil {
		return err
	}
	if err := streams.Ensure(ctx, js, streams.Config{}); err != nil {
		return fmt.Errorf("cannot create streams: %w", err)
	}
	if err := f.openAgent(ctx); err != nil {
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
	if f.token, err = signer.Mint(auth.MintOptions{Subject: "haipbench", Role: auth.RoleUser, TTL: time.Hour}); err != nil {
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
	ecfg := edge.Config{MaxConnections: max(cfg.Conns, cfg.Sessions, cfg.Clients) + 16}
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
	f.wsURL = "ws://" + ln.Addr().String() + "/haip/websocket"
	return nil
}

func (f *fabric) openAgent(ctx context.Context) error {
	var err error
	if f.js, err = jetstream.New(f.nc); err != nil {
		return err
	}
	if f.rawJS, err = jetstream.New(f.rawNC, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		return err
	}
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
