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

// Connect starts an MCP server command speaking MCP over stdio and
// returns the client session; closing it stops the command.
func Connect(ctx context.Context, c Command) (*mcp.ClientSession, error) {
	cmd := exec.Command(c.Path, c.Args...)
	// A nil Env would hand the server this process's whole environment.
	cmd.Env = append([]string{}, c.Env...)
	client := mcp.NewClient(&mcp.Implementation{Name: "haipfabric-toolworker", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot start MCP server %s: %w", c.Path, err)
	}
	return cs, nil
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
func Tools(ctx context.Context, cs *mcp.ClientSession, prefix string) ([]worker.Tool, error) {
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
			tool := worker.Tool{Name: name, Description: t.Description, Handler: forward(cs, t.Name)}
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

// forward calls the MCP tool. Its structured content is the result; a
// tool without one answers {"content": "<its text>"}. An MCP error
// result is an error with the tool's text.
func forward(cs *mcp.ClientSession, mcpName string) worker.ToolHandler {
	return worker.ToolHandlerFunc(func(ctx context.Context, call *worker.Call) (any, error) {
		var args map[string]any
		if len(call.Params) > 0 {
			if err := json.Unmarshal(call.Params, &args); err != nil {
				return nil, fmt.Errorf("params are not a JSON object: %w", err)
			}
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpName, Arguments: args})
		if err != nil {
			return nil, fmt.Errorf("MCP call failed: %w", err)
		}
		text := textOf(res.Content)
		if res.IsError {
			if text == "" {
				text = "the MCP tool reported an error"
			}
			return nil, errors.New(text)
		}
		if res.StructuredContent != nil {
			return res.StructuredContent, nil
		}
		return map[string]string{"content": text}, nil
	})
}

func textOf(content []mcp.Content) string {
	var parts []string
	for _, c := range content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	return strings.Join(parts, "\n")
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
