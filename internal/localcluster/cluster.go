// Package localcluster runs the cluster topology of docker-compose.yml on
// 127.0.0.1 without Docker: three real nats-server processes configured by
// the repository's nats.conf (R3 streams), edge processes (cmd/edge with
// NATS_URL naming every node and STREAM_REPLICAS=3, so no embedded server)
// and tool-worker processes (cmd/toolworker: built-in tools and demo-agent
// replicas). Tests use it for fault injection (kill, restart, stop and
// start any process); cmd/haipcluster uses it to try cluster mode locally.
//
// The binaries are built with go build from the module (nats-server from
// the version go.mod requires), once per process, into a cache directory.
// Every process writes its output to a log file; errors quote the last
// lines. Every wait is bounded; every port is picked free on 127.0.0.1.
// On Linux a child is SIGKILLed when the process that started it dies, so
// a crashed test leaves no servers behind.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
)

// Defaults of Options.
const (
	DefaultEdges        = 2
	DefaultToolWorkers  = 2
	DefaultReadyTimeout = 90 * time.Second
	// DefaultBuildTimeout bounds go build (a cold build cache compiles
	// nats-server from source).
	DefaultBuildTimeout = 10 * time.Minute
)

// Grace periods of a graceful stop before SIGKILL. An edge drains for up
// to its SHUTDOWN_TIMEOUT (default 20 s).
const (
	edgeGrace   = 30 * time.Second
	workerGrace = 30 * time.Second
)

// ProbeSubject owns ProbeSession, the session Start and the restarts open
// (and close again) through every edge to prove that sessions can be
// opened. The session stays empty; it is the same one on every run, so a
// kept directory does not collect probe sessions.
const ProbeSubject = "localcluster-probe"

// ProbeSession is the id of the readiness probe's session (a name-based
// uuid: haip.NameUUID("haipfabric", "localcluster", "probe")).
const ProbeSession = "3ece6b97-c592-5178-8b3b-2f531a718230"

// Options configures Start.
type Options struct {
	Dir         string            // data, logs and built binaries; "" = a new temp dir removed by Close
	Edges       int               // default 2
	ToolWorkers int               // default 2
	Env         map[string]string // extra environment for edges and tool workers
	Log         io.Writer         // progress lines; nil = discard

	// EdgeEnv and ToolWorkerEnv are extra environment for the edges or
	// the tool workers only, applied after Env. Negative Edges or
	// ToolWorkers start none of them.
	EdgeEnv       map[string]string
	ToolWorkerEnv map[string]string
	// EdgePort, when not 0, is edge 1's port on 127.0.0.1 and edge i's is
	// EdgePort+i-1, the same on every run; 0 = free ports picked at start.
	EdgePort int
	// Root is the module root (go.mod and nats.conf); "" = found by
	// walking up from the working directory.
	Root string
	// ReadyTimeout bounds each wait for readiness (nodes, edges, workers);
	// 0 = DefaultReadyTimeout. BuildTimeout bounds go build; 0 =
	// DefaultBuildTimeout. The ctx of each call bounds both as well.
	ReadyTimeout time.Duration
	BuildTimeout time.Duration
}

// setup is what StartNATS and Start share: the normalised options, the
// directory, the binaries and the progress logger.
type setup struct {
	opts    Options
	root    string
	dir     string
	ownDir  bool
	bins    map[string]string
	logf    func(string, ...any)
	cleanup func() error
}

