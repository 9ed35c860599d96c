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
	// ShardConcurrency is how many runs of one shard of users (a hash of
	// the user, streams.UserShard) one replica handles at once, so that
	// one user's long runs cannot take every slot while others wait.
	// Zero means Concurrency less a quarter of it, which leaves at least
	// one slot to the other shards when Concurrency is 2 or more.
	ShardConcurrency int
	// AckWait is how long a run may go without a progress signal before
	// JetStream gives it to another replica. The SDK signals every
	// AckWait/3 while a handler runs, so only a dead replica loses its runs.
	AckWait time.Duration
	// MaxDeliver bounds how often one run is attempted.
	MaxDeliver int
	// DrainWait is how long Run waits for running handlers after its ctx
	// is cancelled before cancelling them too.
	DrainWait time.Duration
	// UnhealthyAfter is how long fetches from the run queue may fail in a
	// row before Healthy reports it. Zero means UnhealthyAfter.
	UnhealthyAfter time.Duration
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
	if c.ShardConcurrency <= 0 {
		c.ShardConcurrency = shardShare(c.Concurrency)
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
	js      jetstream.JetStream
	cons    []jetstream.Consumer // the run queue's shards, and the queue before them
	fabric  *streams.Fabric
	log     *streams.Log
	router  *streams.Router
	runs    *streams.Runs

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // run id -> stop it

	health health
}

// Healthy reports nil while the agent can take runs: its fetches from the
// run queue have not failed for UnhealthyAfter in a row, and Run has not
// returned with an error. A process serving /health adds it there.
func (a *Agent) Healthy() error { return a.health.err(time.Now()) }

// ErrRunCancelled is the cause of a run's context when the run was
// cancelled (RUN_CANCEL from a client, or over HTTP).
var ErrRunCancelled = errors.New("run cancelled")

// NewAgent binds to the run queue with the durable consumers of cfg.Name
// (created or updated: one per shard of users, and cfg.Name itself for
// runs queued before the shards) and opens the session log for Emit.
func NewAgent(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, h RunHandler, cfg AgentConfig) (*Agent, error) {
	cfg = cfg.withDefaults()
	// The extra delivery ends the run.
	cfgs, err := streams.RunConsumerConfigs(cfg.Name, cfg.AckWait, cfg.MaxDeliver+1)
	if err != nil {
		return nil, fmt.Errorf("cannot start agent: %w", err)
	}
	cons, err := streams.EnsureQueueConsumers(ctx, js, streams.RunStream, cfgs)
	if err != nil {
		return nil, fmt.Errorf("cannot start agent %s: %w", cfg.Name, err)
	}
	fab, err := streams.Open(ctx, nc, js, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot start agent %s: %w", cfg.Name, err)
	}
	return &Agent{cfg: cfg, handler: h, nc: nc, js: js, cons: cons, fabric: fab, log: fab.Log(), router: fab.Router(), runs: fab.Runs(),
		running: make(map[string]context.CancelCauseFunc), health: health{after: cfg.UnhealthyAfter}}, nil
}

// Run takes runs until ctx is cancelled, then stops taking new ones
// (handing back at once a run taken but not started), waits up to
// DrainWait for the running ones (then cancels them: they are handed
// back), and returns. Runs are taken from the shards of users in turn
// (see ShardConcurrency).
func (a *Agent) Run(ctx context.Context) (err error) {
	defer func() { a.health.stop(err) }()
	defer a.fabric.Close(context.WithoutCancel(ctx)) //nolint:errcheck // best-effort final flush
	// Cancellations of running runs reach whichever replica runs them.
	cancelSub, err := a.nc.Subscribe(streams.RunCancelWildcard, func(m *nats.Msg) {
		a.stopRun(streams.RunIDFromCancelSubject(m.Subject))
	})
	if err != nil {
		return fmt.Errorf("agent %s: cannot follow run cancellations: %w", a.cfg.Name, err)
	}
	defer cancelSub.Unsubscribe() //nolint:errcheck // best effort at shutdown
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	var wg sync.WaitGroup
	d := newDispatcher(a.cfg.Concurrency, a.cfg.ShardConcurrency, a.cfg.AckWait, &wg, a.cfg.Logger,
		func(msg jetstream.Msg) { a.handle(handlerCtx, msg) })
	d.health, d.js = &a.health, a.js
	d.run(ctx, a.cons)
	drain(&wg, a.cfg.DrainWait, cancelHandlers)
	return nil
}

// stopRun cancels a run this replica is running.
func (a *Agent) stopRun(runID string) {
	a.mu.Lock()
	stop := a.running[runID]
	a.mu.Unlock()
	if stop != nil {
		stop(ErrRunCancelled)
	}
}

