package main

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/haipfabric/haipfabric/worker/mcpbridge"
)

// MCP_ENV's default is mcpbridge.DefaultEnv, the one documented.
func TestMCPEnvDefault(t *testing.T) {
	t.Parallel()
	f, _ := reflect.TypeOf(config{}).FieldByName("MCPEnv")
	if got := f.Tag.Get("envDefault"); got != mcpbridge.DefaultEnv {
		t.Fatalf("MCP_ENV defaults to %q, want %q", got, mcpbridge.DefaultEnv)
	}
}

// A malformed MCP_ENV stops the worker before it starts anything.
func TestBadMCPEnvRefused(t *testing.T) {
	// Not parallel: it sets this process's environment.
	t.Setenv("MCP_COMMAND", "/nonexistent/mcp-server")
	t.Setenv("MCP_ENV", "PATH,NOT A NAME")
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	err := run(context.Background())
	if !errors.Is(err, mcpbridge.ErrBadEnv) || !strings.Contains(err.Error(), "MCP_ENV") {
		t.Fatalf("run: %v, want a bad MCP_ENV", err)
	}
}

// A malformed MCP_SERVERS, or a command line with an unterminated quote,
// stops the worker before it starts anything.
func TestBadMCPServersRefused(t *testing.T) {
	// Not parallel: it sets this process's environment.
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	for _, tc := range []struct{ name, value string }{
		{"MCP_SERVERS", `[{"name":"fs"}]`},
		{"MCP_SERVERS", `not json`},
		{"MCP_COMMAND", `server --dir "/unterminated`},
	} {
		t.Setenv("MCP_SERVERS", "")
		t.Setenv("MCP_COMMAND", "")
		t.Setenv(tc.name, tc.value)
		if err := run(context.Background()); !errors.Is(err, mcpbridge.ErrBadCommand) {
			t.Errorf("%s=%s: run: %v, want ErrBadCommand", tc.name, tc.value, err)
		}
	}
}