func (o Options) setup(ctx context.Context, pkgs ...string) (*setup, error) {
	if o.Edges == 0 {
		o.Edges = DefaultEdges
	}
	if o.ToolWorkers == 0 {
		o.ToolWorkers = DefaultToolWorkers
	}
	o.Edges, o.ToolWorkers = max(o.Edges, 0), max(o.ToolWorkers, 0)
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.BuildTimeout <= 0 {
		o.BuildTimeout = DefaultBuildTimeout
	}
	s := &setup{opts: o, cleanup: func() error { return nil }}
	var logMu sync.Mutex
	s.logf = func(format string, args ...any) {
		if o.Log == nil {
			return
		}
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(o.Log, "localcluster: "+format+"\n", args...)
	}
	s.root = o.Root
	if s.root == "" {
		root, err := FindRoot()
		if err != nil {
			return nil, err
		}
		s.root = root
	}
	if !fileExists(filepath.Join(s.root, "nats.conf")) {
		return nil, fmt.Errorf("no nats.conf in module root %s", s.root)
	}
	binDir := defaultBinDir()
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "haipfabric-localcluster-")
		if err != nil {
			return nil, fmt.Errorf("cluster directory: %w", err)
		}
		s.dir, s.ownDir = dir, true
		s.cleanup = func() error {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("remove cluster directory: %w", err)
			}
			return nil
		}
	} else {
		dir, err := filepath.Abs(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("cluster directory: %w", err)
		}
		s.dir = dir
		binDir = filepath.Join(dir, "bin")
	}
	if err := ensureDir(filepath.Join(s.dir, "logs")); err != nil {
		return nil, errors.Join(err, s.cleanup())
	}
	bctx, cancel := context.WithTimeout(ctx, o.BuildTimeout)
	defer cancel()
	bins, err := buildBinaries(bctx, s.root, binDir, s.logf, pkgs...)
	if err != nil {
		return nil, errors.Join(err, s.cleanup())
	}
	s.bins = bins
	return s, nil
}

// Cluster is a running local topology: NATS nodes, edges, tool workers.
// Its methods are safe for concurrent use.
type Cluster struct {
	s       *setup
	nats    *NATS
	edges   []*edgeProc
	workers []*proc
	secret  string
	signer  *auth.Signer

	closeOnce sync.Once
	closeErr  error
}

type edgeProc struct {
	*proc
	port    int
	dataDir string
}

