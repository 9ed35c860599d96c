package llm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// defaultAnthropicMaxTokens is max_tokens when none is configured: the
// Messages API requires one.
const defaultAnthropicMaxTokens = 4096

// anthropicProvider streams the Messages API with the official SDK.
type anthropicProvider struct {
	client anthropic.Client
	key    string
}

// NewAnthropic returns a Provider for the Anthropic Messages API at
// baseURL (empty: the SDK's default) with key; hc nil means
// http.DefaultClient. The SDK's own retries are off: the agent retries
// within its budget.
func NewAnthropic(baseURL, key string, hc *http.Client) Provider {
	opts := []option.RequestOption{option.WithAPIKey(key), option.WithMaxRetries(0)}
	if baseURL != "" {
		opts = append(opts, option.WithBaseURL(baseURL))
	}
	if hc != nil {
		opts = append(opts, option.WithHTTPClient(hc))
	}
	return &anthropicProvider{client: anthropic.NewClient(opts...), key: key}
}

// Stream implements Provider.
func (p *anthropicProvider) Stream(ctx context.Context, req Request, events chan<- Event) error {
	maxTokens := int64(req.MaxTokens)
	if maxTokens <= 0 {
		maxTokens = defaultAnthropicMaxTokens
	}
	params := anthropic.MessageNewParams{Model: req.Model, MaxTokens: maxTokens, Messages: anthropicMessages(req)}
	if req.System != "" {
		params.System = []anthropic.TextBlockParam{{Text: req.System}}
	}
	for _, t := range req.Tools {
		var schema struct {
			Properties any      `json:"properties"`
			Required   []string `json:"required"`
		}
		_ = json.Unmarshal(t.Parameters, &schema) // checked when offered
		tool := anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{Properties: schema.Properties, Required: schema.Required}, t.Name)
		if t.Description != "" {
			tool.OfTool.Description = anthropic.String(t.Description)
		}
		params.Tools = append(params.Tools, tool)
	}
	var opts []option.RequestOption
	if req.Temperature != nil {
		// Not a field of this SDK's MessageNewParams; the API takes it.
		opts = append(opts, option.WithJSONSet("temperature", *req.Temperature))
	}
	stream := p.client.Messages.NewStreaming(ctx, params, opts...)
	defer stream.Close() //nolint:errcheck // the body is read to its end or abandoned
	var calls toolCalls
	var usage Usage
	for stream.Next() {
		ev := stream.Current()
		out := Event{Alive: true}
		switch ev.Type {
		case "message_start":
			usage.InputTokens = ev.Message.Usage.InputTokens
			usage.OutputTokens = ev.Message.Usage.OutputTokens
		case "content_block_start":
			if ev.ContentBlock.Type == "tool_use" {
				calls.add(ev.Index, ev.ContentBlock.ID, ev.ContentBlock.Name, "")
			}
		case "content_block_delta":
			switch ev.Delta.Type {
			case "text_delta":
				out = Event{Text: ev.Delta.Text}
			case "input_json_delta":
				if calls.has(ev.Index) {
					calls.add(ev.Index, "", "", ev.Delta.PartialJSON)
				}
			}
		case "message_delta":
			// Its usage is cumulative.
			if ev.Usage.OutputTokens > 0 {
				usage.OutputTokens = ev.Usage.OutputTokens
			}
			if ev.Usage.InputTokens > 0 {
				usage.InputTokens = ev.Usage.InputTokens
			}
		}
		if !send(ctx, events, out) {
			return ctx.Err()
		}
	}
	return finish(ctx, events, p.error(stream.Err()), usage, &calls)
}

func (p *anthropicProvider) error(err error) error {
	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		return apiError(ProviderAnthropic, p.key, apiErr.StatusCode, apiErr.Response, apiErr.Message)
	}
	return err
}

// anthropicMessages maps the conversation: tool calls are tool_use blocks
// of the assistant's turn, their results tool_result blocks of the next
// user turn (the API merges consecutive turns of one role). An unfinished
// answer to continue is the last assistant turn (a prefill), without the
// trailing white space the API refuses there.
func anthropicMessages(req Request) []anthropic.MessageParam {
	var out []anthropic.MessageParam
	for i, m := range req.Messages {
		switch m.Role {
		case RoleUser:
			out = append(out, anthropic.NewUserMessage(anthropic.NewTextBlock(m.Text)))
		case RoleAssistant:
			text := m.Text
			if req.Continue && i == len(req.Messages)-1 {
				text = strings.TrimRight(text, " \t\r\n")
			}
			var blocks []anthropic.ContentBlockParamUnion
			if text != "" {
				blocks = append(blocks, anthropic.NewTextBlock(text))
			}
			for _, c := range m.ToolCalls {
				var input any = map[string]any{}
				_ = json.Unmarshal(c.Arguments, &input)
				blocks = append(blocks, anthropic.NewToolUseBlock(c.ID, input, c.Name))
			}
			if len(blocks) > 0 {
				out = append(out, anthropic.NewAssistantMessage(blocks...))
			}
		case RoleTool:
			var blocks []anthropic.ContentBlockParamUnion
			for _, r := range m.ToolResults {
				blocks = append(blocks, anthropic.NewToolResultBlock(r.CallID, r.Content, r.IsError))
			}
			out = append(out, anthropic.NewUserMessage(blocks...))
		}
	}
	return out
}
