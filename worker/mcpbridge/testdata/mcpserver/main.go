// Command mcpserver is a small MCP server over stdio, built by the
// mcpbridge and edge process tests with the official Go MCP SDK: "greet"
// greets, "env" returns the environment the server was started with,
// "slow" reports progress as it works, "picture" answers with an image,
// "crash" makes the server exit at once (as a server that dies would),
// and "args" returns the server's command-line arguments.
package main

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type greetIn struct {
	Name string `json:"name" jsonschema:"who to greet"`
}

type greetOut struct {
	Greeting string `json:"greeting"`
}

type envOut struct {
	Env []string `json:"env"`
}

type argsOut struct {
	Args []string `json:"args"`
}

type slowIn struct {
	Steps int `json:"steps" jsonschema:"how many steps of 50 ms"`
}

// pixel is a 1x1 PNG.
var pixel = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")

func main() {
	s := mcp.NewServer(&mcp.Implementation{Name: "test-mcp", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "greet", Description: "Greets someone."},
		func(_ context.Context, _ *mcp.CallToolRequest, in greetIn) (*mcp.CallToolResult, greetOut, error) {
			return nil, greetOut{Greeting: "Hello, " + in.Name}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "env", Description: "Returns the server's environment."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, envOut, error) {
			return nil, envOut{Env: os.Environ()}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "args", Description: "Returns the server's arguments."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, argsOut, error) {
			return nil, argsOut{Args: os.Args[1:]}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "slow", Description: "Works in steps, reporting progress."},
		func(ctx context.Context, req *mcp.CallToolRequest, in slowIn) (*mcp.CallToolResult, any, error) {
			for i := range in.Steps {
				if tok := req.Params.GetProgressToken(); tok != nil {
					_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok,
						Progress: float64(i), Total: float64(in.Steps), Message: "working"})
				}
				select {
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "picture", Description: "Answers with an image."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "a pixel"},
				&mcp.ImageContent{Data: pixel, MIMEType: "image/png"}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "crash", Description: "Exits the server."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			os.Exit(3)
			return nil, nil, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
