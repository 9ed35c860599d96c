package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Role is who speaks a Message.
type Role string

// The roles of a conversation.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	// RoleTool carries tool results back to the model.
	RoleTool Role = "tool"
)

// Message is one turn of the conversation handed to a provider, in a form
// both APIs map onto: a user's text; an assistant's text and tool calls;
// or the results of those tool calls.
type Message struct {
	Role        Role
	Text        string
	ToolCalls   []ToolCall   // RoleAssistant
	ToolResults []ToolResult // RoleTool
}

// ToolCall is a tool call the model asked for. ID is the fabric's call id
// once the call is made (the model's own id until then).
type ToolCall struct {
	ID        string
	Name      string
	Arguments json.RawMessage // a JSON object
}

// ToolResult is a tool call's outcome, as the model reads it.
type ToolResult struct {
	CallID  string
	Content string
	IsError bool
}

// ToolSpec is a tool offered to the model.
type ToolSpec struct {
	Name        string
	Description string
	Parameters  json.RawMessage // JSON Schema of the arguments object
}

// Request is one model call.
type Request struct {
	Model       string
	System      string
	Messages    []Message
	Tools       []ToolSpec
	Temperature *float64
	MaxTokens   int
	// Continue means the last message is the assistant's unfinished
	// answer, to be continued rather than repeated.
	Continue bool
}

// Usage is what a model call cost, in tokens.
type Usage struct {
	InputTokens  int64
	OutputTokens int64
}

// Add returns the sum of two usages.
func (u Usage) Add(o Usage) Usage {
	return Usage{InputTokens: u.InputTokens + o.InputTokens, OutputTokens: u.OutputTokens + o.OutputTokens}
}

// Event is one thing a model stream says. Exactly one field is set, except
// that the last event of a stream (Done) carries the usage and the tool
// calls.
type Event struct {
	// Text is a piece of the answer.
	Text string
	// Done ends the stream: the complete tool calls, the usage.
	Done      bool
	ToolCalls []ToolCall
	Usage     Usage
	// Alive is any other data from the provider (a tool call's argument
	// delta, a ping): it proves the stream is not stalled.
	Alive bool
}

// Provider streams one model call. Stream sends the stream's events on
// events, in order, the last one Done, and returns nil; or returns the
// error that ended it (a *ProviderError for an HTTP failure). It returns
// when ctx ends. It does not retry: the agent does (see Agent).
type Provider interface {
	Stream(ctx context.Context, req Request, events chan<- Event) error
}

// ProviderError is a provider's HTTP failure.
type ProviderError struct {
	// Provider names the API ("openai", "anthropic").
	Provider string
	// Status is the HTTP status.
	Status int
	// RetryAfter is the provider's retry-after, or zero.
	RetryAfter time.Duration
	// Message is the provider's error message, with the API key removed.
	Message string
}

func (e *ProviderError) Error() string {
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		// The message of a refused key may quote part of it.
		return fmt.Sprintf("%s refused the API key (HTTP %d): check LLM_API_KEY", e.Provider, e.Status)
	case http.StatusNotFound:
		return fmt.Sprintf("%s does not know the model or endpoint (HTTP 404): %s", e.Provider, e.Message)
	}
	return fmt.Sprintf("%s failed (HTTP %d): %s", e.Provider, e.Status, e.Message)
}

// Retryable reports a failure worth trying again: 408, 409, 429 and 5xx.
func (e *ProviderError) Retryable() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusConflict ||
		e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// providerError builds a ProviderError from an HTTP response, redacting key.
func providerError(provider string, status int, header http.Header, message, key string) *ProviderError {
	if key != "" {
		message = strings.ReplaceAll(message, key, "[redacted]")
	}
	if len(message) > maxErrorMessage {
		message = message[:maxErrorMessage] + "…"
	}
	return &ProviderError{Provider: provider, Status: status, RetryAfter: retryAfter(header, time.Now()), Message: message}
}

// maxErrorMessage bounds a provider's message quoted in a RUN_ERROR.
const maxErrorMessage = 300

// retryAfter reads retry-after-ms, then retry-after (seconds or an HTTP
// date); zero when absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 {
		return time.Duration(ms * float64(time.Millisecond))
	}
	v := h.Get("Retry-After")
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// errStalled ends a model stream that sent nothing for the stall timeout.
var errStalled = errors.New("model stream stalled")

// toolCalls puts together tool calls streamed in pieces: each piece names
// the call by the index the provider gives it; the id and name come first,
// the arguments in fragments after.
type toolCalls struct {
	order []int64
	calls map[int64]*ToolCall
	args  map[int64][]byte
}

// add adds a piece of the call at index (empty fields add nothing).
func (t *toolCalls) add(index int64, id, name, args string) {
	if t.calls == nil {
		t.calls, t.args = map[int64]*ToolCall{}, map[int64][]byte{}
	}
	c := t.calls[index]
	if c == nil {
		c = &ToolCall{}
		t.calls[index] = c
		t.order = append(t.order, index)
	}
	if id != "" {
		c.ID = id
	}
	if name != "" {
		c.Name = name
	}
	t.args[index] = append(t.args[index], args...)
}

// has reports a call at index.
func (t *toolCalls) has(index int64) bool { return t.calls[index] != nil }

// done returns the calls in the order they began; arguments that are
// empty (a call without parameters) are {}.
func (t *toolCalls) done() []ToolCall {
	var out []ToolCall
	for _, i := range t.order {
		c := *t.calls[i]
		c.Arguments = json.RawMessage(`{}`)
		if len(t.args[i]) > 0 {
			c.Arguments = json.RawMessage(t.args[i])
		}
		out = append(out, c)
	}
	return out
}

// apiError is a provider SDK's HTTP error as a ProviderError, the key
// removed from its message.
func apiError(provider, key string, status int, resp *http.Response, message string) error {
	var h http.Header
	if resp != nil {
		h = resp.Header
	}
	if message == "" {
		message = http.StatusText(status)
	}
	return providerError(provider, status, h, message, key)
}

// finish ends a provider's stream: with its error, or with the Done event
// (the usage, the complete tool calls).
func finish(ctx context.Context, events chan<- Event, err error, usage Usage, calls *toolCalls) error {
	if err != nil {
		return err
	}
	if !send(ctx, events, Event{Done: true, Usage: usage, ToolCalls: calls.done()}) {
		return ctx.Err()
	}
	return nil
}
