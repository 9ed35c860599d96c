// Package mcpbridge serves the tools of an MCP (Model Context Protocol)
// server as tools of the fabric: each MCP tool becomes a worker.Tool with
// the MCP tool's input and output schemas, and each call is forwarded with
// the official Go MCP SDK. cmd/toolworker uses it with MCP_COMMAND to
// bridge a stdio MCP server.
//
// An MCP server is code that users reach with their calls: it gets only
// the environment its Command names (see Environ), never the worker's own
// (its NATS credentials, JWT_SECRET and the like).
package mcpbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker"
)

// Command is an MCP server to start, speaking MCP over stdio.
type Command struct {
	// Path is the program (looked up in this process's PATH when it has
	// no slash).
	Path string
	// Args are its arguments.
	Args []string
	// Env is the server's entire environment, "NAME=value" each (Environ
	// builds it from a specification). Nothing of this process's
	// environment reaches the server unless it is listed here; empty
	// means an empty environment.
	Env []string
}

// Session is a client session to an MCP server. It routes the server's
// progress notifications to the calls that asked for them. Safe for
// concurrent use.
type Session struct {
	cs       *mcp.ClientSession
	mu       sync.Mutex
	progress map[string]*progressSink // progress token -> the call's sink
}

// progressSink turns one call's MCP progress into TOOL_UPDATEs, one at a
// time (worker.Call is for one goroutine at a time).
type progressSink struct {
	mu      sync.Mutex
	ctx     context.Context
	call    *worker.Call
	percent float64
}

// Open starts an MCP client session over transport.
func Open(ctx context.Context, transport mcp.Transport) (*Session, error) {
	s := &Session{progress: map[string]*progressSink{}}
	client := mcp.NewClient(&mcp.Implementation{Name: "haipfabric-toolworker", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) { s.onProgress(req.Params) },
	})
	cs, err := client.Connect(ctx, transport, nil)
	if err != nil {
		return nil, err
	}
	s.cs = cs
	return s, nil
}

// Connect starts an MCP server command speaking MCP over stdio and
// returns the client session; closing it stops the command.
func Connect(ctx context.Context, c Command) (*Session, error) {
	cmd := exec.Command(c.Path, c.Args...)
	// A nil Env would hand the server this process's whole environment.
	cmd.Env = append([]string{}, c.Env...)
	s, err := Open(ctx, &mcp.CommandTransport{Command: cmd})
	if err != nil {
		return nil, fmt.Errorf("cannot start MCP server %s: %w", c.Path, err)
	}
	return s, nil
}

// Close ends the session (and stops a command's process).
func (s *Session) Close() error { return s.cs.Close() }

// Wait blocks until the session ends: closed, or the server gone (its
// process exited, its pipe broke).
func (s *Session) Wait() error { return s.cs.Wait() }

