package streams

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options tune Open. A nil *Options means the defaults.
type Options struct {
	// RunStaleAfter is how long a run may go without a heartbeat before
	// it counts as abandoned (see OpenRuns). Zero means
	// DefaultRunStaleAfter.
	RunStaleAfter time.Duration
}

// Fabric is the fabric's JetStream topology opened for use: the session
// logs, session records, run states, tool registry, work queues and the
// tool-call router, bound once over one connection. Ensure must have made
// the topology first.
//
// A Fabric is safe for concurrent use. Its parts share the Log, whose tail
// flusher runs until Close.
type Fabric struct {
	js        jetstream.JetStream
	log       *Log
	sessions  *Sessions
	runs      *Runs
	queues    *Queues
	router    *Router
	approvals *Approvals

	closeOnce sync.Once
	closeErr  error
}

// Open binds to the topology made by Ensure. ctx bounds the start-up
// requests. On error nothing is left running.
func Open(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, opts *Options) (*Fabric, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	lg, err := OpenLog(ctx, nc, js)
	if err != nil {
		return nil, fmt.Errorf("cannot open fabric: %w", err)
	}
	f := &Fabric{js: js, log: lg}
	fail := func(err error) (*Fabric, error) {
		_ = lg.Close(ctx)
		return nil, fmt.Errorf("cannot open fabric: %w", err)
	}
	if f.sessions, err = OpenSessions(ctx, js); err != nil {
		return fail(err)
	}
	if f.router, err = NewRouter(ctx, js, lg); err != nil {
		return fail(err)
	}
	if f.runs, err = OpenRuns(ctx, js, o.RunStaleAfter); err != nil {
		return fail(err)
	}
	if f.queues, err = OpenQueues(ctx, js); err != nil {
		return fail(err)
	}
	if f.approvals, err = OpenApprovals(ctx, js); err != nil {
		return fail(err)
	}
	return f, nil
}

// Log is the session logs.
func (f *Fabric) Log() *Log { return f.log }

// Approvals is the approval bucket.
func (f *Fabric) Approvals() *Approvals { return f.approvals }

// Sessions is the session-record bucket.
func (f *Fabric) Sessions() *Sessions { return f.sessions }

// Runs is the run-state bucket.
func (f *Fabric) Runs() *Runs { return f.runs }

// Tools is the tool registry.
func (f *Fabric) Tools() *Tools { return f.router.Tools() }

// Queues is the run and tool work queues.
func (f *Fabric) Queues() *Queues { return f.queues }

// Router routes tool calls and cancellations to the tool workers.
func (f *Fabric) Router() *Router { return f.router }

// Close stops the Log's tail flusher after a last flush, bounded by ctx
// (see Log.Close). It is idempotent: later calls return the first one's
// result.
func (f *Fabric) Close(ctx context.Context) error {
	f.closeOnce.Do(func() { f.closeErr = f.log.Close(ctx) })
	return f.closeErr
}
