// Package llmtest is a fake LLM provider for tests: an httptest server
// that answers the OpenAI Chat Completions API (POST /v1/chat/completions)
// and the Anthropic Messages API (POST /v1/messages) with streams of the
// shapes those APIs document — OpenAI chat.completion.chunk events with
// tool calls split across chunks and a final usage chunk, then [DONE];
// Anthropic message_start, content_block_start/_delta/_stop (text_delta,
// input_json_delta), ping, message_delta with usage, message_stop — and
// with their error bodies. Each reply is scripted by the test; every
// request is recorded.
package llmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Call is a tool call the fake model makes.
type Call struct {
	Name string
	// Args is the arguments' JSON, streamed in three pieces.
	Args string
}

// Reply is what the fake model answers to one request.
type Reply struct {
	// Text is streamed delta by delta.
	Text []string
	// Calls are made after the text, all in one reply (parallel calls).
	Calls []Call
	// Delay is the pause before each delta.
	Delay time.Duration
	// StallAfter, when > 0, stops sending after that many text deltas
	// and holds the response open until the client goes.
	StallAfter int
	// Status, when set, answers with that HTTP error instead, with the
	// API's error body; RetryAfter goes in the retry-after header.
	Status     int
	RetryAfter string
	// Usage is reported at the end (input, output tokens).
	InputTokens, OutputTokens int
}

// Request is one request the fake received.
type Request struct {
	// API is "openai" or "anthropic".
	API    string
	Header http.Header
	Body   []byte
	// Model is the body's model.
	Model string
}

// Server is the fake provider. Script decides each reply (n counts the
// requests from 0); nil answers "Hello from the fake model." Safe for
// concurrent use.
type Server struct {
	*httptest.Server
	quit chan struct{}

	mu       sync.Mutex
	script   func(n int, r Request) Reply
	requests []Request
	ended    map[int]time.Time
}

// New starts a fake provider; it is closed when the test ends.
func New(t interface{ Cleanup(func()) }, script func(n int, r Request) Reply) *Server {
	s := &Server{quit: make(chan struct{}), script: script, ended: map[int]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, "openai") })
	mux.HandleFunc("POST /v1/messages", func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, "anthropic") })
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, releasing stalled responses first.
func (s *Server) Close() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	s.Server.Close()
}

// OpenAIURL is the base URL to give the OpenAI SDK.
func (s *Server) OpenAIURL() string { return s.URL + "/v1" }

// AnthropicURL is the base URL to give the Anthropic SDK.
func (s *Server) AnthropicURL() string { return s.URL }

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Ended returns when the response to request n ended (its stream was
// finished, or the client went), or the zero time.
func (s *Server) Ended(n int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended[n]
}

// SetScript replaces the script.
func (s *Server) SetScript(script func(n int, r Request) Reply) {
	s.mu.Lock()
	s.script = script
	s.mu.Unlock()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, api string) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var head struct {
		Model string `json:"model"`
	}
	_ = json.Unmarshal(body, &head)
	req := Request{API: api, Header: r.Header.Clone(), Body: body, Model: head.Model}
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, req)
	script := s.script
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.ended[n] = time.Now()
		s.mu.Unlock()
	}()
	reply := Reply{Text: []string{"Hello ", "from the ", "fake model."}}
	if script != nil {
		reply = script(n, req)
	}
	if reply.Status != 0 {
		writeError(w, api, reply, head.Model)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	st := &sse{w: w, rc: http.NewResponseController(w), quit: s.quit, done: r.Context().Done()}
	if api == "openai" {
		streamOpenAI(st, reply, head.Model)
	} else {
		streamAnthropic(st, reply, head.Model)
	}
}

// sse writes server-sent events, flushing each.
type sse struct {
	w          http.ResponseWriter
	rc         *http.ResponseController
	quit, done <-chan struct{}
}

func (s *sse) event(name string, v any) bool {
	data, _ := json.Marshal(v)
	if name != "" {
		fmt.Fprintf(s.w, "event: %s\n", name)
	}
	fmt.Fprintf(s.w, "data: %s\n\n", data)
	return s.rc.Flush() == nil
}

func (s *sse) raw(line string) {
	fmt.Fprint(s.w, line)
	_ = s.rc.Flush()
}

// pause waits d, false when the client or the server went.
func (s *sse) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.quit:
	case <-s.done:
	}
	return false
}

// hold keeps the response open until the client or the server goes.
func (s *sse) hold() {
	select {
	case <-s.quit:
	case <-s.done:
	}
}