// onProgress reports an MCP progress notification as the call's progress:
// a percentage when the server gives a total, and its message and raw
// figures as the update's partial.
func (s *Session) onProgress(p *mcp.ProgressNotificationParams) {
	if p == nil {
		return
	}
	s.mu.Lock()
	sink := s.progress[fmt.Sprint(p.ProgressToken)]
	s.mu.Unlock()
	if sink == nil {
		return
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if p.Total > 0 {
		sink.percent = min(max(100*p.Progress/p.Total, 0), 100)
	}
	partial := map[string]any{"progress": p.Progress}
	if p.Total > 0 {
		partial["total"] = p.Total
	}
	if p.Message != "" {
		partial["message"] = p.Message
	}
	_ = sink.call.Progress(sink.ctx, sink.percent, partial) // best effort: the result still comes
}

// DefaultEnv is the environment specification cmd/toolworker gives an
// MCP server when MCP_ENV is not set: PATH, so that a server started
// through a launcher (npx, uvx, a #!/usr/bin/env script) finds its
// interpreter, and HOME, where such launchers keep their caches.
const DefaultEnv = "PATH,HOME"

// NoEnv is the specification of an empty environment.
const NoEnv = "-"

// ErrBadEnv is wrapped by every refusal of an environment specification.
var ErrBadEnv = errors.New("bad environment specification")

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Environ builds an environment ("NAME=value" entries) from spec, a
// comma-separated list of entries: NAME passes this process's value of
// NAME (looked up with lookup; left out when unset), NAME=value sets NAME
// to value (which cannot hold a comma). Blanks around entries are
// ignored. NoEnv ("-") is the empty list. A malformed entry, or a name
// given twice, is an error wrapping ErrBadEnv that names every one.
func Environ(spec string, lookup func(name string) (string, bool)) ([]string, error) {
	if strings.TrimSpace(spec) == NoEnv {
		return []string{}, nil
	}
	env := []string{}
	seen := map[string]bool{}
	var errs []error
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, value, fixed := strings.Cut(entry, "=")
		switch {
		case !envNamePattern.MatchString(name):
			errs = append(errs, fmt.Errorf("%w: entry %q: want NAME or NAME=value, NAME of [A-Za-z_][A-Za-z0-9_]*", ErrBadEnv, entry))
			continue
		case seen[name]:
			errs = append(errs, fmt.Errorf("%w: %s named twice", ErrBadEnv, name))
			continue
		}
		seen[name] = true
		if !fixed {
			var ok bool
			if value, ok = lookup(name); !ok {
				continue
			}
		}
		env = append(env, name+"="+value)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return env, nil
}

// Tools lists the session's tools as fabric tools. Each name gets prefix
// in front, and characters a tool name may not hold ([A-Za-z0-9_-] only:
// names become subject tokens) become '_'. Two MCP tools that map to the
// same name are an error.
func Tools(ctx context.Context, s *Session, prefix string) ([]worker.Tool, error) {
	cs := s.cs
	var out []worker.Tool
	seen := map[string]string{}
	params := &mcp.ListToolsParams{}
	for {
		res, err := cs.ListTools(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("cannot list MCP tools: %w", err)
		}
		for _, t := range res.Tools {
			name := toolName(prefix + t.Name)
			if other, dup := seen[name]; dup {
				return nil, fmt.Errorf("MCP tools %q and %q both map to the tool name %q", other, t.Name, name)
			}
			seen[name] = t.Name
			if err := streams.ValidateToolName(name); err != nil {
				return nil, fmt.Errorf("MCP tool %q: %w", t.Name, err)
			}
			tool := worker.Tool{Name: name, Description: t.Description, Handler: forward(s, t.Name)}
			if t.InputSchema != nil {
				if tool.ParamsSchema, err = json.Marshal(t.InputSchema); err != nil {
					return nil, fmt.Errorf("MCP tool %q: input schema: %w", t.Name, err)
				}
			}
			if t.OutputSchema != nil {
				if tool.ResultSchema, err = json.Marshal(t.OutputSchema); err != nil {
					return nil, fmt.Errorf("MCP tool %q: output schema: %w", t.Name, err)
				}
			}
			out = append(out, tool)
		}
		if res.NextCursor == "" {
			return out, nil
		}
		params = &mcp.ListToolsParams{Cursor: res.NextCursor}
	}
}

// forward calls the MCP tool, asking for progress notifications (they
// become the call's TOOL_UPDATEs). Its structured content is the result; a
// tool without one answers {"content": "<its text>"}, with "attachments"
// for content that is not text (images and audio as base64 "data" with
// their "mimeType", resource links, embedded resources). An MCP error
// result is an error with the tool's text.
func forward(s *Session, mcpName string) worker.ToolHandler {
	return worker.ToolHandlerFunc(func(ctx context.Context, call *worker.Call) (any, error) {
		var args map[string]any
		if len(call.Params) > 0 {
			if err := json.Unmarshal(call.Params, &args); err != nil {
				return nil, fmt.Errorf("params are not a JSON object: %w", err)
			}
		}
		params := &mcp.CallToolParams{Name: mcpName, Arguments: args}
		token := call.Session + "." + call.CallID
		params.SetProgressToken(token)
		s.mu.Lock()
		s.progress[token] = &progressSink{ctx: ctx, call: call}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.progress, token)
			s.mu.Unlock()
		}()
		res, err := s.cs.CallTool(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("MCP call failed: %w", err)
		}
		text, attachments := contentOf(res.Content)
		if res.IsError {
			if text == "" {
				text = "the MCP tool reported an error"
			}
			return nil, errors.New(text)
		}
		if res.StructuredContent != nil {
			return res.StructuredContent, nil
		}
		out := map[string]any{"content": text}
		if len(attachments) > 0 {
			out["attachments"] = attachments
		}
		return out, nil
	})
}

// Attachment is content of an MCP result that is not text, as the
// result's "attachments" carry it to the client.
type Attachment struct {
	// Type is "image", "audio", "resource_link" or "resource".
	Type     string `json:"type"`
	MIMEType string `json:"mimeType,omitempty"`
	// Data is the bytes (base64 in JSON) of an image, audio or blob resource.
	Data []byte `json:"data,omitempty"`
	// URI, Name and Text describe a resource.
	URI  string `json:"uri,omitempty"`
	Name string `json:"name,omitempty"`
	Text string `json:"text,omitempty"`
}

// contentOf splits an MCP result's content into its text (the text parts,
// a line each) and the rest.
func contentOf(content []mcp.Content) (string, []Attachment) {
	var parts []string
	var att []Attachment
	for _, c := range content {
		switch c := c.(type) {
		case *mcp.TextContent:
			parts = append(parts, c.Text)
		case *mcp.ImageContent:
			att = append(att, Attachment{Type: "image", MIMEType: c.MIMEType, Data: c.Data})
		case *mcp.AudioContent:
			att = append(att, Attachment{Type: "audio", MIMEType: c.MIMEType, Data: c.Data})
		case *mcp.ResourceLink:
			att = append(att, Attachment{Type: "resource_link", MIMEType: c.MIMEType, URI: c.URI, Name: c.Name})
		case *mcp.EmbeddedResource:
			if r := c.Resource; r != nil {
				att = append(att, Attachment{Type: "resource", MIMEType: r.MIMEType, URI: r.URI, Text: r.Text, Data: r.Blob})
			}
		}
	}
	return strings.Join(parts, "\n"), att
}

func toolName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 128 {
		b = b[:128]
	}
	return string(b)
}
