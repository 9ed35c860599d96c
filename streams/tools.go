package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
)

// Tool calls travel on a work-queue stream, one subject per tool and
// shard of users, so each tool's workers share the tool's durable
// consumers (ToolConsumerConfigs) and scale on their own; live workers
// advertise their tools in a KV bucket whose entries expire.
const (
	// ToolStream is the work queue of tool calls.
	ToolStream = "HAIP_TOOLS"
	// ToolBucket is the registry of tools with a live worker.
	ToolBucket = "haip_tools"
	// ToolTTL is how long a tool stays registered without a worker
	// refreshing it.
	ToolTTL = 15 * time.Second
	// CancelBucket marks cancelled calls, for calls no worker holds yet.
	CancelBucket = "haip_tool_cancels"
	// CancelTTL is how long a cancellation is remembered.
	CancelTTL = time.Hour

	toolPrefix   = "haip.tools."
	cancelPrefix = "haip.toolcancel."
)

var callIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Call ids are chosen by clients, so a call is known by its session and
// its call id together: cancellation subjects, cancellation marks and the
// work queue's message ids all name both, and one session's call id never
// reaches another session's call.

// CancelSubject is the core-NATS subject on which the cancellation of a
// session's call reaches the worker running it; CancelWildcard matches
// every call's.
func CancelSubject(session, callID string) (string, error) {
	key, err := callKey(session, callID)
	if err != nil {
		return "", err
	}
	return cancelPrefix + key, nil
}

// CancelWildcard is the subject a worker subscribes to for cancellations.
const CancelWildcard = cancelPrefix + "*.*"

// CallFromCancelSubject returns the session and call id of a cancellation
// subject; ok is false for a subject of another form.
func CallFromCancelSubject(subj string) (session, callID string, ok bool) {
	rest, ok := strings.CutPrefix(subj, cancelPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ".")
}

// callKey names a session's call in subjects, KV keys and message ids:
// "<session>.<call id>". Neither part may hold a ".", so no two calls
// share one.
func callKey(session, callID string) (string, error) {
	if err := ValidateSessionID(session); err != nil {
		return "", err
	}
	if !callIDPattern.MatchString(callID) {
		return "", fmt.Errorf("invalid call id %q", truncate(callID, 64))
	}
	return session + "." + callID, nil
}

// ErrInvalidToolName is wrapped by every refusal of a tool name.
var ErrInvalidToolName = errors.New("invalid tool name")

var toolNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidateToolName admits 1–128 characters of [A-Za-z0-9_-]: tool names
// become subject tokens and KV keys.
func ValidateToolName(name string) error {
	if !toolNamePattern.MatchString(name) {
		return fmt.Errorf("%w %q: want 1-128 characters of [A-Za-z0-9_-]", ErrInvalidToolName, truncate(name, 64))
	}
	return nil
}

// ToolSubject is the work-queue subject of a tool's calls for user:
// haip.tools.<tool>.<shard>.<user key> (see UserShard, UserKey).
func ToolSubject(tool, user string) (string, error) {
	if err := ValidateToolName(tool); err != nil {
		return "", err
	}
	return toolPrefix + tool + "." + strconv.Itoa(UserShard(user)) + "." + UserKey(user), nil
}

// LegacyToolSubject is the subject a tool's calls were queued on before
// the tool queue was sharded (haip.tools.<tool>). Nothing publishes there
// any more; workers still take what an older edge queued there.
func LegacyToolSubject(tool string) (string, error) {
	if err := ValidateToolName(tool); err != nil {
		return "", err
	}
	return toolPrefix + tool, nil
}

// ToolCall is one call of a tool, as a worker receives it.
type ToolCall struct {
	CallID  string          `json:"call_id"`
	Tool    string          `json:"tool"`
	Params  json.RawMessage `json:"params,omitempty"`
	Session string          `json:"session"`
	RunID   string          `json:"run_id,omitempty"`
	Created time.Time       `json:"created"`
	// User is who made the call: the JWT subject of the TOOL_CALL's
	// sender, or the user of the run an agent calls it for. It picks the
	// call's shard of the queue (UserShard). Empty in calls queued before
	// it existed.
	User string `json:"user,omitempty"`
}

// Validate checks what a worker relies on.
func (c ToolCall) Validate() error {
	var errs []error
	if !callIDPattern.MatchString(c.CallID) {
		errs = append(errs, fmt.Errorf("invalid call_id %q: want 1-128 characters of [A-Za-z0-9_-]", truncate(c.CallID, 64)))
	}
	if err := ValidateToolName(c.Tool); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateSessionID(c.Session); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PublishToolCall queues a call in its user's shard. The session and
// call id make the message id, so a retried publish queues it once, and
// the same call id in another session is another call.
func PublishToolCall(ctx context.Context, js jetstream.JetStream, c ToolCall) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("cannot queue tool call: %w", err)
	}
	subj, _ := ToolSubject(c.Tool, c.User)
	key, _ := callKey(c.Session, c.CallID)
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := publishIdempotent(ctx, js, subj, data, "call."+key, attemptTimeout); err != nil {
		return fmt.Errorf("cannot queue tool call %s: %w", c.CallID, err)
	}
	return nil
}

