package client_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/builtin"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// testSecret signs every test token.
var testSecret = []byte("0123456789abcdef0123456789abcdef-client-test")

// fabric is an embedded nats-server with the topology ensured, to which
// edges, a demo agent and the built-in tools are added; everything stops
// when the test ends.
type fabric struct {
	t      testing.TB
	ns     *server.Server
	js     jetstream.JetStream
	signer *auth.Signer
}

func newFabric(t testing.TB) *fabric {
	t.Helper()
	ns := natstest.Server(t)
	js, err := jetstream.New(natstest.Conn(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewHMACSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &fabric{t: t, ns: ns, js: js, signer: signer}
}

// token mints a user token valid for ttl.
func (f *fabric) token(sub string, ttl time.Duration) string {
	f.t.Helper()
	tok, err := f.signer.Mint(auth.MintOptions{Subject: sub, Role: auth.RoleUser, TTL: ttl})
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// testEdge is an edge behind httptest on its own NATS connection.
type testEdge struct {
	srv  *edge.Server
	base string // http://127.0.0.1:PORT
	once sync.Once
	hs   *httptest.Server
}

// edge starts an edge; leeway is the verifier's (zero: its default).
func (f *fabric) edge(cfg edge.Config, leeway time.Duration) *testEdge {
	f.t.Helper()
	nc := natstest.Conn(f.t, f.ns)
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret, Leeway: leeway})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := edge.NewServer(ctx, cfg, edge.Deps{NC: nc, JS: js, Verifier: v})
	if err != nil {
		f.t.Fatal(err)
	}
	e := &testEdge{srv: srv, hs: httptest.NewServer(srv.Handler())}
	e.base = e.hs.URL
	f.t.Cleanup(e.stop)
	return e
}

// ws is the edge's WebSocket URL.
func (e *testEdge) ws() string { return "ws" + strings.TrimPrefix(e.base, "http") + "/haip/websocket" }

// shutdown drains the edge (as SIGTERM does) and waits for it.
func (e *testEdge) shutdown(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func (e *testEdge) stop() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(ctx)
		e.hs.Close()
	})
}

// agent runs a demo agent replica (delay between words) until the test
// ends.
func (f *fabric) agent(delay time.Duration) {
	f.t.Helper()
	nc := natstest.Conn(f.t, f.ns)
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	a, err := worker.NewAgent(context.Background(), nc, js, &demo.Agent{Delay: delay},
		worker.AgentConfig{Name: "demo", AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	f.run(a.Run)
}

// tools serves the built-in tools until the test ends, and waits until
// they are advertised.
func (f *fabric) tools() {
	f.t.Helper()
	nc := natstest.Conn(f.t, f.ns)
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	tw, err := worker.NewToolWorker(context.Background(), nc, js, builtin.Tools(),
		worker.ToolWorkerConfig{Name: "builtin", Concurrency: 4, AckWait: 5 * time.Second, DrainWait: 100 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	f.run(tw.Run)
	reg, err := streams.OpenTools(context.Background(), f.js)
	if err != nil {
		f.t.Fatal(err)
	}
	testkit.Eventually(f.t, 10*time.Second, func() bool {
		_, ok, _ := reg.Get(context.Background(), "add")
		return ok
	}, "the built-in tools were never advertised")
}

// run runs fn on a goroutine until the test ends, then cancels and waits
// for it.
func (f *fabric) run(fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fn(ctx)
	}()
	f.t.Cleanup(func() { cancel(); <-done })
}

// dial connects to e with o (URL and token filled in when empty), closed
// when the test ends.
func dial(t testing.TB, e *testEdge, token string, o client.Options) *client.Conn {
	t.Helper()
	c, err := tryDial(t, e, token, o)
	if err != nil {
		t.Fatalf("dial %s: %v", o.Transport, err)
	}
	return c
}

func tryDial(t testing.TB, e *testEdge, token string, o client.Options) (*client.Conn, error) {
	t.Helper()
	if o.URL == "" {
		o.URL = e.ws()
	}
	o.Token = token
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err == nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, err
}

// readUntil reads envelopes until stop says so, within the deadline, and
// returns the log messages (control messages are skipped, ERRORs logged).
func readUntil(t testing.TB, c *client.Conn, within time.Duration, stop func(*haip.Envelope) bool) []*haip.Envelope {
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
				t.Logf("ERROR from the edge: %s", env.Payload)
			}
			continue
		}
		got = append(got, env)
		if stop(env) {
			return got
		}
	}
}

// readControl reads until an envelope of type typ arrives.
func readControl(t testing.TB, c *client.Conn, typ haip.Type, within time.Duration) *haip.Envelope {
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

// readEnd reads until the connection ends and returns why.
func readEnd(t testing.TB, c *client.Conn, within time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if _, err := c.Read(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the connection did not end within %s", within)
			}
			return err
		}
	}
}

func isRunFinished(e *haip.Envelope) bool { return e.Type == haip.TypeRunFinished }

// assertDense checks that seqs run first, first+1, … with no repeat.
func assertDense(t testing.TB, envs []*haip.Envelope, first uint64) {
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
func answerText(t testing.TB, envs []*haip.Envelope) string {
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