// handle runs one run through its lifecycle: RUN_STARTED, the handler,
// and exactly one ending: RUN_FINISHED OK, CANCELLED (RUN_CANCEL), or
// ERROR (preceded by RUN_ERROR with the reason). The run's state in the
// run bucket follows along. A run that cannot be finished now (the
// session log is unavailable, the replica is shutting down) is handed
// back; one handed back MaxDeliver times is ended with ERROR.
func (a *Agent) handle(ctx context.Context, msg jetstream.Msg) {
	var req streams.RunRequest
	if err := json.Unmarshal(msg.Data(), &req); err != nil || req.Validate() != nil {
		a.cfg.Logger.Error("agent: malformed run request dropped", slog.Any("err", err))
		_ = msg.Term()
		return
	}
	logger := a.cfg.Logger.With(slog.String("run", req.RunID), slog.String("session", req.Session))
	run := &Run{Request: req, log: a.log, nc: a.nc, router: a.router, approvals: a.fabric.Approvals(), calls: map[string]uint64{}}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	a.mu.Lock()
	a.running[req.RunID] = stop
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.running, req.RunID)
		a.mu.Unlock()
	}()

	// Keep JetStream from handing the run to another replica while it
	// runs, and the run bucket from counting it as abandoned.
	stopHB := keepInProgress(ctx, msg, a.cfg.AckWait/3, func() {
		bctx, cancel := context.WithTimeout(ctx, a.cfg.AckWait/3)
		st, err := a.runs.Beat(bctx, req.Session, req.RunID)
		cancel()
		if err == nil && st == streams.RunCancelling {
			stop(ErrRunCancelled)
		}
	})
	defer stopHB()

	state := streams.RunState{RunID: req.RunID, Kind: req.Kind, MessageID: req.MessageID, ThreadID: req.ThreadID, Created: req.Created}
	before, err := a.runs.Start(ctx, req.Session, state, a.cfg.Name)
	if err != nil {
		logger.Warn("agent: run state unavailable; handing the run back", slog.Any("err", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	var runErr error
	switch {
	case !before.Active() && before.Reason == streams.StaleRunReason:
		// Given up while it waited (no agent for too long): say so in the
		// session, once.
		runErr = errors.New(streams.StaleRunReason)
	case !before.Active():
		// Ended already (a redelivery after the end was stored).
		run.finished = true
	case before.Status == streams.RunCancelling:
		runErr = ErrRunCancelled
	default:
		md, err := msg.Metadata()
		if err == nil && md.NumDelivered > uint64(a.cfg.MaxDeliver) {
			runErr = fmt.Errorf("gave up after %d attempts", a.cfg.MaxDeliver)
			break
		}
		if err == nil && md.NumDelivered > 1 {
			// Taken over: what an earlier attempt stored is not stored
			// again, however long ago (approval waits outlast the
			// stream's duplicate window).
			if err := run.loadStored(ctx); err != nil {
				logger.Warn("agent: cannot read the run's earlier output; handing the run back", slog.Any("err", err))
				_ = msg.NakWithDelay(time.Second)
				return
			}
		}
		if _, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeRunStarted, map[string]any{}); err != nil {
			runErr = err
			break
		}
		runErr = safeHandle(ctx, a.handler, run)
		if errors.Is(context.Cause(ctx), ErrRunCancelled) {
			runErr = ErrRunCancelled
		}
	}
	stopHB()
	endCtx := context.WithoutCancel(ctx)
	switch {
	case errors.Is(runErr, ErrRunCancelled):
		run.cancelCalls(endCtx, "run cancelled")
	case ctx.Err() != nil:
		// Shutting down: let another replica take the run. Its output so
		// far is de-duplicated by message id when the run is replayed.
		_ = msg.Nak()
		return
	case errors.Is(runErr, streams.ErrStore):
		// The session log was unavailable (say, a stream leader election
		// outlasted the retries): hand the run back rather than end it.
		logger.Warn("agent: run interrupted by the session log; handing it back", slog.Any("err", runErr))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	status, reason := streams.RunOK, ""
	if err := run.end(endCtx, runErr); err != nil {
		logger.Error("agent: cannot end run; handing it back", slog.Any("err", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	switch {
	case errors.Is(runErr, ErrRunCancelled):
		status, reason = streams.RunCancelled, "cancelled"
	case runErr != nil:
		logger.Warn("agent: run failed", slog.Any("err", runErr))
		status, reason = streams.RunError, runErr.Error()
	}
	if !before.Active() {
		status, reason = before.Status, before.Reason
	}
	fctx, cancel := context.WithTimeout(endCtx, a.cfg.AckWait/3)
	err = a.runs.Finish(fctx, req.Session, req.RunID, status, reason)
	cancel()
	if err != nil {
		logger.Warn("agent: run ended but its state was not recorded; handing it back", slog.Any("err", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
}

// end writes the run's ending unless the handler already did: RUN_FINISHED
// OK; CANCELLED; or RUN_ERROR then RUN_FINISHED ERROR.
func (r *Run) end(ctx context.Context, runErr error) error {
	if r.finished {
		return nil
	}
	switch {
	case runErr == nil:
		_, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK})
		return err
	case errors.Is(runErr, ErrRunCancelled):
		_, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusCancelled, Summary: "cancelled"})
		return err
	}
	// A fixed step for the error pair: a handler failing at different
	// points on two attempts still ends the run once.
	r.step = endSteps
	if _, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeRunError, haip.ErrorPayload{Code: haip.CodeInternalError, Message: runErr.Error()}); err != nil {
		return err
	}
	_, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusError, Summary: runErr.Error()})
	return err
}

// endSteps is where a failed run's RUN_ERROR and RUN_FINISHED are
// numbered, past any step a run reaches.
const endSteps = 1 << 30

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
	router   *streams.Router
	step     int
	started  bool
	errored  bool // RUN_ERROR was emitted
	finished bool
	calls    map[string]uint64 // tool calls waiting for their TOOL_DONE -> the call's seq
	// approvals holds the run's approval requests (RequestApproval).
	approvals *streams.Approvals
	// stored maps the envelope ids an earlier attempt of the run stored
	// to their seqs (loadStored); Emit does not store those again.
	stored map[string]uint64
}

