package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SessionRecord is what the fabric knows about a session besides its log.
type SessionRecord struct {
	ID      string    `json:"id"`
	Owner   string    `json:"owner"`
	Created time.Time `json:"created"`
	// Updated is when the record last changed (name, tags, metadata) or a
	// run was started in the session; zero means Created.
	Updated time.Time `json:"updated,omitzero"`
	// Name and Tags are the owner's labels (sessions API).
	Name string   `json:"name,omitempty"`
	Tags []string `json:"tags,omitempty"`
	// Metadata is free JSON the owner sets, by top-level key. Keys the
	// fabric reads are listed at MetaModelConfig and MetaAgentSettings.
	Metadata map[string]json.RawMessage `json:"metadata,omitempty"`
}

// Metadata keys that agents read from a session's record.
const (
	// MetaModelConfig holds the session's model choice, as ModelConfig
	// ({"provider": "openai", "id": "gpt-4o-mini"}).
	MetaModelConfig = "modelConfig"
	// MetaAgentSettings holds per-session agent settings, as AgentSettings.
	MetaAgentSettings = "agentSettings"
)

// ModelConfig is a session's model choice (metadata key MetaModelConfig).
// Empty fields mean the agent's configured defaults.
type ModelConfig struct {
	Provider string `json:"provider,omitempty"`
	ID       string `json:"id,omitempty"`
}

// AgentSettings are per-session agent settings (metadata key
// MetaAgentSettings). Nil or empty fields mean the agent's defaults.
type AgentSettings struct {
	SystemPrompt  string   `json:"systemPrompt,omitempty"`
	Temperature   *float64 `json:"temperature,omitempty"`
	MaxTokens     int      `json:"maxTokens,omitempty"`
	ContextBudget int      `json:"contextBudget,omitempty"`
}

// Meta decodes the metadata value at key into v; found is false when the
// record has no such key. A value of the wrong shape is an error.
func (r SessionRecord) Meta(key string, v any) (found bool, err error) {
	raw, ok := r.Metadata[key]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("cannot decode session metadata %q: %w", key, err)
	}
	return true, nil
}

// Sessions is the session-record bucket. Safe for concurrent use.
type Sessions struct{ kv jetstream.KeyValue }

// OpenSessions binds to the bucket made by Ensure.
func OpenSessions(ctx context.Context, js jetstream.JetStream) (*Sessions, error) {
	kv, err := js.KeyValue(ctx, SessionBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open sessions: bucket %s: %w", SessionBucket, err)
	}
	return &Sessions{kv: kv}, nil
}

// Get returns a session's record; found is false when there is none.
func (s *Sessions) Get(ctx context.Context, id string) (rec SessionRecord, found bool, err error) {
	if err := ValidateSessionID(id); err != nil {
		return SessionRecord{}, false, err
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return SessionRecord{}, false, nil
	}
	if err != nil {
		return SessionRecord{}, false, fmt.Errorf("cannot read session %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return SessionRecord{}, false, fmt.Errorf("cannot decode session %s: %w", id, err)
	}
	return rec, true, nil
}

// Claim returns the record of session id, creating it with owner when it
// does not exist yet. Creation is atomic: of two racing claims exactly one
// creates, and both return the same record. created reports which.
func (s *Sessions) Claim(ctx context.Context, id, owner string) (rec SessionRecord, created bool, err error) {
	for range 3 {
		rec, found, err := s.Get(ctx, id)
		if err != nil || found {
			return rec, false, err
		}
		rec = SessionRecord{ID: id, Owner: owner, Created: time.Now().UTC()}
		val, err := json.Marshal(rec)
		if err != nil {
			return SessionRecord{}, false, err
		}
		_, err = s.kv.Create(ctx, id, val)
		if err == nil {
			return rec, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return SessionRecord{}, false, fmt.Errorf("cannot create session %s: %w", id, err)
		}
	}
	return SessionRecord{}, false, fmt.Errorf("cannot claim session %s: %w", id, ErrConflictLimit)
}

// Count returns how many session records exist (an estimate under churn).
func (s *Sessions) Count(ctx context.Context) (uint64, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot count sessions: %w", err)
	}
	return st.Values(), nil
}
