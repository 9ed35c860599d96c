package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/internal/agentcfg"
	"github.com/haipfabric/haipfabric/internal/logging"
	"github.com/haipfabric/haipfabric/internal/natsembed"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/builtin"
)

// config is everything the edge process reads from the environment.
type config struct {
	// Host and Port are where HTTP and WebSocket clients connect. Port 0
	// picks a free port (printed at start).
	Host string `env:"HOST" envDefault:"127.0.0.1"`
	Port int    `env:"PORT" envDefault:"8080"`
	// TLSCertFile and TLSKeyFile serve HTTPS (and HTTP/2) when both are set.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// H2C serves HTTP/2 without TLS (prior knowledge or upgrade), so that
	// many SSE streams share one connection behind a TLS-terminating proxy.
	H2C bool `env:"H2C" envDefault:"false"`
	// NATSURL is the NATS to use; empty runs an embedded nats-server.
	NATSURL string `env:"NATS_URL"`
	// DataDir holds the embedded server's JetStream files and the
	// generated dev secret.
	DataDir string `env:"DATA_DIR" envDefault:"./data"`
	// NATSListen exposes the embedded nats-server on this address (for
	// example 127.0.0.1:4222) so workers in other processes can join.
	// Empty means in-process only.
	NATSListen string `env:"NATS_LISTEN"`

	JWTSecret        string `env:"JWT_SECRET"`
	JWTPublicKeyFile string `env:"JWT_PUBLIC_KEY_FILE"`
	JWTIssuer        string `env:"JWT_ISSUER"`
	JWTAudience      string `env:"JWT_AUDIENCE"`
	// JWTMaxTTL is the longest lifetime ("exp" minus "iat") of a token the
	// edge accepts.
	JWTMaxTTL time.Duration `env:"JWT_MAX_TTL" envDefault:"720h"`
	// DevTokenTTL is the lifetime of the tokens printed at start; at most
	// JWTMaxTTL.
	DevTokenTTL time.Duration `env:"DEV_TOKEN_TTL" envDefault:"24h"`
	// Env "production" never offers a dev token to the web console.
	Env string `env:"ENV"`

	// Replicas is the JetStream replication of every stream: 1 on a
	// single box, 3 in a cluster.
	Replicas int `env:"STREAM_REPLICAS" envDefault:"1"`
	// RetentionMaxAge and RetentionMaxBytes bound the session logs (0 = no
	// bound). DuplicateWindow is how long message ids are remembered.
	RetentionMaxAge   time.Duration `env:"RETENTION_MAX_AGE" envDefault:"168h"`
	RetentionMaxBytes int64         `env:"RETENTION_MAX_BYTES" envDefault:"0"`
	DuplicateWindow   time.Duration `env:"DUPLICATE_WINDOW" envDefault:"2m"`

	// Agent configures the agent run in this process (DEMO_AGENT, AGENT,
	// LLM_…).
	Agent agentcfg.Config
	// Tools configures the built-in tools run in this process (BUILTIN_TOOLS…).
	Tools agentcfg.Tools

	// HTTPIdleTimeout closes a keep-alive connection that has carried no
	// request for this long (idle sockets otherwise stay open for ever).
	HTTPIdleTimeout time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"60s"`

	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"text"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// PprofListen serves net/http/pprof on this loopback address (for
	// example 127.0.0.1:6060) to profile the edge; empty (the default)
	// serves nothing. Profiles expose the process's internals, so only
	// loopback addresses are accepted.
	PprofListen string `env:"PPROF_LISTEN"`

	Edge edge.Config
}

func loadConfig() (config, error) {
	var c config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("bad configuration: %w", err)
	}
	var errs []error
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("PORT %d: want 0-65535", c.Port))
	}
	if c.NATSURL == "" && c.DataDir == "" {
		errs = append(errs, errors.New("DATA_DIR is empty: the embedded server needs a directory"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS_CERT_FILE and TLS_KEY_FILE go together"))
	}
	if c.HTTPIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HTTP_IDLE_TIMEOUT %v: want a positive duration", c.HTTPIdleTimeout))
	}
	if c.JWTMaxTTL <= 0 {
		errs = append(errs, fmt.Errorf("JWT_MAX_TTL %v: want a positive duration", c.JWTMaxTTL))
	} else if c.DevTokenTTL > c.JWTMaxTTL {
		errs = append(errs, fmt.Errorf("DEV_TOKEN_TTL %v is over JWT_MAX_TTL %v: the printed tokens would be refused", c.DevTokenTTL, c.JWTMaxTTL))
	}
	if _, err := logging.New(c.LogLevel, c.LogFormat, io.Discard); err != nil {
		errs = append(errs, err)
	}
	if err := c.Edge.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Agent.Enabled {
		if err := c.Agent.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.PprofListen != "" {
		if err := checkLoopback(c.PprofListen); err != nil {
			errs = append(errs, fmt.Errorf("PPROF_LISTEN: %w", err))
		}
	}
	if err := c.streams().Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("bad configuration: %w", errors.Join(errs...))
	}
	return c, nil
}

func (c config) streams() streams.Config {
	return streams.Config{Replicas: c.Replicas, MaxAge: c.RetentionMaxAge, MaxBytes: c.RetentionMaxBytes, DuplicateWindow: c.DuplicateWindow}
}

// readHeaderTimeout bounds the wait for a request's headers, on a new
// connection or a kept-alive one.
const readHeaderTimeout = 10 * time.Second

// secretFile is where the generated dev secret lives inside DATA_DIR.
const secretFile = "jwt-secret"

// verifierConfig returns the JWT settings and, when the dev secret is in
// use, the secret to mint the printed tokens with. The dev secret is the
// file DATA_DIR/jwt-secret, read as JWT_SECRET is: a single box creates it
// on first start; an edge joining another NATS (NATS_URL) uses it only
// when it exists (started in the first edge's directory) and otherwise
// refuses to start, so that no edge ever makes up a secret of its own that
// the others' tokens fail.
func (c config) verifierConfig() (cfg auth.Config, devSecret []byte, created bool, err error) {
	cfg = auth.Config{Issuer: c.JWTIssuer, Audience: c.JWTAudience, MaxTTL: c.JWTMaxTTL}
	if c.JWTPublicKeyFile != "" {
		pem, err := os.ReadFile(c.JWTPublicKeyFile)
		if err != nil {
			return cfg, nil, false, fmt.Errorf("cannot read JWT_PUBLIC_KEY_FILE: %w", err)
		}
		cfg.PublicKeyPEM = pem
	}
	switch {
	case c.JWTSecret != "":
		cfg.Secret = []byte(c.JWTSecret)
	case cfg.PublicKeyPEM != nil:
	case c.NATSURL != "":
		secret, err := auth.LoadSecret(c.secretPath())
		if errors.Is(err, fs.ErrNotExist) {
			return cfg, nil, false, fmt.Errorf("no JWT secret: with NATS_URL set, give the secret every edge of the fabric shares as JWT_SECRET (for one started in %s: JWT_SECRET=$(cat %s)), or JWT_PUBLIC_KEY_FILE",
				filepath.Dir(c.secretPath()), c.secretPath())
		}
		if err != nil {
			return cfg, nil, false, err
		}
		cfg.Secret = secret
		return cfg, secret, false, nil
	default:
		secret, created, err := auth.LoadOrCreateSecret(c.secretPath())
		if err != nil {
			return cfg, nil, false, fmt.Errorf("cannot set up the dev secret: %w", err)
		}
		cfg.Secret = secret
		return cfg, secret, created, nil
	}
	return cfg, nil, false, nil
}

// consoleDevToken is the user token the web console offers on a
// development box: only when this edge made its own dev secret (single
// box: no NATS_URL, JWT_SECRET or public key) and ENV is not
// "production"; "" otherwise.
func (c config) consoleDevToken(devSecret []byte) string {
	if devSecret == nil || c.NATSURL != "" || c.JWTSecret != "" || c.JWTPublicKeyFile != "" || strings.EqualFold(c.Env, "production") {
		return ""
	}
	signer, err := auth.NewHMACSigner(devSecret)
	if err != nil {
		return ""
	}
	token, err := signer.Mint(auth.MintOptions{Subject: "dev-user", Role: auth.RoleUser, TTL: c.DevTokenTTL, Issuer: c.JWTIssuer, Audience: c.JWTAudience})
	if err != nil {
		return ""
	}
	return token
}

// secretPath is where the dev secret lives.
func (c config) secretPath() string { return filepath.Join(c.DataDir, secretFile) }

// run serves until ctx is cancelled, then drains: clients are told to
// resume elsewhere, running agent turns are handed back to the queue, and
// every stored message stays stored.
func run(ctx context.Context, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	logger, err := logging.New(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}

	vcfg, devSecret, created, err := cfg.verifierConfig()
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(vcfg)
	if err != nil {
		return fmt.Errorf("cannot set up JWT verification: %w", err)
	}

	nc, ns, err := connectNATS(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		nc.Close()
		if ns != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("cannot use JetStream: %w", err)
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	if err := streams.Ensure(setupCtx, js, cfg.streams()); err != nil {
		return err
	}
	// The process's own Go runtime and resource metrics sit beside the
	// edge's on /metrics (heap, goroutines, RSS, open files).
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Edge.ConsoleDevToken = cfg.consoleDevToken(devSecret)
	srv, err := edge.NewServer(setupCtx, cfg.Edge, edge.Deps{NC: nc, JS: js, Verifier: verifier, Logger: logger, Registerer: reg, Gatherer: reg})
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	agentCtx, stopAgent := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAgent()
	if cfg.Agent.Enabled {
		agentLog := logger.With(slog.String("component", cfg.Agent.AgentName()+"-agent"))
		handler, release, err := cfg.Agent.NewHandler(setupCtx, nc, js, agentLog)
		if err != nil {
			return err
		}
		agent, err := worker.NewAgent(setupCtx, nc, js, handler, cfg.Agent.AgentConfig(agentLog, cfg.ShutdownTimeout))
		if err != nil {
			release()
			return err
		}
		srv.AddCheck(cfg.Agent.AgentName()+" agent", agent.Healthy)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer release()
			if err := agent.Run(agentCtx); err != nil {
				logger.Error("agent stopped", slog.Any("err", err))
			}
		}()
	}

	if cfg.Tools.Enabled {
		tw, err := worker.NewToolWorker(setupCtx, nc, js, builtin.Tools(), cfg.Tools.WorkerConfig("edge", logger.With(slog.String("component", "tools")), cfg.ShutdownTimeout))
		if err != nil {
			stopAgent()
			wg.Wait()
			return err
		}
		srv.AddCheck("built-in tools", tw.Healthy)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tw.Run(agentCtx); err != nil {
				logger.Error("built-in tools stopped", slog.Any("err", err))
			}
		}()
	}

	if cfg.PprofListen != "" {
		pp, err := startPprof(cfg.PprofListen, logger)
		if err != nil {
			stopAgent()
			wg.Wait()
			return err
		}
		defer pp.stop()
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	if err != nil {
		stopAgent()
		wg.Wait()
		return fmt.Errorf("cannot listen: %w", err)
	}
	// Idle keep-alive connections are closed after HTTP_IDLE_TIMEOUT, and
	// the edge counts open connections and caps them at
	// MAX_HTTP_CONNECTIONS (srv.ConnState). There is no ReadTimeout: it
	// would cut every stream's request body and every WebSocket (a
	// hijacked connection keeps its deadline); a POST's body has its own
	// bound, POST_TIMEOUT.
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ConnState:         srv.ConnState,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// HTTP/2 lets a browser hold many SSE streams on one connection (the
	// HTTP/1.1 limit is six per host).
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(cfg.H2C)
	hs.Protocols = &protocols
	serveErr := make(chan error, 1)
	base := "http://" + ln.Addr().String()
	if cfg.TLSCertFile != "" {
		base = "https://" + ln.Addr().String()
		go func() { serveErr <- hs.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile) }()
	} else {
		go func() { serveErr <- hs.Serve(ln) }()
	}

	printBanner(stdout, base, ns, devSecret, created, cfg)
	logger.Info("edge ready", slog.String("addr", ln.Addr().String()), slog.Bool("embedded_nats", ns != nil))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		stopAgent()
		wg.Wait()
		return fmt.Errorf("http server: %w", err)
	}
	logger.Info("draining")
	// Everything drains at once within SHUTDOWN_TIMEOUT: the clients are
	// told to resume elsewhere while the in-process agent and tools finish
	// (or hand back) what they run; their drain keeps the end of the
	// budget for handing back (agentcfg.DrainWithin).
	shCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	stopAgent()
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	var errs []error
	// A client that does not finish its close within the budget is cut:
	// that is the budget working, not a failed stop.
	if err := srv.Shutdown(shCtx); errors.Is(err, context.DeadlineExceeded) {
		logger.Warn("drain outlasted SHUTDOWN_TIMEOUT; the remaining connections were cut", slog.Duration("timeout", cfg.ShutdownTimeout))
	} else if err != nil {
		errs = append(errs, err)
	}
	if err := hs.Shutdown(shCtx); errors.Is(err, context.DeadlineExceeded) {
		logger.Warn("HTTP requests outlasted SHUTDOWN_TIMEOUT; closing them")
		_ = hs.Close()
	} else if err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	select {
	case <-workersDone:
	case <-shCtx.Done():
		// A handler that ignores its cancellation: what it holds is
		// redelivered after its ack wait. The budget is kept.
		logger.Warn("in-process workers outlasted SHUTDOWN_TIMEOUT; stopping without them", slog.Duration("timeout", cfg.ShutdownTimeout))
	}
	if err := nc.Drain(); err != nil {
		errs = append(errs, fmt.Errorf("nats drain: %w", err))
	}
	logger.Info("stopped")
	return errors.Join(errs...)
}

func connectNATS(ctx context.Context, cfg config, logger *slog.Logger) (*nats.Conn, *server.Server, error) {
	if cfg.NATSURL != "" {
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("haip-edge"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { logger.Warn("nats disconnected", slog.Any("err", err)) }),
			nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", slog.String("url", nc.ConnectedUrl())) }))
		if err != nil {
			return nil, nil, fmt.Errorf("cannot connect to NATS_URL: %w", err)
		}
		return nc, nil, nil
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ns, err := natsembed.Start(startCtx, natsembed.Options{
		StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
		Listen:   cfg.NATSListen,
		Logger:   logger.With(slog.String("component", "nats-server")),
	})
	if err != nil {
		return nil, nil, err
	}
	nc, err := natsembed.Connect(ns, "haip-edge")
	if err != nil {
		ns.Shutdown()
		return nil, nil, err
	}
	return nc, ns, nil
}

// printBanner tells a newcomer how to connect. With the dev secret it
// mints a user and an agent token; lines are stable for scripts.
func printBanner(w io.Writer, base string, ns *server.Server, devSecret []byte, created bool, cfg config) {
	ws := "ws" + strings.TrimPrefix(base, "http") + "/haip/websocket"
	fmt.Fprintf(w, "HAIP edge listening on %s\n", base)
	fmt.Fprintf(w, "websocket: %s\n", ws)
	fmt.Fprintf(w, "sse: %s/haip/sse  stream: %s/haip/stream  post: %s/haip/messages\n", base, base, base)
	if ns != nil && cfg.NATSListen != "" {
		fmt.Fprintf(w, "embedded NATS for workers: %s\n", ns.ClientURL())
	}
	if devSecret == nil {
		return
	}
	signer, err := auth.NewHMACSigner(devSecret)
	if err != nil {
		return
	}
	user, err1 := signer.Mint(auth.MintOptions{Subject: "dev-user", Role: auth.RoleUser, TTL: cfg.DevTokenTTL, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
	agent, err2 := signer.Mint(auth.MintOptions{Subject: "dev-agent", Role: auth.RoleAgent, TTL: cfg.DevTokenTTL, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience})
	if err1 != nil || err2 != nil {
		return
	}
	if created {
		fmt.Fprintf(w, "generated a dev JWT secret in %s (set JWT_SECRET in production; other edges: JWT_SECRET=$(cat %s))\n", cfg.secretPath(), cfg.secretPath())
	}
	fmt.Fprintf(w, "user token: %s\n", user)
	fmt.Fprintf(w, "agent token: %s\n", agent)
	fmt.Fprintf(w, "try: go run ./cmd/haipchat -url %s -token %s\n", ws, user)
}

// runToken mints a token: edge token -sub alice [-role user] [-ttl 24h] [-sessions a,b].
// It signs with JWT_SECRET, or with the dev secret an edge made in
// DATA_DIR; it never makes one (its tokens would fail on every edge).
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: edge token -sub SUBJECT [-role user|agent|admin] [-ttl 24h] [-sessions a,b]\n"+
			"Mints a token signed with JWT_SECRET, or with the secret in DATA_DIR (default ./data) made by the edge's first start.\n")
		fs.PrintDefaults()
	}
	sub := fs.String("sub", "", "subject (user id) the token speaks for (required)")
	role := fs.String("role", "user", "role: user, agent or admin")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
	sessions := fs.String("sessions", "", "optional comma-separated allow-list of session ids")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if *ttl > cfg.JWTMaxTTL {
		return fmt.Errorf("cannot mint token: -ttl %v is over JWT_MAX_TTL %v, the edge would refuse it", *ttl, cfg.JWTMaxTTL)
	}
	secret := []byte(cfg.JWTSecret)
	if len(secret) == 0 {
		secret, err = auth.LoadSecret(cfg.secretPath())
		if err != nil {
			return fmt.Errorf("no JWT_SECRET, and no secret made by an edge in %s (start the edge there first, or set JWT_SECRET): %w", cfg.DataDir, err)
		}
	}
	signer, err := auth.NewHMACSigner(secret)
	if err != nil {
		return err
	}
	opts := auth.MintOptions{Subject: *sub, Role: auth.Role(*role), TTL: *ttl, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
	if *sessions != "" {
		opts.Sessions = strings.Split(*sessions, ",")
	}
	tok, err := signer.Mint(opts)
	if err != nil {
		return fmt.Errorf("cannot mint token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// runHealth checks an HTTP health endpoint: edge health [-url URL].
func runHealth(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	url := fs.String("url", "http://127.0.0.1:"+port+"/health", "endpoint that must answer 200")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %d", *url, resp.StatusCode)
	}
	return nil
}
