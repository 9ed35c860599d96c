package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// Defaults for AgentConfig fields left zero.
const (
	DefaultAgentName   = "agent"
	DefaultConcurrency = 4
	DefaultAckWait     = 30 * time.Second
	DefaultMaxDeliver  = 5
	DefaultDrainWait   = 30 * time.Second
)

// RunHandler answers one run: one user turn. It streams its output into
// the session with run.Emit and returns when the run is over. It runs
// concurrently with other runs and must return when ctx is cancelled.
type RunHandler interface {
	HandleRun(ctx context.Context, run *Run) error
}

// RunHandlerFunc adapts a function to RunHandler.
type RunHandlerFunc func(ctx context.Context, run *Run) error

// HandleRun calls f.
func (f RunHandlerFunc) HandleRun(ctx context.Context, run *Run) error { return f(ctx, run) }

// AgentConfig configures an Agent. Zero fields take the defaults above.
type AgentConfig struct {
	// Name is the durable consumer shared by every replica of this agent;
	// replicas with the same name split the runs between them.
	Name string
	// Concurrency is how many runs one replica handles at once.
	Concurrency int
	// AckWait is how long a run may go without a progress signal before
	// JetStream gives it to another replica. The SDK signals every
	// AckWait/3 while a handler runs, so only a dead replica loses its runs.
	AckWait time.Duration
	// MaxDeliver bounds how often one run is attempted.
	MaxDeliver int
	// DrainWait is how long Run waits for running handlers after its ctx
	// is cancelled before cancelling them too.
	DrainWait time.Duration
	// Logger receives the agent's logs; nil means silent.
	Logger *slog.Logger
}

