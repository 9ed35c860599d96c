package edge_test

import (
	"context"
	"encoding/json"
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
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// testSecret signs every test token.
var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// fabric is one JetStream "cluster" (an embedded server) with the
// topology ensured; edges and agents are added to it.
type fabric struct {
	t      testing.TB
	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	dir    string
	cfg    streams.Config
	signer *auth.Signer
}

func newFabric(t testing.TB, cfg streams.Config) *fabric {
	t.Helper()
	return newFabricAt(t, t.TempDir(), cfg)
}

func newFabricAt(t testing.TB, dir string, cfg streams.Config) *fabric {
	t.Helper()
	return newFabricOn(t, natstest.ServerAt(t, dir, ""), dir, cfg)
}

// newFabricOn makes a fabric of the server ns (whose store is in dir).
func newFabricOn(t testing.TB, ns *server.Server, dir string, cfg streams.Config) *fabric {
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
	signer, err := auth.NewHMACSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &fabric{t: t, ns: ns, nc: nc, js: js, dir: dir, cfg: cfg, signer: signer}
}

// log opens a session log on the fabric's connection, closed with the test.
func (f *fabric) log() *streams.Log {
	f.t.Helper()
	lg, err := streams.OpenLog(context.Background(), f.nc, f.js)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = lg.Close(context.Background()) })
	return lg
}

// stop shuts the server down now (for restart tests).
func (f *fabric) stop() {
	f.nc.Close()
	f.ns.Shutdown()
	f.ns.WaitForShutdown()
}

func (f *fabric) token(sub string, role auth.Role) string {
	f.t.Helper()
	tok, err := f.signer.Mint(auth.MintOptions{Subject: sub, Role: role, TTL: time.Hour})
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

type testEdge struct {
	srv  *edge.Server
	http *httptest.Server
	ws   string // ws://…/haip/websocket
	base string // http://…
	once sync.Once
}

// edge starts an edge on its own NATS connection, as a separate process
// would have.
func (f *fabric) edge(cfg edge.Config) *testEdge {
	f.t.Helper()
	return f.edgeOn(natstest.Conn(f.t, f.ns), cfg)
}

// edgeOn starts an edge on the NATS connection nc.
func (f *fabric) edgeOn(nc *nats.Conn, cfg edge.Config) *testEdge {
	f.t.Helper()
	return f.edgeWith(nc, cfg, nil)
}

// edgeWith starts an edge on the NATS connection nc, with what deps
// changes in its Deps (a logger, say) when deps is not nil.
func (f *fabric) edgeWith(nc *nats.Conn, cfg edge.Config, deps func(*edge.Deps)) *testEdge {
	f.t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := edge.Deps{NC: nc, JS: js, Verifier: v}
	if deps != nil {
		deps(&d)
	}
	srv, err := edge.NewServer(ctx, cfg, d)
	if err != nil {
		f.t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.ConnState = srv.ConnState
	hs.Start()
	e := &testEdge{srv: srv, http: hs, base: hs.URL, ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/haip/websocket"}
	f.t.Cleanup(e.stop)
	return e
}

func (e *testEdge) stop() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(ctx)
		e.http.Close()
	})
}

// agent runs a demo agent replica on its own connection until the test
// ends (or the returned stop is called).
func (f *fabric) agent(delay time.Duration) (stop func()) {
	f.t.Helper()
	nc := natstest.Conn(f.t, f.ns)
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	a, err := worker.NewAgent(context.Background(), nc, js, &demo.Agent{Delay: delay}, worker.AgentConfig{Name: "demo", AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	f.t.Cleanup(stop)
	return stop
}

func (f *fabric) dial(e *testEdge, o client.Options) *client.Conn {
	f.t.Helper()
	c, err := f.tryDial(e, o)
	if err != nil {
		f.t.Fatalf("dial: %v", err)
	}
	return c
}

func (f *fabric) tryDial(e *testEdge, o client.Options) (*client.Conn, error) {
	o.URL = e.ws
	if o.Token == "" {
		o.Token = f.token("alice", auth.RoleUser)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err == nil {
		f.t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, err
}

func u64(v uint64) *uint64 { return &v }

// operatorGet GETs an operator endpoint of the edge at base (/stats,
// /metrics) with an admin token; the caller closes the body.
func operatorGet(t testing.TB, base, path string) *http.Response {
	t.Helper()
	signer, err := auth.NewHMACSigner(testSecret)
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

// readUntil reads envelopes until stop says so or the deadline passes,
// returning the log messages (control messages are skipped).
func readUntil(t *testing.T, c *client.Conn, within time.Duration, stop func(*haip.Envelope) bool) []*haip.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []*haip.Envelope
	for {
		env, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d log messages: %v", len(got), err)
		}
		if client.IsControl(env.Type) {
			if env.Type == haip.TypeError {
				t.Logf("ERROR from edge: %s", env.Payload)
			}
			continue
		}
		got = append(got, env)
		if stop(env) {
			return got
		}
	}
}

// readControl reads until a control envelope of type t arrives.
func readControl(t *testing.T, c *client.Conn, typ haip.Type, within time.Duration) *haip.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		env, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if env.Type == typ {
			return env
		}
	}
}

func errorPayload(t *testing.T, env *haip.Envelope) haip.ErrorPayload {
	t.Helper()
	var p haip.ErrorPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func isRunFinished(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished }

// assertDense checks that seqs run first, first+1, … with no repeat.
func assertDense(t *testing.T, envs []*haip.Envelope, first uint64) {
	t.Helper()
	for i, e := range envs {
		if want := first + uint64(i); uint64(e.Seq) != want {
			seqs := make([]uint64, len(envs))
			for j, x := range envs {
				seqs[j] = uint64(x.Seq)
			}
			t.Fatalf("message %d has seq %d, want %d; seqs %v", i, e.Seq, want, seqs)
		}
	}
}

// answerText joins the TEXT_MESSAGE_PART texts.
func answerText(t *testing.T, envs []*haip.Envelope) string {
	t.Helper()
	var b strings.Builder
	for _, e := range envs {
		if e.Type == haip.TypeTextMessagePart {
			var p haip.TextMessagePartPayload
			if err := e.DecodePayload(&p); err != nil {
				t.Fatal(err)
			}
			b.WriteString(p.Text)
		}
	}
	return b.String()
}
