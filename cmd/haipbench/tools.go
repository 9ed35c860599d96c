package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
	"github.com/haipfabric/haipfabric/worker/builtin"
)

const (
	// toolWorkerDrain is how long a stopping tool worker waits for calls.
	toolWorkerDrain = 2 * time.Second
	// toolAdvertiseWait bounds the wait for the echo tool to be live.
	toolAdvertiseWait = 20 * time.Second
)

// Row names of the tools scenario; each is prefixed by "N workers: ".
const (
	rowToolP50    = "round trip p50, 1 in flight"
	rowToolP99    = "round trip p99, 1 in flight"
	rowToolP999   = "round trip p99.9, 1 in flight"
	rowToolRate   = "calls/s"
	rowToolP50Th  = "round trip p50 at concurrency"
	rowToolP99Th  = "round trip p99 at concurrency"
	rowToolCalls  = "calls completed"
	rowToolPrefix = "%d workers: "
)

// toolRow is a tools row name for a worker count.
func toolRow(workers int, row string) string { return fmt.Sprintf(rowToolPrefix, workers) + row }

// tools: for each -toolworkers count, that many in-process ToolWorkers
// (each on its own NATS connection, serving the built-in echo) and a user
// on WebSocket sending TOOL_CALLs: -calls calls one at a time (latency,
// call sent → TOOL_DONE received), then -calls calls with -concurrency
// outstanding, one session each (throughput).
func (b *bench) tools(ctx context.Context, r *Result) error {
	if b.f.connect == nil {
		return errors.New("this scenario needs -nats")
	}
	n, conc := b.cfg.Calls, b.cfg.Concurrency
	r.Params["calls"], r.Params["concurrency"], r.Params["toolworkers"] = n, conc, b.cfg.ToolWorkers
	pool := &wsPool{}
	for _, ep := range b.f.eps {
		pool.ds = append(pool.ds, clientDialer{ep: ep, transport: client.TransportWebSocket, hc: b.f.hc})
	}
	for _, k := range b.cfg.ToolWorkers {
		if err := b.toolRound(ctx, r, pool, k); err != nil {
			return fmt.Errorf("%d workers: %w", k, err)
		}
	}
	r.note("round trip = TOOL_CALL sent by the user → its TOOL_DONE received: store, QUEUED, work queue, worker (RUNNING, echo, TOOL_DONE), delivery")
	r.note("each phase starts after one uncounted call per session (warm-up); the edge's QUEUED, the worker's RUNNING and TOOL_DONE must arrive as seqs 1, 2, 3, … of each session")
	if b.f.builtinTools != "" {
		r.note("%s", b.f.builtinTools)
	}
	b.noteSelf(r)
	return nil
}

