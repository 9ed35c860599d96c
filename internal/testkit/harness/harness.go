// Package harness is the part of the test kit that runs a fabric: an
// embedded nats-server with the topology ensured, edges behind httptest on
// loopback, demo agents, the built-in tool workers and tokens, everything
// stopped when the test ends; and the read and assert helpers the tests of
// every package use on a [client.Conn].
//
// It is a package of its own, apart from package testkit, because it
// imports the packages it runs (edge, client, worker, streams): the tests
// of those packages' dependencies import testkit for their TestMain.
//
//	f := harness.New(t, streams.Config{})
//	e := f.Edge(edge.Config{})
//	f.Agent(0)
//	c := f.Dial(e, client.Options{Transport: "sse"})
//	envs := harness.ReadUntil(t, c, 10*time.Second, harness.IsRunFinished)
package harness

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/builtin"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// Secret signs every token the harness mints; its edges verify with it.
var Secret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// Fabric is one JetStream "cluster" (an embedded server) with the
// topology ensured; edges, agents and tool workers are added to it.
type Fabric struct {
	T      testing.TB
	NS     *server.Server
	NC     *nats.Conn // the fabric's own connection (the topology's)
	JS     jetstream.JetStream
	Dir    string // the server's store
	Cfg    streams.Config
	Signer *auth.Signer
}

// New starts an embedded server on a fresh store with the topology of cfg.
func New(t testing.TB, cfg streams.Config) *Fabric {
	t.Helper()
	return NewAt(t, t.TempDir(), cfg)
}

// NewAt starts an embedded server on the store dir (a restart test starts
// a second one on the same dir) with the topology of cfg.
func NewAt(t testing.TB, dir string, cfg streams.Config) *Fabric {
	t.Helper()
	return NewOn(t, natstest.ServerAt(t, dir, ""), dir, cfg)
}

// NewOn makes a fabric of the running server ns (whose store is in dir).
func NewOn(t testing.TB, ns *server.Server, dir string, cfg streams.Config) *Fabric {
	t.Helper()
	nc := natstest.Conn(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewHMACSigner(Secret)
	if err != nil {
		t.Fatal(err)
	}
	return &Fabric{T: t, NS: ns, NC: nc, JS: js, Dir: dir, Cfg: cfg, Signer: signer}
}

// Log opens a session log on the fabric's connection, closed with the test.
func (f *Fabric) Log() *streams.Log {
	f.T.Helper()
	lg, err := streams.OpenLog(context.Background(), f.NC, f.JS)
	if err != nil {
		f.T.Fatal(err)
	}
	f.T.Cleanup(func() { _ = lg.Close(context.Background()) })
	return lg
}

// Stop shuts the server down now (for restart tests).
func (f *Fabric) Stop() {
	f.NC.Close()
	f.NS.Shutdown()
	f.NS.WaitForShutdown()
}

// Token mints a token for sub with role, valid for an hour.
func (f *Fabric) Token(sub string, role auth.Role) string {
	f.T.Helper()
	return f.TokenTTL(sub, role, time.Hour)
}

// TokenTTL mints a token for sub with role, valid for ttl.
func (f *Fabric) TokenTTL(sub string, role auth.Role, ttl time.Duration) string {
	f.T.Helper()
	tok, err := f.Signer.Mint(auth.MintOptions{Subject: sub, Role: role, TTL: ttl})
	if err != nil {
		f.T.Fatal(err)
	}
	return tok
}

// Conn opens a NATS connection of its own to the fabric's server, closed
// with the test.
func (f *Fabric) Conn() *nats.Conn {
	f.T.Helper()
	return natstest.Conn(f.T, f.NS)
}

// Edge is an edge server behind httptest on loopback.
type Edge struct {
	Srv  *edge.Server
	HTTP *httptest.Server
	WS   string // ws://…/haip/websocket
	Base string // http://127.0.0.1:PORT

	fabric *Fabric
	once   sync.Once
}

// Edge starts an edge on its own NATS connection, as a separate process
// would have.
func (f *Fabric) Edge(cfg edge.Config) *Edge {
	f.T.Helper()
	return f.EdgeOn(f.Conn(), cfg)
}

// EdgeOn starts an edge on the NATS connection nc.
func (f *Fabric) EdgeOn(nc *nats.Conn, cfg edge.Config) *Edge {
	f.T.Helper()
	return f.EdgeWith(nc, cfg, nil)
}

// EdgeWith starts an edge on the NATS connection nc (a connection of its
// own when nil), with what deps changes in its Deps (a logger, a verifier
// with another leeway) when deps is not nil.
func (f *Fabric) EdgeWith(nc *nats.Conn, cfg edge.Config, deps func(*edge.Deps)) *Edge {
	f.T.Helper()
	return f.EdgeWrapped(nc, cfg, deps, nil)
}

// EdgeWrapped is [Fabric.EdgeWith] serving the edge's handler through
// wrap (a [Cutter]'s Wrap, say) when wrap is not nil.
func (f *Fabric) EdgeWrapped(nc *nats.Conn, cfg edge.Config, deps func(*edge.Deps), wrap func(http.Handler) http.Handler) *Edge {
	f.T.Helper()
	if nc == nil {
		nc = f.Conn()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		f.T.Fatal(err)
	}
	d := edge.Deps{NC: nc, JS: js, Verifier: f.Verifier(0)}
	if deps != nil {
		deps(&d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := edge.NewServer(ctx, cfg, d)
	if err != nil {
		f.T.Fatal(err)
	}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.Config.ConnState = srv.ConnState
	hs.Start()
	e := &Edge{Srv: srv, HTTP: hs, Base: hs.URL, WS: WSURL(hs.URL), fabric: f}
	f.T.Cleanup(e.Stop)
	return e
}

// Verifier is a verifier of the fabric's tokens with leeway (zero: the
// default).
func (f *Fabric) Verifier(leeway time.Duration) *auth.Verifier {
	f.T.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: Secret, Leeway: leeway})
	if err != nil {
		f.T.Fatal(err)
	}
	return v
}

// WSURL is the WebSocket endpoint of the edge at base (http://…).
func WSURL(base string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/haip/websocket"
}

// Shutdown drains the edge (as SIGTERM does) and fails t if the drain
// fails.
func (e *Edge) Shutdown(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// Stop drains the edge and closes its listener; a second call does
// nothing.
func (e *Edge) Stop() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Srv.Shutdown(ctx)
		e.HTTP.Close()
	})
}