// split cuts a tool call's arguments into three pieces, as providers
// stream them.
func split(args string) []string {
	a, b := len(args)/3, 2*len(args)/3
	return []string{args[:a], args[a:b], args[b:]}
}

func streamOpenAI(s *sse, r Reply, model string) {
	id, created := "chatcmpl-fake1", time.Now().Unix()
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
			"system_fingerprint": "fp_fake", "choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}, "usage": nil}
	}
	if !s.event("", chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil)) {
		return
	}
	for i, t := range r.Text {
		if r.StallAfter > 0 && i == r.StallAfter {
			s.hold()
			return
		}
		if !s.pause(r.Delay) || !s.event("", chunk(map[string]any{"content": t}, nil)) {
			return
		}
	}
	for i, c := range r.Calls {
		first := map[string]any{"tool_calls": []any{map[string]any{"index": i, "id": "call_fake" + strconv.Itoa(i), "type": "function",
			"function": map[string]any{"name": c.Name, "arguments": ""}}}}
		if i == 0 && len(r.Text) == 0 {
			first["role"], first["content"] = "assistant", nil
		}
		if !s.pause(r.Delay) || !s.event("", chunk(first, nil)) {
			return
		}
		for _, piece := range split(c.Args) {
			if !s.event("", chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "function": map[string]any{"arguments": piece}}}}, nil)) {
				return
			}
		}
	}
	finish := "stop"
	if len(r.Calls) > 0 {
		finish = "tool_calls"
	}
	s.event("", chunk(map[string]any{}, finish))
	s.event("", map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "system_fingerprint": "fp_fake",
		"choices": []any{}, "usage": map[string]any{"prompt_tokens": r.InputTokens, "completion_tokens": r.OutputTokens,
			"total_tokens": r.InputTokens + r.OutputTokens, "prompt_tokens_details": map[string]any{"cached_tokens": 0},
			"completion_tokens_details": map[string]any{"reasoning_tokens": 0}}})
	s.raw("data: [DONE]\n\n")
}

func streamAnthropic(s *sse, r Reply, model string) {
	if !s.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_fake01", "type": "message",
		"role": "assistant", "content": []any{}, "model": model, "stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": r.InputTokens, "output_tokens": 1}}}) {
		return
	}
	index := 0
	if len(r.Text) > 0 {
		s.event("content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]any{"type": "text", "text": ""}})
		s.event("ping", map[string]any{"type": "ping"})
		for i, t := range r.Text {
			if r.StallAfter > 0 && i == r.StallAfter {
				s.hold()
				return
			}
			if !s.pause(r.Delay) || !s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index,
				"delta": map[string]any{"type": "text_delta", "text": t}}) {
				return
			}
		}
		s.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	for i, c := range r.Calls {
		if !s.pause(r.Delay) {
			return
		}
		s.event("content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": map[string]any{
			"type": "tool_use", "id": "toolu_fake" + strconv.Itoa(i), "name": c.Name, "input": map[string]any{}}})
		s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "input_json_delta", "partial_json": ""}})
		for _, piece := range split(c.Args) {
			s.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "input_json_delta", "partial_json": piece}})
		}
		s.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	stop := "end_turn"
	if len(r.Calls) > 0 {
		stop = "tool_use"
	}
	s.event("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": r.OutputTokens}})
	s.event("message_stop", map[string]any{"type": "message_stop"})
}

// writeError answers with the API's error body for the status.
func writeError(w http.ResponseWriter, api string, r Reply, model string) {
	if r.RetryAfter != "" {
		w.Header().Set("Retry-After", r.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(r.Status)
	var body any
	if api == "openai" {
		typ, code, msg := "server_error", "server_error", "The server had an error while processing your request."
		switch r.Status {
		case http.StatusUnauthorized:
			typ, code, msg = "invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fak********************3xyz. You can find your API key at the dashboard."
		case http.StatusNotFound:
			typ, code, msg = "invalid_request_error", "model_not_found", fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model)
		case http.StatusTooManyRequests:
			typ, code, msg = "requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."
		}
		body = map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}}
	} else {
		typ, msg := "api_error", "Internal server error"
		switch r.Status {
		case http.StatusUnauthorized:
			typ, msg = "authentication_error", "invalid x-api-key"
		case http.StatusNotFound:
			typ, msg = "not_found_error", "model: "+model
		case http.StatusTooManyRequests:
			typ, msg = "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
		case 529:
			typ, msg = "overloaded_error", "Overloaded"
		}
		body = map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}, "request_id": "req_fake01"}
	}
	_ = json.NewEncoder(w).Encode(body)
}
