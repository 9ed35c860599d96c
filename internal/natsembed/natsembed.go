// Package natsembed starts a nats-server with JetStream inside the current
// process: the single-box mode of the edge, and the server every test uses.
//
// The server never installs signal handlers and logs only when given a
// logger. Connect to it in-process with [nats.InProcessServer] (no TCP), or
// over TCP when Options.Listen names a loopback address.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// defaultReadyTimeout bounds how long Start waits for the server to accept
// connections when ctx carries no deadline.
const defaultReadyTimeout = 30 * time.Second

// Options configures an embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Listen is "host:port" to accept TCP clients on, so that workers in
	// other processes can join. Empty means no listener (in-process only).
	// Port 0 picks a free port; read it back with ClientURL.
	Listen string
	// ServerName names the server; empty means "haip-edge".
	ServerName string
	// MaxStore caps JetStream file storage in bytes; 0 means the server's
	// default (a share of the free disk).
	MaxStore int64
	// Logger receives the server's own log lines at debug level; nil means
	// silent.
	Logger *slog.Logger
}

// Start runs a nats-server with JetStream and waits until it is ready.
// The caller owns the server and must call Shutdown (then
// WaitForShutdown) to stop it.
func Start(ctx context.Context, o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	name := o.ServerName
	if name == "" {
		name = "haip-edge"
	}
	opts := &server.Options{
		ServerName: name,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
		DontListen: o.Listen == "",
		// Large session catch-up batches and republished bursts go through
		// in-process clients; keep the server from cutting them as slow.
		MaxPending: 64 << 20,
	}
	if o.MaxStore > 0 {
		opts.JetStreamMaxStore = o.MaxStore
	}
	if o.Listen != "" {
		host, portStr, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: bad listen address %q: %w", o.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("natsembed: bad listen port %q: %w", portStr, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: cannot create server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(&slogAdapter{l: o.Logger}, false, false, false)
	}
	s.Start()
	wait := defaultReadyTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: server not ready within %s", wait)
	}
	return s, nil
}

// Connect opens an in-process client connection to s (no TCP socket).
// Extra options are applied after the defaults.
func Connect(s *server.Server, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.InProcessServer(s),
		nats.Name(name),
		nats.MaxReconnects(-1),
	}, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("natsembed: cannot connect in-process: %w", err)
	}
	return nc, nil
}

// slogAdapter sends nats-server log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  {}
