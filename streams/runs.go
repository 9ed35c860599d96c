package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RunRequest asks an agent to answer one user turn. It travels on the run
// work queue and is taken by exactly one agent replica.
type RunRequest struct {
	RunID     string    `json:"run_id"`
	Session   string    `json:"session"`
	ThreadID  string    `json:"thread_id,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	Text      string    `json:"text"`
	Created   time.Time `json:"created"`
	// Kind is what started the run: RunKindText (a user's finished text
	// message, in Text) or RunKindAudio (an utterance of audio chunks,
	// MessageID, whose first chunk is at FromSeq of the inbound log).
	Kind string `json:"kind,omitempty"`
	// FromSeq is the inbound-log seq of the message that started the run.
	FromSeq uint64 `json:"from_seq,omitempty"`
	// User is who asked: the JWT subject of the message that started the
	// run. It picks the run's shard of the queue (UserShard), and the
	// run's tool calls travel under it too. Empty in requests queued
	// before it existed.
	User string `json:"user,omitempty"`
}

// Run kinds.
const (
	RunKindText  = "text"
	RunKindAudio = "audio"
)

// Validate checks the fields a worker relies on.
func (r RunRequest) Validate() error {
	var errs []error
	if r.RunID == "" {
		errs = append(errs, errors.New("run_id is empty"))
	}
	if err := ValidateSessionID(r.Session); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PublishRun queues a run request in its user's shard. The session and
// run id make the message id, so a retried publish queues the run once,
// and no run of one session can stand in for another's. (The edge derives
// run ids from the session already; the message id does not rely on that.)
func PublishRun(ctx context.Context, js jetstream.JetStream, r RunRequest) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("cannot queue run: %w", err)
	}
	subj, err := RunSubject(r.Session, r.User)
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := publishIdempotent(ctx, js, subj, data, "run."+r.Session+"."+r.RunID, attemptTimeout); err != nil {
		return fmt.Errorf("cannot queue run %s: %w", r.RunID, err)
	}
	return nil
}
