// Package builtin holds the fabric's built-in tools: echo, add and sleep.
// They need nothing outside the process and make the whole tool path
// testable: routing, progress, cancellation, results.
package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/haipfabric/haipfabric/worker"
)

// maxSleep bounds the sleep tool.
const maxSleep = 10 * time.Minute

// Tools returns the built-in tools, fresh each call.
func Tools() []worker.Tool {
	return []worker.Tool{
		{
			Name:         "echo",
			Description:  "Returns its message.",
			ParamsSchema: json.RawMessage(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"],"additionalProperties":false}`),
			ResultSchema: json.RawMessage(`{"type":"object","properties":{"echoed":{"type":"string"}}}`),
			Handler:      worker.ToolHandlerFunc(echo),
		},
		{
			Name:         "add",
			Description:  "Adds two numbers.",
			ParamsSchema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"],"additionalProperties":false}`),
			ResultSchema: json.RawMessage(`{"type":"object","properties":{"result":{"type":"number"}}}`),
			Handler:      worker.ToolHandlerFunc(add),
		},
		{
			Name:         "sleep",
			Description:  "Counts down for ms milliseconds in steps, reporting progress; stops when cancelled.",
			ParamsSchema: json.RawMessage(`{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":600000},"steps":{"type":"integer","minimum":1,"maximum":100}},"required":["ms"],"additionalProperties":false}`),
			ResultSchema: json.RawMessage(`{"type":"object","properties":{"slept_ms":{"type":"integer"}}}`),
			Handler:      worker.ToolHandlerFunc(sleep),
		},
	}
}

// params decodes a call's params strictly: unknown fields are an error.
func params(call *worker.Call, v any) error {
	if len(call.Params) == 0 {
		return errors.New("params missing")
	}
	dec := json.NewDecoder(bytes.NewReader(call.Params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad params: %w", err)
	}
	return nil
}

func echo(_ context.Context, call *worker.Call) (any, error) {
	var p struct {
		Message *string `json:"message"`
	}
	if err := params(call, &p); err != nil {
		return nil, err
	}
	if p.Message == nil {
		return nil, errors.New("bad params: message is required")
	}
	return map[string]string{"echoed": *p.Message}, nil
}

func add(_ context.Context, call *worker.Call) (any, error) {
	var p struct {
		A *float64 `json:"a"`
		B *float64 `json:"b"`
	}
	if err := params(call, &p); err != nil {
		return nil, err
	}
	if p.A == nil || p.B == nil {
		return nil, errors.New("bad params: a and b are required numbers")
	}
	return map[string]float64{"result": *p.A + *p.B}, nil
}

func sleep(ctx context.Context, call *worker.Call) (any, error) {
	var p struct {
		MS    *int64 `json:"ms"`
		Steps int    `json:"steps"`
	}
	if err := params(call, &p); err != nil {
		return nil, err
	}
	if p.MS == nil || *p.MS < 0 || time.Duration(*p.MS)*time.Millisecond > maxSleep {
		return nil, fmt.Errorf("bad params: ms must be 0-%d", maxSleep.Milliseconds())
	}
	steps := p.Steps
	if steps <= 0 || steps > 100 {
		steps = 4
	}
	step := time.Duration(*p.MS) * time.Millisecond / time.Duration(steps)
	t := time.NewTimer(step)
	defer t.Stop()
	for i := 1; i <= steps; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		t.Reset(step)
		if i < steps {
			if err := call.Progress(ctx, float64(100*i/steps), map[string]int{"remaining_ms": int(*p.MS) * (steps - i) / steps}); err != nil {
				return nil, err
			}
		}
	}
	return map[string]int64{"slept_ms": *p.MS}, nil
}
