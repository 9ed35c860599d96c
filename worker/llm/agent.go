package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// Defaults for Config fields left zero.
const (
	DefaultContextBudget = 16_000
	DefaultStallTimeout  = 60 * time.Second
	DefaultRetryBudget   = 60 * time.Second
	// DefaultFlushWindow is how long streamed text may wait to be stored
	// with what follows it (see docs/ARCHITECTURE.md, "coalescing").
	DefaultFlushWindow = 25 * time.Millisecond
	// DefaultFlushBytes stores the text at once when this much waits.
	DefaultFlushBytes = 512
	DefaultMaxRounds  = 8
	DefaultAuthor     = "llm-agent"
)

// retryBase and retryCap shape the backoff between attempts of a model
// call: doubling from retryBase, at most retryCap, with full jitter; a
// provider's retry-after is a floor.
const (
	retryBase = 500 * time.Millisecond
	retryCap  = 10 * time.Second
)

// Config configures an Agent. Zero fields take the defaults above.
type Config struct {
	// Provider is ProviderOpenAI (any OpenAI-compatible server) or
	// ProviderAnthropic.
	Provider string
	// BaseURL is the API's base URL; empty means the provider's own.
	BaseURL string
	// APIKey is sent to the provider and never logged or shown.
	APIKey string
	// Model is the default model id; a session's modelConfig.id wins.
	Model string
	// SystemPrompt is the default system prompt; a session's
	// agentSettings.systemPrompt wins.
	SystemPrompt string
	// Temperature, when set, is sent; nil leaves the provider's default.
	Temperature *float64
	// MaxTokens bounds one answer; zero leaves the provider's default
	// (Anthropic requires one: 4096).
	MaxTokens int
	// ContextBudget bounds the conversation sent, in estimated tokens
	// (four bytes a token); the oldest turns are left out first.
	ContextBudget int
	// StallTimeout ends a run whose model stream sends nothing for so long.
	StallTimeout time.Duration
	// RetryBudget bounds the time spent retrying a model call that failed
	// with 408, 409, 429, 5xx or a network error.
	RetryBudget time.Duration
	// FlushWindow and FlushBytes coalesce streamed text into
	// TEXT_MESSAGE_PARTs: text is stored when FlushBytes wait or when the
	// oldest waiting text is FlushWindow old. A negative FlushWindow
	// stores every delta as it comes.
	FlushWindow time.Duration
	FlushBytes  int
	// MaxRounds bounds the model calls of one run (each round of tool
	// calls is one more).
	MaxRounds int
	// Author names the agent in TEXT_MESSAGE_START.
	Author string
	// ToolAccess says which tools the run's user may call; the model is
	// offered only those. The zero value offers every tool.
	ToolAccess auth.ToolAccess
	// HTTPClient calls the provider; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives the agent's logs; nil means silent.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ContextBudget <= 0 {
		c.ContextBudget = DefaultContextBudget
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.RetryBudget <= 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.FlushWindow == 0 {
		c.FlushWindow = DefaultFlushWindow
	}
	if c.FlushBytes <= 0 {
		c.FlushBytes = DefaultFlushBytes
	}
	if c.MaxRounds <= 0 {
		c.MaxRounds = DefaultMaxRounds
	}
	if c.Author == "" {
		c.Author = DefaultAuthor
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every bad field at once.
func (c Config) Validate() error {
	var errs []error
	switch c.Provider {
	case ProviderOpenAI, ProviderAnthropic:
	default:
		errs = append(errs, fmt.Errorf("LLM_PROVIDER %q: want %s or %s", c.Provider, ProviderOpenAI, ProviderAnthropic))
	}
	if c.Model == "" {
		errs = append(errs, errors.New("LLM_MODEL is empty"))
	}
	if c.Provider == ProviderAnthropic && c.APIKey == "" {
		errs = append(errs, errors.New("LLM_API_KEY is empty (the Anthropic API needs one)"))
	}
	if c.Temperature != nil && (*c.Temperature < 0 || *c.Temperature > 2) {
		errs = append(errs, fmt.Errorf("LLM_TEMPERATURE %g: want 0 to 2", *c.Temperature))
	}
	return errors.Join(errs...)
}

// Agent is the LLM run handler: it answers each run with a model, streams
// the answer into the session log and calls the fabric's tools for the
// model. It keeps no state between runs: each run's conversation is read
// from the session log, so any replica answers any run the same way.
// Safe for concurrent use by many runs.
type Agent struct {
	cfg      Config
	provider Provider
	fabric   *streams.Fabric
}

var _ worker.RunHandler = (*Agent)(nil)

// New opens the fabric for the agent (session records, log, tool
// registry) and binds the configured provider. Close releases it.
func New(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot start the LLM agent: %w", err)
	}
	cfg = cfg.withDefaults()
	fab, err := streams.Open(ctx, nc, js, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot start the LLM agent: %w", err)
	}
	return &Agent{cfg: cfg, provider: NewProvider(cfg.Provider, cfg.BaseURL, cfg.APIKey, cfg.HTTPClient), fabric: fab}, nil
}

// NewProvider returns the provider named name (ProviderOpenAI or
// ProviderAnthropic).
func NewProvider(name, baseURL, key string, hc *http.Client) Provider {
	if name == ProviderAnthropic {
		return NewAnthropic(baseURL, key, hc)
	}
	return NewOpenAI(baseURL, key, hc)
}

// Close releases the agent's fabric binding.
func (a *Agent) Close(ctx context.Context) error { return a.fabric.Close(ctx) }

// settings are one run's model settings: the agent's, overridden by the
// session's record.
type settings struct {
	model, system string
	temperature   *float64
	maxTokens     int
	budget        int
}

func (a *Agent) settings(ctx context.Context, session string) (settings, error) {
	s := settings{model: a.cfg.Model, system: a.cfg.SystemPrompt, temperature: a.cfg.Temperature, maxTokens: a.cfg.MaxTokens, budget: a.cfg.ContextBudget}
	rec, found, err := a.fabric.Sessions().Get(ctx, session)
	if err != nil {
		return s, fmt.Errorf("cannot read the session's settings: %w", err)
	}
	if !found {
		return s, nil
	}
	var mc streams.ModelConfig
	if _, err := rec.Meta(streams.MetaModelConfig, &mc); err != nil {
		return s, fmt.Errorf("bad session settings: %w", err)
	}
	if mc.Provider != "" && mc.Provider != a.cfg.Provider {
		return s, fmt.Errorf("bad session settings: modelConfig.provider %q: this agent serves %q", mc.Provider, a.cfg.Provider)
	}
	if mc.ID != "" {
		if !modelIDPattern.MatchString(mc.ID) {
			return s, fmt.Errorf("bad session settings: modelConfig.id %q is not a model id", mc.ID)
		}
		s.model = mc.ID
	}
	var as streams.AgentSettings
	if _, err := rec.Meta(streams.MetaAgentSettings, &as); err != nil {
		return s, fmt.Errorf("bad session settings: %w", err)
	}
	if as.SystemPrompt != "" {
		s.system = as.SystemPrompt
	}
	if as.Temperature != nil {
		if *as.Temperature < 0 || *as.Temperature > 2 {
			return s, fmt.Errorf("bad session settings: agentSettings.temperature %g: want 0 to 2", *as.Temperature)
		}
		s.temperature = as.Temperature
	}
	if as.MaxTokens < 0 || as.ContextBudget < 0 {
		return s, errors.New("bad session settings: agentSettings.maxTokens and contextBudget may not be negative")
	}
	if as.MaxTokens > 0 {
		s.maxTokens = as.MaxTokens
	}
	if as.ContextBudget > 0 {
		s.budget = as.ContextBudget
	}
	return s, nil
}

// modelIDPattern admits the model ids providers use (gpt-4o-mini,
// claude-sonnet-4-5, llama3.1:8b, org/model).
var modelIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,255}$`)

// toolNamePattern is what both APIs accept as a function name.
var toolNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// tools lists the live tools the run's user may call, as the model sees
// them. The run's user is who sent the message that started it (a user
// role: agents and admins start no runs over HAIP).
func (a *Agent) tools(ctx context.Context, user string) ([]ToolSpec, error) {
	infos, err := a.fabric.Tools().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot list the tools: %w", err)
	}
	var specs []ToolSpec
	for _, t := range infos {
		if !toolNamePattern.MatchString(t.Name) || !a.cfg.ToolAccess.Allows(auth.RoleUser, user, t.Name) {
			continue
		}
		params := json.RawMessage(`{"type":"object","properties":{}}`)
		if len(t.ParamsSchema) > 0 {
			var obj map[string]any
			if json.Unmarshal(t.ParamsSchema, &obj) != nil {
				a.cfg.Logger.Warn("llm: tool with a params schema that is not an object left out", slog.String("tool", t.Name))
				continue
			}
			params = t.ParamsSchema
		}
		specs = append(specs, ToolSpec{Name: t.Name, Description: t.Description, Parameters: params})
	}
	return specs, nil
}

// HandleRun answers one run (see Agent).
func (a *Agent) HandleRun(ctx context.Context, run *worker.Run) error {
	req := run.Request
	if req.Kind == streams.RunKindAudio {
		return errors.New("the LLM agent answers text messages only")
	}
	st, err := a.settings(ctx, req.Session)
	if err != nil {
		return err
	}
	specs, err := a.tools(ctx, req.User)
	if err != nil {
		return err
	}
	offered := make(map[string]bool, len(specs))
	for _, s := range specs {
		offered[s.Name] = true
	}
	// The conversation so far, from the log; an earlier attempt of this
	// run may have left tool calls running and an answer half written.
	var h history
	base := 0
	for {
		entries, dirs, err := readLog(ctx, a.fabric.Log(), req.Session, st.budget)
		if err != nil {
			return err
		}
		if base == 0 {
			base = run.Continue(entries)
		}
		h = rebuild(entries, dirs, req, st.budget)
		if len(h.Pending) == 0 {
			break
		}
		if err := a.waitPending(ctx, req, h.Pending); err != nil {
			return err
		}
	}
	if h.Answered {
		return nil // an earlier attempt finished the answer; the run ends
	}
	msgs := h.Messages
	var usage Usage
	for round := 0; round < a.cfg.MaxRounds; round++ {
		mr := Request{Model: st.model, System: st.system, Messages: msgs, Tools: specs, Temperature: st.temperature, MaxTokens: st.maxTokens}
		msgID := haip.NameUUID("llm-answer", req.RunID, strconv.Itoa(base), strconv.Itoa(round))
		started := false
		if round == 0 && h.PartialID != "" {
			mr.Continue, msgID, started = true, h.PartialID, true
		}
		out := &answer{run: run, id: msgID, author: a.cfg.Author, started: started, window: a.cfg.FlushWindow, maxBytes: a.cfg.FlushBytes}
		res, err := a.call(ctx, mr, out)
		usage = usage.Add(res.Usage)
		if err != nil {
			out.abandon(ctx)
			return err
		}
		if err := out.end(ctx, res.Usage); err != nil {
			return err
		}
		if len(res.ToolCalls) == 0 {
			summary := fmt.Sprintf("input_tokens=%d output_tokens=%d", usage.InputTokens, usage.OutputTokens)
			_, err := run.Emit(ctx, haip.ChannelAgent, haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK, Summary: summary})
			return err
		}
		asked, results, err := a.callTools(ctx, run, res.ToolCalls, offered)
		if err != nil {
			return err
		}
		if mr.Continue {
			msgs = msgs[:len(msgs)-1] // the partial answer is now out.text
			out.text = mr.Messages[len(mr.Messages)-1].Text + out.text
		}
		msgs = append(msgs, Message{Role: RoleAssistant, Text: out.text, ToolCalls: asked}, Message{Role: RoleTool, ToolResults: results})
	}
	return fmt.Errorf("the model asked for tools %d times in a row; stopped (LLM_MAX_ROUNDS)", a.cfg.MaxRounds)
}

// callTools runs the model's tool calls: those offered become fabric
// TOOL_CALLs, all made before any result is awaited; any other gets an
// error result at once. The calls come back with the fabric's call ids.
func (a *Agent) callTools(ctx context.Context, run *worker.Run, calls []ToolCall, offered map[string]bool) ([]ToolCall, []ToolResult, error) {
	results := make([]ToolResult, len(calls))
	var reqs []worker.ToolRequest
	var at []int
	for i, c := range calls {
		if !offered[c.Name] {
			calls[i].ID = haip.NameUUID("llm-refused", run.Request.RunID, c.ID, strconv.Itoa(i))
			results[i] = ToolResult{CallID: calls[i].ID, Content: fmt.Sprintf("tool %s is not available", c.Name), IsError: true}
			continue
		}
		var obj map[string]any
		if json.Unmarshal(c.Arguments, &obj) != nil {
			calls[i].ID = haip.NameUUID("llm-refused", run.Request.RunID, c.ID, strconv.Itoa(i))
			calls[i].Arguments = json.RawMessage(`{}`)
			results[i] = ToolResult{CallID: calls[i].ID, Content: "the arguments were not a JSON object", IsError: true}
			continue
		}
		reqs = append(reqs, worker.ToolRequest{Tool: c.Name, Params: c.Arguments})
		at = append(at, i)
	}
	dones, err := run.CallTools(ctx, reqs)
	if err != nil {
		return nil, nil, err
	}
	for k, d := range dones {
		i := at[k]
		calls[i].ID = d.CallID
		results[i] = toolResult(d.CallID, d.Status, d.Result)
	}
	return calls, results, nil
}

// waitPending waits for the TOOL_DONEs of calls an earlier attempt of the
// run made. A cancelled run cancels them.
func (a *Agent) waitPending(ctx context.Context, req streams.RunRequest, ids []string) error {
	f, err := a.fabric.Log().NewFollower(req.Session, streams.Out)
	if err != nil {
		return fmt.Errorf("cannot follow the session: %w", err)
	}
	defer f.Close()
	b, err := a.fabric.Log().Bounds(ctx, req.Session, streams.Out)
	if err != nil {
		return fmt.Errorf("cannot follow the session: %w", err)
	}
	from := b.First.Seq
	if b.Last.Seq >= historyWindow && b.Last.Seq-historyWindow+1 > from {
		from = b.Last.Seq - historyWindow + 1
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	wctx, cancel := context.WithTimeout(ctx, worker.DefaultToolTimeout)
	defer cancel()
	err = f.Follow(wctx, from, streams.FollowOptions{}, func(e streams.Entry) bool {
		if e.Type == string(haip.TypeToolDone) {
			var v envelopeView
			if json.Unmarshal(e.Data, &v) == nil {
				delete(want, v.Payload.CallID)
			}
		}
		return len(want) > 0
	})
	if err != nil && errors.Is(context.Cause(ctx), worker.ErrRunCancelled) {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		for id := range want {
			_ = a.fabric.Router().Cancel(cctx, req.Session, req.RunID, id, "run cancelled")
		}
	}
	if err != nil {
		return fmt.Errorf("waiting for the tool calls of an earlier attempt: %w", err)
	}
	return nil
}

// result is what one model call produced.
type result struct {
	ToolCalls []ToolCall
	Usage     Usage
}

// call makes one model call, retrying a failure that is worth it (429,
// 5xx, a network error) with backoff and jitter within the retry budget,
// as long as none of the answer was stored yet.
func (a *Agent) call(ctx context.Context, req Request, out *answer) (result, error) {
	began := time.Now()
	for attempt := 0; ; attempt++ {
		res, err := a.stream(ctx, req, out)
		if err == nil || ctx.Err() != nil || out.stored || errors.Is(err, streams.ErrStore) {
			return res, err
		}
		var perr *ProviderError
		retry := errors.As(err, &perr) && perr.Retryable() || !errors.As(err, &perr) && !errors.Is(err, errStalled)
		if !retry {
			return res, err
		}
		wait := min(retryCap, retryBase<<min(attempt, 10))
		wait = wait/2 + rand.N(wait/2+1) //nolint:gosec // jitter, not a secret
		if perr != nil && perr.RetryAfter > wait {
			wait = perr.RetryAfter
		}
		if time.Since(began)+wait > a.cfg.RetryBudget {
			return res, fmt.Errorf("model call failed and the retry budget (%s, LLM_RETRY_BUDGET) is spent: %w", a.cfg.RetryBudget, err)
		}
		a.cfg.Logger.Warn("llm: model call failed; retrying", slog.Any("err", err), slog.Duration("in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
}

// stream runs one model stream: the provider reads it on its own
// goroutine (owned here: stopped and waited for before stream returns),
// this one stores its text as it comes, coalesced, and watches for a
// stall and for the run's end.
func (a *Agent) stream(ctx context.Context, req Request, out *answer) (result, error) {
	sctx, cancel := context.WithCancel(ctx)
	events := make(chan Event, 64)
	done := make(chan error, 1)
	go func() { done <- a.provider.Stream(sctx, req, events) }()
	defer func() {
		cancel()
		for {
			select {
			case <-events:
			case <-done:
				return
			}
		}
	}()
	stall := time.NewTimer(a.cfg.StallTimeout)
	defer stall.Stop()
	var res result
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-stall.C:
			return res, fmt.Errorf("%w: nothing for %s (LLM_STALL_TIMEOUT)", errStalled, a.cfg.StallTimeout)
		case <-out.flushC:
			if err := out.flush(ctx); err != nil {
				return res, err
			}
		case err := <-done:
			done <- err // for the deferred wait
			if err != nil {
				return res, err
			}
			// Ended well: its last events, Done among them, are buffered.
			for {
				select {
				case ev := <-events:
					if r, fin, err := take(ctx, out, ev); fin || err != nil {
						return r, err
					}
				default:
					return res, errors.New("model stream ended without finishing")
				}
			}
		case ev := <-events:
			stall.Reset(a.cfg.StallTimeout)
			if r, fin, err := take(ctx, out, ev); fin || err != nil {
				return r, err
			}
		}
	}
}

// take handles one event of a model stream; fin is true at its end.
func take(ctx context.Context, out *answer, ev Event) (result, bool, error) {
	if ev.Text != "" {
		if err := out.add(ctx, ev.Text); err != nil {
			return result{}, false, err
		}
	}
	if !ev.Done {
		return result{}, false, nil
	}
	if err := out.flush(ctx); err != nil {
		return result{}, false, err
	}
	return result{ToolCalls: ev.ToolCalls, Usage: ev.Usage}, true, nil
}

// answer stores one model call's text as a HAIP text message: START at
// the first text, PARTs coalesced by time and size, END with the usage.
// It belongs to the run's handler goroutine.
type answer struct {
	run      *worker.Run
	id       string
	author   string
	started  bool // START stored (or stored by an earlier attempt)
	stored   bool // some of this call's text is stored
	window   time.Duration
	maxBytes int
	buf      strings.Builder
	text     string // all of this call's text
	timer    *time.Timer
	flushC   <-chan time.Time
}

func (w *answer) add(ctx context.Context, text string) error {
	w.text += text
	w.buf.WriteString(text)
	if w.window < 0 || w.buf.Len() >= w.maxBytes {
		return w.flush(ctx)
	}
	if w.flushC == nil {
		if w.timer == nil {
			w.timer = time.NewTimer(w.window)
		} else {
			w.timer.Reset(w.window)
		}
		w.flushC = w.timer.C
	}
	return nil
}

func (w *answer) flush(ctx context.Context) error {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.flushC = nil
	if w.buf.Len() == 0 {
		return nil
	}
	if !w.started {
		if _, err := w.run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: w.id, Author: w.author}); err != nil {
			return err
		}
		w.started = true
	}
	if _, err := w.run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: w.id, Text: w.buf.String()}); err != nil {
		return err
	}
	w.stored = true
	w.buf.Reset()
	return nil
}

// end stores the message's END with the call's output tokens, if the
// message was started.
func (w *answer) end(ctx context.Context, u Usage) error {
	if err := w.flush(ctx); err != nil || !w.started {
		return err
	}
	p := haip.TextMessageEndPayload{MessageID: w.id}
	if u.OutputTokens > 0 {
		t := haip.U64(u.OutputTokens)
		p.Tokens = &t
	}
	_, err := w.run.Emit(ctx, haip.ChannelAgent, haip.TypeTextMessageEnd, p)
	return err
}

// abandon closes a message the run will not finish, when the run ends
// here (failed or cancelled): the client sees it closed. A replica that
// is only stopping leaves it open for the next attempt to continue.
func (w *answer) abandon(ctx context.Context) {
	if w.timer != nil {
		w.timer.Stop()
	}
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), worker.ErrRunCancelled) {
		return
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = w.end(ectx, Usage{})
}