func (c AgentConfig) withDefaults() AgentConfig {
	if c.Name == "" {
		c.Name = DefaultAgentName
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.DrainWait <= 0 {
		c.DrainWait = DefaultDrainWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Agent takes runs from the run work queue and hands them to a handler.
// Each run is taken by exactly one replica; a replica that dies has its
// runs redelivered to another after AckWait.
type Agent struct {
	cfg     AgentConfig
	handler RunHandler
	nc      *nats.Conn
	cons    jetstream.Consumer
	log     *streams.Log
	router  *Router
}

// NewAgent binds to the run queue with a durable consumer named cfg.Name
// (created or updated) and opens the session log for Emit.
func NewAgent(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, h RunHandler, cfg AgentConfig) (*Agent, error) {
	cfg = cfg.withDefaults()
	if err := streams.ValidateSessionID(cfg.Name); err != nil {
		return nil, fmt.Errorf("cannot start agent: name: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, streams.RunStream, jetstream.ConsumerConfig{
		Durable:       cfg.Name,
		Description:   "agent run handlers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot start agent %s: %w", cfg.Name, err)
	}
	lg, err := streams.OpenLog(ctx, nc, js)
	if err != nil {
		return nil, fmt.Errorf("cannot start agent %s: %w", cfg.Name, err)
	}
	router, err := NewRouter(ctx, js, lg)
	if err != nil {
		_ = lg.Close(ctx)
		return nil, fmt.Errorf("cannot start agent %s: %w", cfg.Name, err)
	}
	return &Agent{cfg: cfg, handler: h, nc: nc, cons: cons, log: lg, router: router}, nil
}

// Run takes runs until ctx is cancelled, then stops taking new ones, waits
// up to DrainWait for the running ones (then cancels them: they are
// redelivered), and returns.
func (a *Agent) Run(ctx context.Context) error {
	defer a.log.Close(context.WithoutCancel(ctx)) //nolint:errcheck // best-effort final flush
	it, err := a.cons.Messages(jetstream.PullMaxMessages(a.cfg.Concurrency))
	if err != nil {
		return fmt.Errorf("agent %s: cannot consume: %w", a.cfg.Name, err)
	}
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	var wg sync.WaitGroup
	consume(ctx, it, a.cfg.Concurrency, &wg, a.cfg.Logger, func(msg jetstream.Msg) { a.handle(handlerCtx, msg) })
	drain(&wg, a.cfg.DrainWait, cancelHandlers)
	return nil
}

func (a *Agent) handle(ctx context.Context, msg jetstream.Msg) {
	var req streams.RunRequest
	if err := json.Unmarshal(msg.Data(), &req); err != nil || req.Validate() != nil {
		a.cfg.Logger.Error("agent: malformed run request dropped", slog.Any("err", err))
		_ = msg.Term()
		return
	}
	logger := a.cfg.Logger.With(slog.String("run", req.RunID), slog.String("session", req.Session))
	run := &Run{Request: req, log: a.log, nc: a.nc, router: a.router}
	// Keep JetStream from handing the run to another replica while it runs.
	stopHB := keepInProgress(ctx, msg, a.cfg.AckWait/3)
	err := safeHandle(ctx, a.handler, run)
	stopHB()
	if ctx.Err() != nil {
		// Shutting down: let another replica take the run. Its output so
		// far is de-duplicated by message id when the run is replayed.
		_ = msg.Nak()
		return
	}
	if errors.Is(err, ErrStore) {
		// The session log was unavailable (say, a stream leader election
		// outlasted the retries): hand the run back rather than end it.
		logger.Warn("agent: run interrupted by the session log; handing it back", slog.Any("err", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err != nil {
		logger.Warn("agent: run failed", slog.Any("err", err))
		if run.finished {
			_ = msg.Ack()
			return
		}
		if _, eerr := run.Emit(context.WithoutCancel(ctx), haip.ChannelAgent, haip.TypeRunFinished,
			haip.RunFinishedPayload{Status: haip.RunStatusError, Summary: err.Error()}); eerr != nil {
			logger.Error("agent: cannot end failed run", slog.Any("err", eerr))
			_ = msg.Nak()
			return
		}
		_ = msg.Ack()
		return
	}
	_ = msg.Ack()
}

func safeHandle(ctx context.Context, h RunHandler, run *Run) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h.HandleRun(ctx, run)
}

// Run is one run being handled. Its methods are not safe for concurrent
// use: one handler goroutine emits a run's messages, in order.
type Run struct {
	// Request is what the user asked.
	Request streams.RunRequest

	log      *streams.Log
	nc       *nats.Conn
	router   *Router
	step     int
	finished bool
}

// Emit appends one envelope to the session's outbound log, on the run's
// behalf (run_id and thread_id set), and returns its seq. Envelope ids
// are derived from the run id and the emit's position in the run, so a
// run that is redelivered after a crash and emits the same messages again
// is stored once: clients see nothing twice.
func (r *Run) Emit(ctx context.Context, ch haip.Channel, t haip.Type, payload any) (uint64, error) {
	r.step++
	seq, err := emit(ctx, r.log, r.Request.Session, haip.NameUUID("run-msg", r.Request.RunID, strconv.Itoa(r.step)),
		r.Request.RunID, r.Request.ThreadID, ch, t, payload)
	if err != nil {
		return 0, err
	}
	if t == haip.TypeRunFinished || t == haip.TypeRunError {
		r.finished = true
	}
	return seq, nil
}

// DefaultToolTimeout bounds Run.CallTool when ctx has no deadline.
const DefaultToolTimeout = 5 * time.Minute

// CallTool calls a tool on the run's behalf and waits for its TOOL_DONE.
// The TOOL_CALL, its updates and its result all go into the session's
// log, so the user sees the agent's tool use. The call id derives from the
// run and step, so a redelivered run finds its earlier call (and its
// result, if there is one) instead of calling again.
func (r *Run) CallTool(ctx context.Context, tool string, params any) (haip.ToolDonePayload, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultToolTimeout)
		defer cancel()
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return haip.ToolDonePayload{}, fmt.Errorf("cannot encode params of %s: %w", tool, err)
	}
	call := haip.ToolCallPayload{CallID: haip.NameUUID("run-call", r.Request.RunID, strconv.Itoa(r.step+1)), Tool: tool, Params: raw}
	// Follow the log before calling, so the TOOL_DONE cannot slip by.
	live, err := streams.LiveSubject(r.Request.Session, streams.Out)
	if err != nil {
		return haip.ToolDonePayload{}, err
	}
	sub, err := r.nc.SubscribeSync(live)
	if err != nil {
		return haip.ToolDonePayload{}, fmt.Errorf("cannot follow the session: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the subscription is ours alone
	_ = sub.SetPendingLimits(-1, 64<<20)
	seq, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeToolCall, call)
	if err != nil {
		return haip.ToolDonePayload{}, err
	}
	if err := r.router.Call(ctx, r.Request.Session, r.Request.RunID, call); err != nil {
		return haip.ToolDonePayload{}, fmt.Errorf("cannot call %s: %w: %w", tool, ErrStore, err)
	}
	if done, ok, err := r.findDone(ctx, seq, call.CallID); err != nil || ok {
		return done, err
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return haip.ToolDonePayload{}, fmt.Errorf("waiting for %s: %w", tool, err)
		}
		e, err := streams.ParseEntry(m)
		if err != nil {
			continue
		}
		if done, ok := toolDone(e, call.CallID); ok {
			return done, nil
		}
	}
}

// findDone looks for a call's TOOL_DONE in the log after the call.
func (r *Run) findDone(ctx context.Context, fromSeq uint64, callID string) (haip.ToolDonePayload, bool, error) {
	p, err := r.log.Find(ctx, r.Request.Session, streams.Out, fromSeq)
	if err != nil {
		return haip.ToolDonePayload{}, false, fmt.Errorf("cannot read the session: %w", err)
	}
	for cursor := p.StreamSeq; ; {
		entries, more, err := r.log.Read(ctx, r.Request.Session, streams.Out, cursor, 256, 1<<20)
		if err != nil {
			return haip.ToolDonePayload{}, false, fmt.Errorf("cannot read the session: %w", err)
		}
		for _, e := range entries {
			cursor = e.StreamSeq + 1
			if done, ok := toolDone(e, callID); ok {
				return done, true, nil
			}
		}
		if !more || len(entries) == 0 {
			return haip.ToolDonePayload{}, false, nil
		}
	}
}

func toolDone(e streams.Entry, callID string) (haip.ToolDonePayload, bool) {
	if e.Type != string(haip.TypeToolDone) {
		return haip.ToolDonePayload{}, false
	}
	var env struct {
		Payload haip.ToolDonePayload `json:"payload"`
	}
	if json.Unmarshal(e.Data, &env) != nil || env.Payload.CallID != callID {
		return haip.ToolDonePayload{}, false
	}
	return env.Payload, true
}

// keepInProgress tells JetStream every period that msg is still being
// worked on, so it is not redelivered to another worker, until the
// returned stop is called (or ctx ends). The caller owns the goroutine
// through stop.
func keepInProgress(ctx context.Context, msg jetstream.Msg, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { cancel(); <-done }
}