// ToolDoneID is the envelope id of a session's call's TOOL_DONE, whoever
// writes it (the worker, or an edge refusing a call no worker serves): the
// log holds one TOOL_DONE per call even when a call runs twice.
func ToolDoneID(session, callID string) string { return CallEnvelopeID("tool-done", session, callID) }

// CallEnvelopeID is the id of an envelope the fabric writes about a
// session's call: the name-based uuid of kind, session, call id and any
// further parts (a step number). Ids derived from a client's call id name
// its session too, so that they are unique across sessions.
func CallEnvelopeID(kind, session, callID string, more ...string) string {
	return haip.NameUUID(append([]string{kind, session, callID}, more...)...)
}

// ToolInfo is a tool's registry entry.
type ToolInfo struct {
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	ParamsSchema json.RawMessage `json:"params_schema,omitempty"`
	ResultSchema json.RawMessage `json:"result_schema,omitempty"`
	// Worker names the process that last refreshed the entry.
	Worker  string    `json:"worker,omitempty"`
	Updated time.Time `json:"updated"`
}

// Tools is the registry of tools with a live worker, and of cancelled
// calls. Safe for concurrent use.
type Tools struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	cancels jetstream.KeyValue
}

// OpenTools binds to the buckets made by Ensure.
func OpenTools(ctx context.Context, js jetstream.JetStream) (*Tools, error) {
	kv, err := js.KeyValue(ctx, ToolBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open tool registry: %w", err)
	}
	cancels, err := js.KeyValue(ctx, CancelBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open tool cancellations: %w", err)
	}
	return &Tools{js: js, kv: kv, cancels: cancels}, nil
}

// Cancel marks a session's call cancelled (for a worker that has not
// taken it yet, or that misses the message) and tells the worker running
// it, if any. Only that session's call with that id is touched.
func (t *Tools) Cancel(ctx context.Context, session, callID, reason string) error {
	key, err := callKey(session, callID)
	if err != nil {
		return fmt.Errorf("cannot cancel call: %w", err)
	}
	if _, err := t.cancels.Put(ctx, key, []byte(reason)); err != nil {
		return fmt.Errorf("cannot cancel call %s: %w", key, err)
	}
	if err := t.js.Conn().Publish(cancelPrefix+key, []byte(reason)); err != nil {
		return fmt.Errorf("cannot cancel call %s: %w", key, err)
	}
	return nil
}

// Cancelled reports whether a session's call was cancelled, and why.
func (t *Tools) Cancelled(ctx context.Context, session, callID string) (reason string, cancelled bool, err error) {
	key, err := callKey(session, callID)
	if err != nil {
		return "", false, fmt.Errorf("cannot read cancellation: %w", err)
	}
	e, err := t.cancels.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("cannot read cancellation of %s: %w", key, err)
	}
	return string(e.Value()), true, nil
}

// List returns every tool with a live worker, by name.
func (t *Tools) List(ctx context.Context) ([]ToolInfo, error) {
	keys, err := t.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot list tools: %w", err)
	}
	var out []ToolInfo
	for k := range keys.Keys() {
		info, found, err := t.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Advertise records (or refreshes) a tool; it expires after ToolTTL.
func (t *Tools) Advertise(ctx context.Context, info ToolInfo) error {
	if err := ValidateToolName(info.Name); err != nil {
		return err
	}
	info.Updated = time.Now().UTC()
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if _, err := t.kv.Put(ctx, info.Name, data); err != nil {
		return fmt.Errorf("cannot advertise tool %s: %w", info.Name, err)
	}
	return nil
}

// Get returns a live tool's entry; found is false when no worker serves it.
func (t *Tools) Get(ctx context.Context, name string) (info ToolInfo, found bool, err error) {
	if err := ValidateToolName(name); err != nil {
		return ToolInfo{}, false, err
	}
	e, err := t.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ToolInfo{}, false, nil
	}
	if err != nil {
		return ToolInfo{}, false, fmt.Errorf("cannot read tool %s: %w", name, err)
	}
	if err := json.Unmarshal(e.Value(), &info); err != nil {
		return ToolInfo{}, false, fmt.Errorf("cannot decode tool %s: %w", name, err)
	}
	return info, true, nil
}
