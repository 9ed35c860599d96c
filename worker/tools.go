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

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
)

// ToolHandler runs one tool call and returns its result (any JSON value)
// or an error. It must return when ctx is cancelled.
type ToolHandler interface {
	HandleTool(ctx context.Context, call *Call) (result any, err error)
}

// ToolHandlerFunc adapts a function to ToolHandler.
type ToolHandlerFunc func(ctx context.Context, call *Call) (any, error)

// HandleTool calls f.
func (f ToolHandlerFunc) HandleTool(ctx context.Context, call *Call) (any, error) {
	return f(ctx, call)
}

// Tool is one tool a worker serves.
type Tool struct {
	Name         string
	Description  string
	ParamsSchema json.RawMessage // JSON Schema of the params, advertised
	ResultSchema json.RawMessage // JSON Schema of the result, advertised
	Handler      ToolHandler
}

// ToolWorkerConfig configures a ToolWorker. Zero fields take defaults.
type ToolWorkerConfig struct {
	// Name identifies this process in the registry.
	Name string
	// Concurrency is how many calls of each tool this worker runs at once.
	Concurrency int
	// ShardConcurrency is how many calls of each tool from one shard of
	// users (a hash of the user, streams.UserShard) this worker runs at
	// once, so that one user's long calls cannot take every slot while
	// others wait. Zero means Concurrency less a quarter of it, which
	// leaves at least one slot to the other shards when Concurrency is 2
	// or more.
	ShardConcurrency int
	// AckWait: a call silent this long moves to another worker (the SDK
	// signals every AckWait/3 while a handler runs).
	AckWait time.Duration
	// MaxDeliver bounds the attempts of one call; the delivery after the
	// last attempt ends the call with TOOL_DONE ERROR.
	MaxDeliver int
	// DrainWait is how long Run waits for running calls after its ctx ends.
	DrainWait time.Duration
	// CallTimeout ends a call that runs longer with TOOL_DONE ERROR. Zero
	// means DefaultCallTimeout.
	CallTimeout time.Duration
	// UnhealthyAfter is how long fetches from a tool's queue may fail in
	// a row before Healthy reports it. Zero means UnhealthyAfter.
	UnhealthyAfter time.Duration
	Logger         *slog.Logger
}

// DefaultCallTimeout bounds one tool call when ToolWorkerConfig sets none.
const DefaultCallTimeout = 5 * time.Minute

// ToolWorker serves tools from the tool work queue: each tool's durable
// consumers (one per shard of users) are shared by every worker of that
// tool, so each call is run by one worker, and a worker that dies has its
// calls redelivered.
type ToolWorker struct {
	cfg     ToolWorkerConfig
	tools   []Tool
	schemas []*jsonschema.Resolved // params schema per tool, nil for none
	nc      *nats.Conn
	js      jetstream.JetStream
	cons    [][]jetstream.Consumer // per tool: its queue's shards, and the queue before them
	fabric  *streams.Fabric
	reg     *streams.Tools
	log     *streams.Log
	running sync.Map // callRef -> context.CancelCauseFunc

	health health
}

// Healthy reports nil while the worker can take calls: its fetches from
// its tools' queues have not failed for UnhealthyAfter in a row, and Run
// has not returned with an error. A process serving /health adds it
// there.
func (w *ToolWorker) Healthy() error { return w.health.err(time.Now()) }

// callRef names a running call: call ids are chosen by clients, so only
// the session and the call id together are one call.
type callRef struct{ session, callID string }

// errTimedOut is the cause of a call's context when CallTimeout passed.
type errTimedOut struct{ after time.Duration }

func (e errTimedOut) Error() string { return "timed out after " + e.after.String() }

// errCancelled is the cause of a call's context when TOOL_CANCEL reached it.
type errCancelled struct{ reason string }

func (e errCancelled) Error() string { return "cancelled: " + e.reason }

