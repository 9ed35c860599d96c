package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
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
	// Slot is the session's place in its owner's list (newest first), and
	// TagSlots its place in the list of each of its tags (IndexBucket).
	Slot     uint64            `json:"slot,omitempty"`
	TagSlots map[string]uint64 `json:"tagSlots,omitempty"`
	// Deleted is when the session was deleted. The record stays, so that
	// the id is never opened again (by anyone); its log, runs and index
	// entries are gone.
	Deleted time.Time `json:"deleted,omitzero"`
}

// LastUpdate is Updated, or Created when the record never changed.
func (r SessionRecord) LastUpdate() time.Time {
	if r.Updated.IsZero() {
		return r.Created
	}
	return r.Updated
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

// Sessions is the session-record bucket and the index of each user's
// sessions (IndexBucket). Safe for concurrent use.
type Sessions struct {
	kv    jetstream.KeyValue
	index jetstream.KeyValue
	nc    *nats.Conn
	// maxPerOwner caps each owner's sessions (0: no cap); see WithLimit.
	maxPerOwner int
}

// WithLimit returns the same buckets with each owner's number of
// sessions (not deleted) capped at max; Create and Claim then refuse a
// new one past it with ErrSessionCap. Zero or less means no cap. The cap
// is soft: creations racing at the cap may pass it by as many as race.
func (s *Sessions) WithLimit(max int) *Sessions {
	c := *s
	c.maxPerOwner = max
	return &c
}

// ErrSessionCap is returned by Create and Claim for an owner at the cap
// (WithLimit).
var ErrSessionCap = errors.New("too many sessions")

// OpenSessions binds to the buckets made by Ensure.
func OpenSessions(ctx context.Context, js jetstream.JetStream) (*Sessions, error) {
	kv, err := js.KeyValue(ctx, SessionBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open sessions: bucket %s: %w", SessionBucket, err)
	}
	index, err := js.KeyValue(ctx, IndexBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open sessions: bucket %s: %w", IndexBucket, err)
	}
	return &Sessions{kv: kv, index: index, nc: js.Conn()}, nil
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
// does not exist yet (and listing it first in the owner's sessions).
// Creation is atomic: of two racing claims exactly one creates, and both
// return the same record. created reports which.
func (s *Sessions) Claim(ctx context.Context, id, owner string) (rec SessionRecord, created bool, err error) {
	return s.Create(ctx, SessionRecord{ID: id, Owner: owner})
}

// Create stores a new session record (ID, Owner and the labels of rec;
// Created is set now) unless one exists, and lists it first in the
// owner's sessions and in those of each of its tags. When the id is taken
// it returns the existing record with created false; the caller checks
// the owner.
func (s *Sessions) Create(ctx context.Context, rec SessionRecord) (SessionRecord, bool, error) {
	if err := ValidateSessionID(rec.ID); err != nil {
		return SessionRecord{}, false, err
	}
	if err := ValidateTags(rec.Tags); err != nil {
		return SessionRecord{}, false, err
	}
	for range 3 {
		existing, found, err := s.Get(ctx, rec.ID)
		if err != nil || found {
			return existing, false, err
		}
		if s.maxPerOwner > 0 {
			n, err := s.ownedCount(ctx, rec.Owner)
			if err != nil {
				return SessionRecord{}, false, err
			}
			if n >= uint64(s.maxPerOwner) {
				return SessionRecord{}, false, fmt.Errorf("%w: %d of at most %d", ErrSessionCap, n, s.maxPerOwner)
			}
		}
		// The index slot comes first: a record always has its slot. A
		// slot whose record lost the race (or was never written) is a
		// hole that listing skips: it checks each slot against its record.
		rec.Created, rec.Updated, rec.Deleted = time.Now().UTC(), time.Time{}, time.Time{}
		// The lists are secondary: a session whose slot could not be
		// taken (the list's counter contended past its attempts) opens
		// all the same, unlisted, rather than fail the caller.
		if rec.Slot, err = s.allocate(ctx, ownerList(rec.Owner), rec.ID); err != nil && ctx.Err() != nil {
			return SessionRecord{}, false, err
		}
		rec.TagSlots = nil
		if err := s.tagSlots(ctx, &rec, nil); err != nil && ctx.Err() != nil {
			return SessionRecord{}, false, err
		}
		val, err := json.Marshal(rec)
		if err != nil {
			return SessionRecord{}, false, err
		}
		_, err = s.kv.Create(ctx, rec.ID, val)
		if err == nil {
			s.countOwned(ctx, rec.Owner, 1)
			return rec, true, nil
		}
		s.dropSlots(ctx, rec)
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return SessionRecord{}, false, fmt.Errorf("cannot create session %s: %w", rec.ID, err)
		}
	}
	return SessionRecord{}, false, fmt.Errorf("cannot create session %s: %w", rec.ID, ErrConflictLimit)
}

// Update changes a session's record with fn (compare-and-set: fn may run
// again after a concurrent change) and sets Updated; fn cannot change the
// id, owner, creation time or list places. Tags fn adds are listed first
// in their tag's list; tags it removes leave it. A missing (or deleted)
// session is ErrSessionNotFound.
func (s *Sessions) Update(ctx context.Context, id string, fn func(*SessionRecord) error) (SessionRecord, error) {
	return s.modify(ctx, id, func(old SessionRecord, rec *SessionRecord) error {
		if err := fn(rec); err != nil {
			return err
		}
		if err := ValidateTags(rec.Tags); err != nil {
			return err
		}
		rec.ID, rec.Owner, rec.Created, rec.Slot, rec.TagSlots, rec.Deleted = old.ID, old.Owner, old.Created, old.Slot, old.TagSlots, old.Deleted
		rec.Updated = time.Now().UTC()
		return s.tagSlots(ctx, rec, old.Tags)
	})
}

// MarkDeleted records that a session is deleted and takes it out of its
// owner's lists. The record stays, so that nobody opens the id again. A
// missing (or already deleted) session is ErrSessionNotFound.
func (s *Sessions) MarkDeleted(ctx context.Context, id string) (SessionRecord, error) {
	return s.modify(ctx, id, func(_ SessionRecord, rec *SessionRecord) error {
		rec.Deleted = time.Now().UTC()
		rec.Tags = nil
		return nil
	})
}

// maxRecordAttempts bounds the compare-and-set attempts of one change.
const maxRecordAttempts = 8

// modify is the compare-and-set loop of a record change: fn edits a copy
// of the stored record (old). Once stored, list places the change left
// (tags removed; every place of a deleted session) are dropped.
func (s *Sessions) modify(ctx context.Context, id string, fn func(old SessionRecord, rec *SessionRecord) error) (SessionRecord, error) {
	if err := ValidateSessionID(id); err != nil {
		return SessionRecord{}, err
	}
	for range maxRecordAttempts {
		e, err := s.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return SessionRecord{}, fmt.Errorf("session %s: %w", id, ErrSessionNotFound)
		}
		if err != nil {
			return SessionRecord{}, fmt.Errorf("cannot read session %s: %w", id, err)
		}
		var old SessionRecord
		if err := json.Unmarshal(e.Value(), &old); err != nil {
			return SessionRecord{}, fmt.Errorf("cannot decode session %s: %w", id, err)
		}
		if !old.Deleted.IsZero() {
			return SessionRecord{}, fmt.Errorf("session %s: %w", id, ErrSessionNotFound)
		}
		rec := old
		rec.Tags = slices.Clone(old.Tags)
		rec.Metadata = maps.Clone(old.Metadata)
		rec.TagSlots = maps.Clone(old.TagSlots)
		if err := fn(old, &rec); err != nil {
			return SessionRecord{}, err
		}
		val, err := json.Marshal(rec)
		if err != nil {
			return SessionRecord{}, err
		}
		_, err = s.kv.Update(ctx, id, val, e.Revision())
		if err == nil {
			if !rec.Deleted.IsZero() {
				s.dropSlots(ctx, old)
				s.countOwned(ctx, old.Owner, -1)
			}
			for _, t := range old.Tags {
				if !slices.Contains(rec.Tags, t) {
					s.dropSlot(ctx, tagList(old.Owner, t), old.TagSlots[t])
				}
			}
			return rec, nil
		}
		if !isKVConflict(err) {
			return SessionRecord{}, fmt.Errorf("cannot update session %s: %w", id, err)
		}
	}
	return SessionRecord{}, fmt.Errorf("cannot update session %s: %w", id, ErrConflictLimit)
}

// Count returns how many session records exist (an estimate under churn).
func (s *Sessions) Count(ctx context.Context) (uint64, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot count sessions: %w", err)
	}
	return st.Values(), nil
}