// Agent runs a demo agent replica (delay between words; negative: none)
// on its own connection until the test ends or the returned stop is
// called.
func (f *Fabric) Agent(delay time.Duration) (stop func()) {
	f.T.Helper()
	nc := f.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		f.T.Fatal(err)
	}
	a, err := worker.NewAgent(context.Background(), nc, js, &demo.Agent{Delay: delay},
		worker.AgentConfig{Name: "demo", AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		f.T.Fatal(err)
	}
	return f.Run(a.Run)
}

// Tools serves the built-in tools as the worker name with concurrency
// until the test ends, and waits until they are advertised.
func (f *Fabric) Tools(name string, concurrency int) {
	f.T.Helper()
	nc := f.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		f.T.Fatal(err)
	}
	tw, err := worker.NewToolWorker(context.Background(), nc, js, builtin.Tools(),
		worker.ToolWorkerConfig{Name: name, Concurrency: concurrency, AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		f.T.Fatal(err)
	}
	f.Run(tw.Run)
	reg, err := streams.OpenTools(context.Background(), f.JS)
	if err != nil {
		f.T.Fatal(err)
	}
	testkit.Eventually(f.T, 10*time.Second, func() bool {
		_, ok, _ := reg.Get(context.Background(), "add")
		return ok
	}, "the built-in tools were never advertised")
}

// Run runs fn until the test ends or the returned stop is called (see
// [testkit.Go]).
func (f *Fabric) Run(fn func(context.Context) error) (stop func()) {
	return testkit.Go(f.T, fn)
}

// Dial connects to e with o, closed when the fabric's test ends; see
// [Dial].
func (f *Fabric) Dial(e *Edge, o client.Options) *client.Conn {
	f.T.Helper()
	return Dial(f.T, e, o)
}

// TryDial is [Fabric.Dial] that returns the error.
func (f *Fabric) TryDial(e *Edge, o client.Options) (*client.Conn, error) {
	f.T.Helper()
	return TryDial(f.T, e, o)
}

// Dial connects to e with o, closed when t ends: the URL is the edge's
// when o has none, the token alice's (a user) when o has none. It fails
// t if the dial does.
func Dial(t testing.TB, e *Edge, o client.Options) *client.Conn {
	t.Helper()
	c, err := TryDial(t, e, o)
	if err != nil {
		t.Fatalf("dial %s: %v", o.Transport, err)
	}
	return c
}

// TryDial is [Dial] that returns the error.
func TryDial(t testing.TB, e *Edge, o client.Options) (*client.Conn, error) {
	t.Helper()
	if o.URL == "" {
		o.URL = e.WS
	}
	if o.Token == "" {
		o.Token = e.fabric.Token("alice", auth.RoleUser)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err == nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, err
}

// OperatorGet GETs an operator endpoint of the edge at base (/stats,
// /metrics) with an admin token; the caller closes the body.
func OperatorGet(t testing.TB, base, path string) *http.Response {
	t.Helper()
	signer, err := auth.NewHMACSigner(Secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := signer.Mint(auth.MintOptions{Subject: "operator", Role: auth.RoleAdmin, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