// NewToolWorker binds each tool's consumer (created or updated).
func NewToolWorker(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, tools []Tool, cfg ToolWorkerConfig) (*ToolWorker, error) {
	ac := AgentConfig{Name: cfg.Name, Concurrency: cfg.Concurrency, ShardConcurrency: cfg.ShardConcurrency, AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver, DrainWait: cfg.DrainWait, Logger: cfg.Logger}.withDefaults()
	timeout := cfg.CallTimeout
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	cfg = ToolWorkerConfig{Name: ac.Name, Concurrency: ac.Concurrency, ShardConcurrency: ac.ShardConcurrency, AckWait: ac.AckWait, MaxDeliver: ac.MaxDeliver, DrainWait: ac.DrainWait, CallTimeout: timeout,
		UnhealthyAfter: cfg.UnhealthyAfter, Logger: ac.Logger}
	if len(tools) == 0 {
		return nil, errors.New("cannot start tool worker: no tools")
	}
	w := &ToolWorker{cfg: cfg, tools: tools, nc: nc, js: js, health: health{after: cfg.UnhealthyAfter}}
	for _, t := range tools {
		// The extra delivery ends the call.
		cfgs, err := streams.ToolConsumerConfigs(t.Name, cfg.AckWait, cfg.MaxDeliver+1)
		if err != nil {
			return nil, fmt.Errorf("cannot start tool worker: %w", err)
		}
		if t.Handler == nil {
			return nil, fmt.Errorf("cannot start tool worker: tool %s has no handler", t.Name)
		}
		var resolved *jsonschema.Resolved
		if len(t.ParamsSchema) > 0 {
			var sch jsonschema.Schema
			if err := json.Unmarshal(t.ParamsSchema, &sch); err != nil {
				return nil, fmt.Errorf("cannot start tool worker: params schema of %s: %w", t.Name, err)
			}
			if resolved, err = sch.Resolve(nil); err != nil {
				return nil, fmt.Errorf("cannot start tool worker: params schema of %s: %w", t.Name, err)
			}
		}
		w.schemas = append(w.schemas, resolved)
		c, err := streams.EnsureQueueConsumers(ctx, js, streams.ToolStream, cfgs)
		if err != nil {
			return nil, fmt.Errorf("cannot start tool worker for %s: %w", t.Name, err)
		}
		w.cons = append(w.cons, c)
	}
	fab, err := streams.Open(ctx, nc, js, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot start tool worker: %w", err)
	}
	w.fabric, w.reg, w.log = fab, fab.Tools(), fab.Log()
	return w, nil
}