// toolRound runs both phases with k workers.
func (b *bench) toolRound(ctx context.Context, r *Result, pool *wsPool, k int) error {
	stop, err := b.startToolWorkers(ctx, k, max(8, b.cfg.Concurrency))
	if err != nil {
		return err
	}
	defer stop()
	one, _, err := toolPhase(ctx, pool, 1, b.cfg.Calls)
	if err != nil {
		return fmt.Errorf("latency phase: %w", err)
	}
	many, elapsed, err := toolPhase(ctx, pool, b.cfg.Concurrency, b.cfg.Calls)
	if err != nil {
		return fmt.Errorf("throughput phase (concurrency %d): %w", b.cfg.Concurrency, err)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.add(toolRow(k, rowToolP50), ms(percentile(one, 0.50)), "ms")
	r.add(toolRow(k, rowToolP99), ms(percentile(one, 0.99)), "ms")
	r.add(toolRow(k, rowToolP999), ms(percentile(one, 0.999)), "ms")
	r.addRatio(toolRow(k, rowToolRate)+fmt.Sprintf(" (concurrency %d)", b.cfg.Concurrency), rate(len(many), elapsed), "calls/s", b.baseRead())
	r.add(toolRow(k, rowToolP50Th), ms(percentile(many, 0.50)), "ms")
	r.add(toolRow(k, rowToolP99Th), ms(percentile(many, 0.99)), "ms")
	r.add(toolRow(k, rowToolCalls), float64(len(one)+len(many)), "calls")
	return nil
}

// startToolWorkers runs k ToolWorkers serving echo, each on its own NATS
// connection, and waits until echo is advertised. stop ends them and
// waits for them.
func (b *bench) startToolWorkers(ctx context.Context, k, concurrency int) (stop func(), err error) {
	var echo []worker.Tool
	for _, t := range builtin.Tools() {
		if t.Name == "echo" {
			echo = append(echo, t)
		}
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var closers []func()
	stop = func() {
		cancel()
		wg.Wait()
		for _, c := range closers {
			c()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	for i := range k {
		nc, err := b.f.connect(fmt.Sprintf("haipbench-tool-%d", i))
		if err != nil {
			return nil, err
		}
		closers = append(closers, nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		tw, err := worker.NewToolWorker(ctx, nc, js, echo, worker.ToolWorkerConfig{
			Name: fmt.Sprintf("haipbench-%d", i), Concurrency: concurrency, DrainWait: toolWorkerDrain})
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = tw.Run(wctx) }()
	}
	reg, err := streams.OpenTools(ctx, b.f.js)
	if err != nil {
		return nil, err
	}
	err = waitUntil(ctx, toolAdvertiseWait, func(ctx context.Context) (bool, error) {
		_, ok, err := reg.Get(ctx, "echo")
		return ok, err
	})
	if err != nil {
		return nil, fmt.Errorf("echo never advertised: %w", err)
	}
	return stop, nil
}

// waitUntil polls cond until it holds, fails, or within passes.
func waitUntil(ctx context.Context, within time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// toolPhase dials conc sessions, makes one uncounted call on each, then
// n calls in all with conc outstanding (one per session). It returns the
// round trips and the time from the first counted call to the last
// TOOL_DONE.
func toolPhase(ctx context.Context, pool *wsPool, conc, n int) ([]time.Duration, time.Duration, error) {
	zero := uint64(0)
	cs, err := dialMany[*clientConn](ctx, pool, conc, &zero)
	if err != nil {
		return nil, 0, err
	}
	defer closeAll(cs)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var (
		next  atomic.Int64
		ready sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, conc)
		rtts  = make([][]time.Duration, conc)
	)
	ready.Add(conc)
	for i, c := range cs {
		go func() {
			tc := &toolCaller{c: c, next: 1}
			_, err := tc.call(ctx)
			ready.Done()
			if err != nil {
				cancel(err)
				errs <- err
				return
			}
			select {
			case <-start:
			case <-ctx.Done():
				errs <- context.Cause(ctx)
				return
			}
			for next.Add(1) <= int64(n) {
				d, err := tc.call(ctx)
				if err != nil {
					cancel(err)
					errs <- err
					return
				}
				rtts[i] = append(rtts[i], d)
			}
			errs <- nil
		}()
	}
	ready.Wait()
	began := time.Now()
	close(start)
	var first error
	for range conc {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	elapsed := time.Since(began)
	if first != nil {
		return nil, 0, first
	}
	var all []time.Duration
	for _, r := range rtts {
		all = append(all, r...)
	}
	sortDurations(all)
	return all, elapsed, nil
}

// toolCaller makes calls on one session, one at a time, and checks that
// the session's log messages arrive densely.
type toolCaller struct {
	c    *clientConn
	next uint64 // the seq the next log message must have
}

// call sends one echo TOOL_CALL and reads until its TOOL_DONE, which must
// be OK with the message echoed.
func (t *toolCaller) call(ctx context.Context) (time.Duration, error) {
	id := haip.NewUUID()
	msg := "bench-" + id[:8]
	params, err := json.Marshal(map[string]string{"message": msg})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := t.c.Send(ctx, haip.ChannelUser, haip.TypeToolCall, haip.ToolCallPayload{CallID: id, Tool: "echo", Params: params}); err != nil {
		return 0, fmt.Errorf("session %s: send TOOL_CALL: %w", t.c.Session(), err)
	}
	for {
		env, err := t.c.Read(ctx)
		if err != nil {
			return 0, fmt.Errorf("session %s: waiting for TOOL_DONE of %s: %w", t.c.Session(), id, err)
		}
		at := time.Now()
		if client.IsControl(env.Type) {
			continue
		}
		if uint64(env.Seq) != t.next {
			return 0, fmt.Errorf("session %s: got seq %d (%s), want %d (not dense)", t.c.Session(), env.Seq, env.Type, t.next)
		}
		t.next++
		if env.Type != haip.TypeToolDone {
			continue
		}
		var d haip.ToolDonePayload
		if err := env.DecodePayload(&d); err != nil {
			return 0, fmt.Errorf("session %s: TOOL_DONE: %w", t.c.Session(), err)
		}
		if d.CallID != id {
			return 0, fmt.Errorf("session %s: TOOL_DONE of %s while waiting for %s", t.c.Session(), d.CallID, id)
		}
		if d.Status != "" && d.Status != haip.ToolDoneOK {
			return 0, fmt.Errorf("session %s: call %s ended %s: %s", t.c.Session(), id, d.Status, d.Result)
		}
		if !strings.Contains(string(d.Result), msg) {
			return 0, fmt.Errorf("session %s: call %s result %s does not echo %q", t.c.Session(), id, d.Result, msg)
		}
		return at.Sub(start), nil
	}
}

// wsPool dials WebSocket connections round robin over edges.
type wsPool struct {
	next atomic.Uint64
	ds   []clientDialer
}

func (p *wsPool) dial(ctx context.Context, o dialOptions) (*clientConn, error) {
	d := p.ds[(p.next.Add(1)-1)%uint64(len(p.ds))]
	return d.dialConn(ctx, o)
}