// Start builds the binaries if needed and starts the topology: the three
// NATS nodes, then the edges (the first alone, as it creates the streams,
// then the others), then the tool workers. It returns when every edge's
// /health answers 200 and a session can be opened through it, and every
// tool worker is ready. ctx bounds Start only, not the processes' lives:
// Close stops them. On failure everything started is stopped again.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	s, err := o.setup(ctx, natsServerPkg, edgePkg, toolWorkerPkg)
	if err != nil {
		return nil, err
	}
	c, err := newCluster(s)
	if err != nil {
		return nil, errors.Join(err, s.cleanup())
	}
	if err := c.StartAll(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func newCluster(s *setup) (*Cluster, error) {
	natsP, ports, err := reservePorts(natsPorts, s.opts.EdgePort, s.opts.Edges)
	if err != nil {
		return nil, err
	}
	n, err := newNATS(s, natsP)
	if err != nil {
		return nil, err
	}
	// The secret lives in the directory, so that tokens minted for a kept
	// directory stay valid across runs.
	raw, _, err := auth.LoadOrCreateSecret(filepath.Join(s.dir, "jwt-secret"))
	if err != nil {
		return nil, fmt.Errorf("JWT secret: %w", err)
	}
	secret := string(raw) // the file holds it as JWT_SECRET takes it
	signer, err := auth.NewHMACSigner([]byte(secret))
	if err != nil {
		return nil, fmt.Errorf("JWT signer: %w", err)
	}
	c := &Cluster{s: s, nats: n, secret: secret, signer: signer}
	for i := range s.opts.Edges {
		name := fmt.Sprintf("edge-%d", i+1)
		c.edges = append(c.edges, &edgeProc{
			proc:    &proc{name: name, bin: s.bins[edgePkg], logPath: filepath.Join(s.dir, "logs", name+".log")},
			port:    ports[i],
			dataDir: filepath.Join(s.dir, name),
		})
	}
	for i := range s.opts.ToolWorkers {
		name := fmt.Sprintf("toolworker-%d", i+1)
		c.workers = append(c.workers, &proc{name: name, bin: s.bins[toolWorkerPkg], logPath: filepath.Join(s.dir, "logs", name+".log")})
	}
	return c, nil
}

// NATS is the cluster's NATS nodes, for node-level control and inspection.
func (c *Cluster) NATS() *NATS { return c.nats }

// Dir is the directory holding data, logs and (with Options.Dir) binaries.
func (c *Cluster) Dir() string { return c.s.dir }

// NATSURLs is the comma-separated client URLs (nats://127.0.0.1:PORT) of
// all nodes: what the edges and tool workers get as NATS_URL.
func (c *Cluster) NATSURLs() string { return c.nats.URLs() }

// Edges is the number of edges.
func (c *Cluster) Edges() int { return len(c.edges) }

// ToolWorkers is the number of tool workers.
func (c *Cluster) ToolWorkers() int { return len(c.workers) }

// EdgeURL is edge i's base URL (http://127.0.0.1:PORT); it stays the same
// across restarts of the edge.
func (c *Cluster) EdgeURL(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", c.edges[i].port) }

// EdgeWSURL is edge i's WebSocket URL (ws://127.0.0.1:PORT/haip/websocket).
func (c *Cluster) EdgeWSURL(i int) string {
	return fmt.Sprintf("ws://127.0.0.1:%d/haip/websocket", c.edges[i].port)
}

// EdgePID is edge i's process id, 0 when it is not running.
func (c *Cluster) EdgePID(i int) int { return c.edges[i].pid() }

// EdgeRunning reports whether edge i's process is running.
func (c *Cluster) EdgeRunning(i int) bool { return c.edges[i].running() }

// EdgeLogPath is the file edge i's output goes to.
func (c *Cluster) EdgeLogPath(i int) string { return c.edges[i].logPath }

// ToolWorkerPID is tool worker i's process id, 0 when it is not running.
func (c *Cluster) ToolWorkerPID(i int) int { return c.workers[i].pid() }

// ToolWorkerRunning reports whether tool worker i's process is running.
func (c *Cluster) ToolWorkerRunning(i int) bool { return c.workers[i].running() }

// ToolWorkerLogPath is the file tool worker i's output goes to.
func (c *Cluster) ToolWorkerLogPath(i int) string { return c.workers[i].logPath }

// JWTSecret is the JWT_SECRET every edge verifies tokens with.
func (c *Cluster) JWTSecret() string { return c.secret }

// UserToken mints a user token for subject, valid for 24 hours, that the
// edges accept.
func (c *Cluster) UserToken(subject string) (string, error) {
	return c.Mint(auth.MintOptions{Subject: subject, Role: auth.RoleUser, TTL: 24 * time.Hour})
}

// Mint mints a token with the edges' secret (any role, lifetime or
// session allow-list).
func (c *Cluster) Mint(o auth.MintOptions) (string, error) {
	tok, err := c.signer.Mint(o)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return tok, nil
}

func envList(maps ...map[string]string) []string {
	var env []string
	for _, m := range maps {
		for k, v := range m {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (c *Cluster) edgeEnv(e *edgeProc) []string {
	base := map[string]string{
		"NATS_URL":        c.NATSURLs(),
		"STREAM_REPLICAS": "3",
		"JWT_SECRET":      c.secret,
		"HOST":            "127.0.0.1",
		"PORT":            fmt.Sprint(e.port),
		"DATA_DIR":        e.dataDir,
		// As in docker-compose.yml: agents and tools run in the workers.
		"DEMO_AGENT":    "false",
		"BUILTIN_TOOLS": "false",
	}
	return envList(base, c.s.opts.Env, c.s.opts.EdgeEnv)
}

func (c *Cluster) workerEnv(i int) []string {
	base := map[string]string{
		"NATS_URL":        c.NATSURLs(),
		"STREAM_REPLICAS": "3",
		"WORKER_NAME":     c.workers[i].name,
	}
	return envList(base, c.s.opts.Env, c.s.opts.ToolWorkerEnv)
}

func (c *Cluster) edge(i int) (*edgeProc, error) {
	if i < 0 || i >= len(c.edges) {
		return nil, fmt.Errorf("no edge %d (have %d)", i, len(c.edges))
	}
	return c.edges[i], nil
}

func (c *Cluster) worker(i int) (*proc, error) {
	if i < 0 || i >= len(c.workers) {
		return nil, fmt.Errorf("no tool worker %d (have %d)", i, len(c.workers))
	}
	return c.workers[i], nil
}

// readyCtx bounds one readiness wait by Options.ReadyTimeout.
func (c *Cluster) readyCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.s.opts.ReadyTimeout)
}

// StartEdge starts edge i (which must not be running) and waits until it
// is healthy and a session can be opened through it.
func (c *Cluster) StartEdge(ctx context.Context, i int) error {
	e, err := c.edge(i)
	if err != nil {
		return err
	}
	if err := e.start(c.edgeEnv(e)); err != nil {
		return err
	}
	c.s.logf("%s started (pid %d) on %s", e.name, e.pid(), c.EdgeURL(i))
	return c.waitEdge(ctx, i)
}

// KillEdge SIGKILLs edge i and waits for the process to exit.
func (c *Cluster) KillEdge(i int) error {
	e, err := c.edge(i)
	if err != nil {
		return err
	}
	e.kill()
	c.s.logf("%s killed", e.name)
	return nil
}

// StopEdge stops edge i gracefully: SIGTERM (it drains, telling clients
// where to resume), SIGKILL after 30 s.
func (c *Cluster) StopEdge(i int) error {
	e, err := c.edge(i)
	if err != nil {
		return err
	}
	err = e.stop(syscall.SIGTERM, edgeGrace)
	c.s.logf("%s stopped", e.name)
	return err
}

// RestartEdge stops edge i gracefully if it runs, starts it again on the
// same port and waits as StartEdge does.
func (c *Cluster) RestartEdge(ctx context.Context, i int) error {
	if err := c.StopEdge(i); err != nil {
		return err
	}
	return c.StartEdge(ctx, i)
}

// StartToolWorker starts tool worker i (which must not be running) and
// waits until it logs that it is ready.
func (c *Cluster) StartToolWorker(ctx context.Context, i int) error {
	w, err := c.worker(i)
	if err != nil {
		return err
	}
	if err := w.start(c.workerEnv(i)); err != nil {
		return err
	}
	c.s.logf("%s started (pid %d)", w.name, w.pid())
	return c.waitWorker(ctx, i)
}

// KillToolWorker SIGKILLs tool worker i and waits for the process to exit.
func (c *Cluster) KillToolWorker(i int) error {
	w, err := c.worker(i)
	if err != nil {
		return err
	}
	w.kill()
	c.s.logf("%s killed", w.name)
	return nil
}

// StopToolWorker stops tool worker i gracefully (SIGTERM: it hands its
// runs and calls back; SIGKILL after 30 s).
func (c *Cluster) StopToolWorker(i int) error {
	w, err := c.worker(i)
	if err != nil {
		return err
	}
	err = w.stop(syscall.SIGTERM, workerGrace)
	c.s.logf("%s stopped", w.name)
	return err
}

// RestartToolWorker stops tool worker i gracefully if it runs, starts it
// again and waits until it is ready.
func (c *Cluster) RestartToolWorker(ctx context.Context, i int) error {
	if err := c.StopToolWorker(i); err != nil {
		return err
	}
	return c.StartToolWorker(ctx, i)
}

// KillNode SIGKILLs NATS node i and waits for the process to exit.
func (c *Cluster) KillNode(i int) error { return c.nats.Kill(i) }

// StopNode stops NATS node i gracefully.
func (c *Cluster) StopNode(i int) error { return c.nats.Stop(i) }

// RestartNode SIGKILLs NATS node i if it runs, starts it again on its
// store, waits until it is current with the cluster, and then until a
// session can be opened through every running edge.
func (c *Cluster) RestartNode(ctx context.Context, i int) error {
	if err := c.nats.Restart(ctx, i); err != nil {
		return err
	}
	return c.waitEdges(ctx)
}

// StopNodes stops every NATS node gracefully, concurrently; edges and
// workers keep running (and reconnecting).
func (c *Cluster) StopNodes() error { return c.nats.StopAll() }

// StartNodes starts every NATS node that is not running, waits until all
// serve JetStream, and then until a session can be opened through every
// running edge: after a whole-cluster restart an edge's /health answers
// 200 before its sessions can be opened, so /health alone is not enough.
func (c *Cluster) StartNodes(ctx context.Context) error {
	if err := c.nats.StartAll(ctx); err != nil {
		return err
	}
	return c.waitEdges(ctx)
}

// StopAll stops everything gracefully: the tool workers and edges first
// (concurrently), then the NATS nodes.
func (c *Cluster) StopAll() error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range c.workers {
		wg.Go(func() {
			if err := c.StopToolWorker(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	for i := range c.edges {
		wg.Go(func() {
			if err := c.StopEdge(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	errs = append(errs, c.nats.StopAll())
	return errors.Join(errs...)
}

// StartAll starts whatever is not running, in order (NATS nodes, the
// first edge, the other edges, the tool workers), and waits as Start does.
func (c *Cluster) StartAll(ctx context.Context) error {
	if err := c.nats.StartAll(ctx); err != nil {
		return err
	}
	// The first edge to start creates (or updates) the streams; the
	// others and the workers find them.
	first := true
	var wg sync.WaitGroup
	errs := make([]error, len(c.edges)+len(c.workers))
	for i, e := range c.edges {
		if e.running() {
			continue
		}
		if first {
			first = false
			if err := c.StartEdge(ctx, i); err != nil {
				return err
			}
			continue
		}
		wg.Go(func() { errs[i] = c.StartEdge(ctx, i) })
	}
	wg.Wait()
	for i, w := range c.workers {
		if !w.running() {
			wg.Go(func() { errs[len(c.edges)+i] = c.StartToolWorker(ctx, i) })
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.WaitReady(ctx)
}

// WaitReady waits until every running NATS node serves JetStream, a
// session can be opened through every running edge, and every running
// tool worker is ready.
func (c *Cluster) WaitReady(ctx context.Context) error {
	if err := c.nats.WaitReady(ctx); err != nil {
		return err
	}
	if err := c.waitEdges(ctx); err != nil {
		return err
	}
	for i, w := range c.workers {
		if w.running() {
			if err := c.waitWorker(ctx, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitEdges waits for every running edge, concurrently.
func (c *Cluster) waitEdges(ctx context.Context) error {
	errs := make([]error, len(c.edges))
	var wg sync.WaitGroup
	for i, e := range c.edges {
		if e.running() {
			wg.Go(func() { errs[i] = c.waitEdge(ctx, i) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitEdge waits until edge i's /health answers 200 and then until the
// probe session can be opened through it.
func (c *Cluster) waitEdge(ctx context.Context, i int) error {
	ctx, cancel := c.readyCtx(ctx)
	defer cancel()
	e := c.edges[i]
	began := time.Now()
	if err := waitFor(ctx, e.proc, "answer 200 on /health", func(ctx context.Context) error { return c.edgeHealthy(ctx, i) }); err != nil {
		return err
	}
	healthy := time.Since(began)
	tok, err := c.Mint(auth.MintOptions{Subject: ProbeSubject, Role: auth.RoleUser, TTL: time.Hour})
	if err != nil {
		return err
	}
	if err := waitFor(ctx, e.proc, "open a session", func(ctx context.Context) error { return c.probeSession(ctx, i, tok) }); err != nil {
		return err
	}
	c.s.logf("%s ready: /health 200 after %s, sessions open after %s", e.name,
		healthy.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	return nil
}

func (c *Cluster) edgeHealthy(ctx context.Context, i int) error {
	status, body, err := httpGet(ctx, c.EdgeURL(i)+"/health")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("/health: HTTP %d %s", status, strings.TrimSpace(string(body)))
	}
	return nil
}

// probeSession opens ProbeSession through edge i and closes it again.
func (c *Cluster) probeSession(ctx context.Context, i int, token string) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := client.Dial(dctx, client.Options{URL: c.EdgeWSURL(i), Token: token, Session: ProbeSession})
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	_ = conn.Close()
	return nil
}

// workerReadyLine is what cmd/toolworker logs once it serves.
const workerReadyLine = "toolworker ready"

func (c *Cluster) waitWorker(ctx context.Context, i int) error {
	ctx, cancel := c.readyCtx(ctx)
	defer cancel()
	w := c.workers[i]
	return waitFor(ctx, w, "log "+workerReadyLine, func(context.Context) error {
		if strings.Contains(w.logSinceStart(), workerReadyLine) {
			return nil
		}
		return errors.New("not ready yet")
	})
}

// Close stops everything (SIGTERM, SIGKILL after a grace period), waits for
// every process to exit, and removes the directory when Start created it.
// It returns what did not stop cleanly. Calling it again returns the same.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.s.logf("stopping")
		c.closeErr = errors.Join(c.StopAll(), c.s.cleanup())
	})
	return c.closeErr
}