// Run serves calls until ctx ends, advertising the tools while it does;
// then it stops taking calls (handing back at once a call taken but not
// started), waits up to DrainWait for running ones (then cancels them:
// they are handed back), and returns. Each tool's calls are taken from
// the shards of users in turn (see ShardConcurrency).
func (w *ToolWorker) Run(ctx context.Context) (err error) {
	defer func() { w.health.stop(err) }()
	defer w.fabric.Close(context.WithoutCancel(ctx)) //nolint:errcheck // best-effort final flush
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	var wg, loops sync.WaitGroup
	// TOOL_CANCEL reaches the call wherever it runs.
	sub, err := w.nc.Subscribe(streams.CancelWildcard, func(m *nats.Msg) {
		session, callID, ok := streams.CallFromCancelSubject(m.Subject)
		if !ok {
			return
		}
		if cancel, ok := w.running.Load(callRef{session: session, callID: callID}); ok {
			cancel.(context.CancelCauseFunc)(errCancelled{reason: string(m.Data)})
		}
	})
	if err != nil {
		return fmt.Errorf("tool worker: cannot follow cancellations: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection's end drops it too
	loops.Add(1)
	go func() { defer loops.Done(); w.advertise(ctx) }()
	for i, t := range w.tools {
		d := newDispatcher(w.cfg.Concurrency, w.cfg.ShardConcurrency, w.cfg.AckWait, &wg, w.cfg.Logger, func(msg jetstream.Msg) {
			w.handle(handlerCtx, t, w.schemas[i], msg)
		})
		d.health, d.js = &w.health, w.js
		loops.Add(1)
		go func() {
			defer loops.Done()
			d.run(ctx, w.cons[i])
		}()
	}
	loops.Wait()
	drain(&wg, w.cfg.DrainWait, cancelHandlers)
	return nil
}

func (w *ToolWorker) advertise(ctx context.Context) {
	t := time.NewTicker(streams.ToolTTL / 3)
	defer t.Stop()
	for {
		for _, tool := range w.tools {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := w.reg.Advertise(actx, streams.ToolInfo{Name: tool.Name, Description: tool.Description,
				ParamsSchema: tool.ParamsSchema, ResultSchema: tool.ResultSchema, Worker: w.cfg.Name})
			cancel()
			if err != nil && ctx.Err() == nil {
				w.cfg.Logger.Warn("advertise tool", slog.String("tool", tool.Name), slog.Any("err", err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *ToolWorker) handle(ctx context.Context, tool Tool, schema *jsonschema.Resolved, msg jetstream.Msg) {
	var req streams.ToolCall
	if err := json.Unmarshal(msg.Data(), &req); err != nil || req.Validate() != nil {
		w.cfg.Logger.Error("tool worker: malformed call dropped", slog.Any("err", err))
		_ = msg.Term()
		return
	}
	call := &Call{ToolCall: req, log: w.log}
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > uint64(w.cfg.MaxDeliver) {
		w.finish(ctx, msg, call, haip.ToolDoneError, map[string]any{"error": fmt.Sprintf("gave up after %d attempts", w.cfg.MaxDeliver)})
		return
	}
	// Register before checking the cancellation mark, so that a cancel
	// arriving in between is not missed.
	callCtx, cancelCall := context.WithCancelCause(ctx)
	defer cancelCall(nil)
	ref := callRef{session: req.Session, callID: req.CallID}
	w.running.Store(ref, cancelCall)
	defer w.running.Delete(ref)
	if reason, cancelled, err := w.reg.Cancelled(ctx, req.Session, req.CallID); err == nil && cancelled {
		w.finish(ctx, msg, call, haip.ToolDoneCancelled, map[string]any{"reason": reason})
		return
	}
	if err := checkParams(schema, req.Params); err != nil {
		w.finish(ctx, msg, call, haip.ToolDoneError, map[string]any{"error": fmt.Sprintf("params do not match the schema of %s: %v", tool.Name, err)})
		return
	}
	runCtx, stopRun := context.WithTimeoutCause(callCtx, w.cfg.CallTimeout, errTimedOut{after: w.cfg.CallTimeout})
	defer stopRun()
	// The heartbeat also reads the cancellation mark: a TOOL_CANCEL sent
	// while this process's NATS connection was down never comes on the
	// cancel subject.
	defer keepInProgress(ctx, msg, w.cfg.AckWait/3, func() {
		bctx, cancel := context.WithTimeout(ctx, w.cfg.AckWait/3)
		reason, cancelled, err := w.reg.Cancelled(bctx, req.Session, req.CallID)
		cancel()
		if err == nil && cancelled {
			cancelCall(errCancelled{reason: reason})
		}
	})()
	if err := call.Progress(runCtx, 0, nil); err != nil && runCtx.Err() == nil {
		_ = msg.Nak()
		return
	}
	result, err := safeTool(runCtx, tool.Handler, call)
	var cancelled errCancelled
	var timedOut errTimedOut
	switch {
	case errors.As(context.Cause(runCtx), &cancelled):
		w.finish(ctx, msg, call, haip.ToolDoneCancelled, map[string]any{"reason": cancelled.reason})
	case errors.As(context.Cause(runCtx), &timedOut):
		w.finish(ctx, msg, call, haip.ToolDoneError, map[string]any{"error": timedOut.Error()})
	case ctx.Err() != nil:
		_ = msg.Nak() // shutting down: another worker runs it again
	case err != nil:
		w.finish(ctx, msg, call, haip.ToolDoneError, map[string]any{"error": err.Error()})
	default:
		w.finish(ctx, msg, call, haip.ToolDoneOK, result)
	}
}

// finish stores the call's TOOL_DONE and acks the call; if the result
// cannot be stored, the call is left for another attempt.
func (w *ToolWorker) finish(ctx context.Context, msg jetstream.Msg, call *Call, status haip.ToolDoneStatus, result any) {
	if err := call.done(context.WithoutCancel(ctx), status, result); err != nil {
		w.cfg.Logger.Error("tool worker: cannot store the result", slog.String("call", call.CallID), slog.Any("err", err))
		_ = msg.Nak()
		return
	}
	_ = msg.Ack()
}

// checkParams validates params (absent means {}) against a schema.
func checkParams(schema *jsonschema.Resolved, params json.RawMessage) error {
	if schema == nil {
		return nil
	}
	var v any = map[string]any{}
	if len(params) > 0 {
		if err := json.Unmarshal(params, &v); err != nil {
			return err
		}
	}
	return schema.Validate(v)
}

func safeTool(ctx context.Context, h ToolHandler, call *Call) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("tool panic: %v", r)
		}
	}()
	return h.HandleTool(ctx, call)
}

// Call is one tool call being run. Its methods are not safe for
// concurrent use.
type Call struct {
	streams.ToolCall
	log  *streams.Log
	step int
}

// Progress reports progress (0–100) and an optional partial result to the
// session as TOOL_UPDATE RUNNING.
func (c *Call) Progress(ctx context.Context, percent float64, partial any) error {
	c.step++
	p := haip.ToolUpdatePayload{CallID: c.CallID, Status: haip.ToolStatusRunning, Progress: &percent}
	if partial != nil {
		raw, err := json.Marshal(partial)
		if err != nil {
			return fmt.Errorf("cannot encode partial result: %w", err)
		}
		p.Partial = raw
	}
	_, err := c.log.Emit(ctx, c.Session, streams.CallEnvelopeID("tool-update", c.Session, c.CallID, strconv.Itoa(c.step)), c.RunID, "", haip.ChannelAgent, haip.TypeToolUpdate, p)
	return err
}

// done stores the call's one TOOL_DONE: its id depends only on the call,
// so a call run again after a crash still ends once.
func (c *Call) done(ctx context.Context, status haip.ToolDoneStatus, result any) error {
	p := haip.ToolDonePayload{CallID: c.CallID, Status: status}
	if result != nil {
		raw, err := json.Marshal(result)
		if err != nil {
			raw, _ = json.Marshal(map[string]any{"error": "result is not JSON: " + err.Error()})
			p.Status = haip.ToolDoneError
		}
		p.Result = raw
	}
	_, err := c.log.Emit(ctx, c.Session, streams.ToolDoneID(c.Session, c.CallID), c.RunID, "", haip.ChannelAgent, haip.TypeToolDone, p)
	return err
}
