package llm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// ProviderOpenAI and ProviderAnthropic name the APIs (LLM_PROVIDER, and a
// session's modelConfig.provider).
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
)

// noKey stands in for an empty API key: local OpenAI-compatible servers
// (Ollama, vLLM, llama.cpp, LM Studio) ignore the key, but the SDK sends
// whatever it is given.
const noKey = "none"

// openAIProvider streams Chat Completions with the official SDK. It works
// with OpenAI and with any server that speaks the same API.
type openAIProvider struct {
	client openai.Client
	key    string
}

// NewOpenAI returns a Provider for the Chat Completions API at baseURL
// (empty: the SDK's default) with key; hc nil means http.DefaultClient.
// The SDK's own retries are off: the agent retries within its budget.
func NewOpenAI(baseURL, key string, hc *http.Client) Provider {
	if key == "" {
		key = noKey
	}
	opts := []option.RequestOption{option.WithAPIKey(key), option.WithMaxRetries(0)}
	if baseURL != "" {
		opts = append(opts, option.WithBaseURL(baseURL))
	}
	if hc != nil {
		opts = append(opts, option.WithHTTPClient(hc))
	}
	return &openAIProvider{client: openai.NewClient(opts...), key: key}
}

// Stream implements Provider.
func (p *openAIProvider) Stream(ctx context.Context, req Request, events chan<- Event) error {
	params := openai.ChatCompletionNewParams{
		Model:         shared.ChatModel(req.Model),
		Messages:      openAIMessages(req),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	if req.Temperature != nil {
		params.Temperature = openai.Float(*req.Temperature)
	}
	if req.MaxTokens > 0 {
		params.MaxCompletionTokens = openai.Int(int64(req.MaxTokens))
	}
	for _, t := range req.Tools {
		var schema map[string]any
		_ = json.Unmarshal(t.Parameters, &schema) // checked when offered
		fn := shared.FunctionDefinitionParam{Name: t.Name, Parameters: schema}
		if t.Description != "" {
			fn.Description = openai.String(t.Description)
		}
		params.Tools = append(params.Tools, openai.ChatCompletionFunctionTool(fn))
	}
	stream := p.client.Chat.Completions.NewStreaming(ctx, params)
	defer stream.Close() //nolint:errcheck // the body is read to its end or abandoned
	var calls toolCalls
	var usage Usage
	for stream.Next() {
		chunk := stream.Current()
		ev := Event{Alive: true}
		if chunk.JSON.Usage.Valid() {
			usage = Usage{InputTokens: chunk.Usage.PromptTokens, OutputTokens: chunk.Usage.CompletionTokens}
		}
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			ev.Text += ch.Delta.Content
			// A tool call comes in pieces: its id and name first, its
			// arguments spread over later chunks, all by index.
			for _, tc := range ch.Delta.ToolCalls {
				calls.add(tc.Index, tc.ID, tc.Function.Name, tc.Function.Arguments)
			}
		}
		if ev.Text != "" {
			ev.Alive = false
		}
		if !send(ctx, events, ev) {
			return ctx.Err()
		}
	}
	return finish(ctx, events, p.error(stream.Err()), usage, &calls)
}

func (p *openAIProvider) error(err error) error {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return apiError(ProviderOpenAI, p.key, apiErr.StatusCode, apiErr.Response, apiErr.Message)
	}
	return err
}

// openAIMessages maps the conversation: the system prompt first, tool
// results as one tool message each.
func openAIMessages(req Request) []openai.ChatCompletionMessageParamUnion {
	var out []openai.ChatCompletionMessageParamUnion
	system := req.System
	if req.Continue {
		system += continueInstruction
	}
	if system != "" {
		out = append(out, openai.SystemMessage(system))
	}
	for _, m := range req.Messages {
		switch m.Role {
		case RoleUser:
			out = append(out, openai.UserMessage(m.Text))
		case RoleAssistant:
			a := openai.ChatCompletionAssistantMessageParam{}
			if m.Text != "" {
				a.Content.OfString = openai.String(m.Text)
			}
			for _, c := range m.ToolCalls {
				a.ToolCalls = append(a.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
					OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: c.ID,
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: c.Name, Arguments: string(c.Arguments)}}})
			}
			out = append(out, openai.ChatCompletionMessageParamUnion{OfAssistant: &a})
		case RoleTool:
			for _, r := range m.ToolResults {
				out = append(out, openai.ToolMessage(r.Content, r.CallID))
			}
		}
	}
	return out
}

// continueInstruction tells a model that cannot be prefilled how to go on
// with an answer that was interrupted (the last assistant message).
const continueInstruction = "\n\nYour previous reply (the last assistant message) was interrupted. " +
	"Continue it from exactly where it stops, without repeating any of it."

// send hands ev to the agent, unless ctx ends first.
func send(ctx context.Context, events chan<- Event, ev Event) bool {
	select {
	case events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