// Emit appends one envelope to the session's outbound log, on the run's
// behalf (run_id and thread_id set), and returns its seq. Envelope ids
// are derived from the run id and the emit's position in the run, so a
// run that is redelivered after a crash and emits the same messages again
// is stored once: clients see nothing twice.
func (r *Run) Emit(ctx context.Context, ch haip.Channel, t haip.Type, payload any) (uint64, error) {
	if t == haip.TypeRunStarted {
		if r.started {
			return 0, nil // the Agent announces the run itself
		}
		r.started = true
	}
	if r.finished && (t == haip.TypeRunFinished || t == haip.TypeRunError) || r.errored && t == haip.TypeRunError {
		return 0, nil
	}
	r.step++
	id := haip.NameUUID("run-msg", r.Request.RunID, strconv.Itoa(r.step))
	seq, stored := r.stored[id]
	if !stored {
		var err error
		if seq, err = r.log.Emit(ctx, r.Request.Session, id, r.Request.RunID, r.Request.ThreadID, ch, t, payload); err != nil {
			return 0, err
		}
	}
	switch t {
	case haip.TypeRunFinished:
		r.finished = true
	case haip.TypeRunError:
		r.errored = true
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
	f, err := r.log.NewFollower(r.Request.Session, streams.Out)
	if err != nil {
		return haip.ToolDonePayload{}, fmt.Errorf("cannot follow the session: %w", err)
	}
	defer f.Close()
	seq, err := r.Emit(ctx, haip.ChannelAgent, haip.TypeToolCall, call)
	if err != nil {
		return haip.ToolDonePayload{}, err
	}
	if err := r.router.Call(ctx, r.Request.Session, r.Request.RunID, r.Request.User, call); err != nil {
		return haip.ToolDonePayload{}, fmt.Errorf("cannot call %s: %w: %w", tool, streams.ErrStore, err)
	}
	// Kept until the result comes, so that a cancelled run cancels it.
	r.calls[call.CallID] = seq
	done, err := waitDone(ctx, f, seq, call.CallID)
	if err != nil {
		return done, fmt.Errorf("waiting for %s: %w", tool, err)
	}
	delete(r.calls, call.CallID)
	return done, nil
}

// waitDone waits for a call's TOOL_DONE in the log after the call's seq,
// following it with f (made before the call). While live delivery is
// quiet the log is read again every doneRecheck: a TOOL_DONE stored while
// this process's NATS connection was down never comes live.
func waitDone(ctx context.Context, f *streams.Follower, seq uint64, callID string) (haip.ToolDonePayload, error) {
	var done haip.ToolDonePayload
	found := false
	err := f.Follow(ctx, seq, streams.FollowOptions{Quiet: doneRecheck}, func(e streams.Entry) bool {
		done, found = toolDone(e, callID)
		return !found
	})
	if err == nil && !found {
		err = fmt.Errorf("cannot find the TOOL_DONE of %s", callID)
	}
	return done, err
}

// cancelCalls cancels the run's tool calls still waiting for a result
// (the run was cancelled): each ends with TOOL_DONE CANCELLED.
// The run ends after their TOOL_DONEs (waiting at most cancelWait).
func (r *Run) cancelCalls(ctx context.Context, reason string) {
	if len(r.calls) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, cancelWait)
	defer cancel()
	f, err := r.log.NewFollower(r.Request.Session, streams.Out)
	if err == nil {
		defer f.Close()
	}
	for id := range r.calls {
		_ = r.router.Cancel(ctx, r.Request.Session, r.Request.RunID, id, reason)
	}
	if err != nil {
		return
	}
	for id, seq := range r.calls {
		if _, err := waitDone(ctx, f, seq, id); err != nil {
			return // the calls end on their own; the run does not wait longer
		}
	}
}

// doneRecheck is how often a quiet wait for a TOOL_DONE reads the log.
const doneRecheck = 5 * time.Second

// cancelWait bounds how long a cancelled run waits for its tool calls to
// end before it ends itself.
const cancelWait = 10 * time.Second

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
func keepInProgress(ctx context.Context, msg jetstream.Msg, every time.Duration, beat func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var once sync.Once
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
				if beat != nil {
					beat()
				}
			}
		}
	}()
	return func() { once.Do(func() { cancel(); <-done }) }
}
