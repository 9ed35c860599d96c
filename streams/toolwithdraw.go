package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Withdraw removes a tool from the registry at once, when worker is the
// one that last advertised it: a worker whose tool can no longer be served
// (its MCP server died) takes it out of the lists before its entry would
// expire. Another worker's entry, or one refreshed meanwhile, stays.
func (t *Tools) Withdraw(ctx context.Context, name, worker string) error {
	if err := ValidateToolName(name); err != nil {
		return err
	}
	e, err := t.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot withdraw tool %s: %w", name, err)
	}
	var info ToolInfo
	if json.Unmarshal(e.Value(), &info) != nil || info.Worker != worker {
		return nil
	}
	err = t.kv.Delete(ctx, name, jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil // refreshed meanwhile
		}
		return fmt.Errorf("cannot withdraw tool %s: %w", name, err)
	}
	return nil
}
