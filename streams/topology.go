package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults applied by Config.withDefaults; each is documented on its field.
const (
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMaxMsgSize      = 4 << 20
	DefaultRunMaxAge       = 24 * time.Hour
)

// Config sets the retention and replication of the topology.
type Config struct {
	// Replicas is the JetStream replication factor: 1 on a single box, 3 in
	// a cluster. Zero means 1.
	Replicas int
	// MaxAge drops session-log messages older than this. Zero keeps them
	// until MaxBytes forces them out.
	MaxAge time.Duration
	// MaxBytes caps the session-log stream; the oldest messages go first.
	// Zero means no cap.
	MaxBytes int64
	// DuplicateWindow is how long a message id is remembered, so that a
	// retried publish is stored once. Zero means DefaultDuplicateWindow.
	DuplicateWindow time.Duration
	// MaxMsgSize is the largest stored envelope in bytes. Zero means
	// DefaultMaxMsgSize.
	MaxMsgSize int32
}

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxMsgSize <= 0 {
		c.MaxMsgSize = DefaultMaxMsgSize
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = -1
	}
	return c
}

// Validate reports every bad field at once.
func (c Config) Validate() error {
	var errs []error
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: want 1-5", c.Replicas))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age %s: want >= 0", c.MaxAge))
	}
	if c.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("duplicate window %s: want >= 0", c.DuplicateWindow))
	}
	if c.MaxAge > 0 && c.DuplicateWindow > c.MaxAge {
		errs = append(errs, fmt.Errorf("duplicate window %s longer than max age %s", c.DuplicateWindow, c.MaxAge))
	}
	return errors.Join(errs...)
}

// SessionStreamConfig is the session-log stream: file storage, direct gets
// for seq lookups and catch-up, RePublish so that live connections
// follow a session with a core subscription instead of a consumer each,
// and atomic batch publish for Append's group commit.
func (c Config) SessionStreamConfig() jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        SessionStream,
		Description: "HAIP session logs: one subject per session and direction, dense Haip-Seq",
		Subjects:    []string{sessionPrefix + "*.*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		MaxMsgSize:  c.MaxMsgSize,
		Discard:     jetstream.DiscardOld,
		Duplicates:  c.DuplicateWindow,
		AllowDirect: true,
		// Append commits the messages queued on a session as one atomic
		// batch (streams/batch.go).
		AllowAtomicPublish: true,
		RePublish: &jetstream.RePublish{
			Source:      sessionPrefix + ">",
			Destination: livePrefix + ">",
		},
	}
}

// RunStreamConfig is the work queue of agent runs:
// haip.runs.<shard>.<user key>.<session>, and haip.runs.<session> for
// requests queued before the shards.
func (c Config) RunStreamConfig() jetstream.StreamConfig {
	return c.workQueue(RunStream, "HAIP agent run requests (work queue, one subject per shard of users, user and session)", runPrefix+"*.*.*", runPrefix+"*")
}

// ToolStreamConfig is the work queue of tool calls:
// haip.tools.<tool>.<shard>.<user key>, and haip.tools.<tool> for calls
// queued before the shards.
func (c Config) ToolStreamConfig() jetstream.StreamConfig {
	sc := c.workQueue(ToolStream, "HAIP tool calls (work queue, one subject per tool, shard of users and user)", toolPrefix+"*.*.*", toolPrefix+"*")
	sc.MaxConsumers = MaxToolConsumers
	return sc
}

// workQueue is a work-queue stream: each message is taken by one worker
// and leaves the stream when acknowledged.
func (c Config) workQueue(name, description string, subjects ...string) jetstream.StreamConfig {
	c = c.withDefaults()
	return jetstream.StreamConfig{
		Name:        name,
		Description: description,
		Subjects:    subjects,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      DefaultRunMaxAge,
		Duplicates:  c.DuplicateWindow,
		MaxMsgSize:  c.MaxMsgSize,
	}
}

// Ensure creates or updates every stream and bucket of the topology. It is
// idempotent and safe to run from every process at start.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("cannot ensure topology: %w", err)
	}
	cfg = cfg.withDefaults()
	for _, sc := range []jetstream.StreamConfig{cfg.SessionStreamConfig(), cfg.RunStreamConfig(), cfg.ToolStreamConfig()} {
		if err := ensureRetrying(ctx, func(ctx context.Context) error { _, err := js.CreateOrUpdateStream(ctx, sc); return err }); err != nil {
			return fmt.Errorf("cannot ensure stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range []jetstream.KeyValueConfig{
		{Bucket: SessionBucket, Description: "HAIP session records", History: 1, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Bucket: IndexBucket, Description: "HAIP session lists of each user (newest first)", History: 1, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Bucket: TailBucket, Description: "HAIP session log tails (highest seq)", History: 1, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Bucket: ToolBucket, Description: "HAIP tools with a live worker", History: 1, TTL: ToolTTL, Replicas: cfg.Replicas, Storage: jetstream.MemoryStorage},
		{Bucket: ApprovalBucket, Description: "HAIP approval requests (human in the loop)", History: 1, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Bucket: RunBucket, Description: "HAIP run states per session", History: 1, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Bucket: TicketBucket, Description: "HAIP browser tickets (single use)", History: 1, TTL: TicketTTL, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Bucket: CancelBucket, Description: "HAIP cancelled tool calls", History: 1, TTL: CancelTTL, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
	} {
		if err := ensureRetrying(ctx, func(ctx context.Context) error { _, err := js.CreateOrUpdateKeyValue(ctx, kc); return err }); err != nil {
			return fmt.Errorf("cannot ensure bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
}

// ensureAttempt bounds one create-or-update request. While a cluster is
// electing leaders (a restart), requests go unanswered; retrying short
// attempts gets through as soon as the leader is there, where one long
// request would wait out its whole deadline.
const ensureAttempt = 5 * time.Second

// ensureRetrying runs op with a short timeout per attempt until it
// succeeds, fails for another reason than one a starting cluster gives
// (clusterStarting), or ctx ends.
func ensureRetrying(ctx context.Context, op func(context.Context) error) error {
	var backoff Backoff
	for {
		actx, cancel := context.WithTimeout(ctx, ensureAttempt)
		err := op(actx)
		cancel()
		if err == nil || !clusterStarting(err) || ctx.Err() != nil {
			return err
		}
		if !backoff.Wait(ctx) {
			return err
		}
	}
}

// JetStream API errors a cluster gives while its nodes are still finding
// each other: incomplete results (10004), no suitable peers for placement
// because a peer is not seen online yet (10005), and the system
// temporarily unavailable (10008).
const (
	errCodeClusterIncomplete = 10004
	errCodeClusterNoPeers    = 10005
	errCodeClusterNotAvail   = 10008
)

// clusterStarting reports a failure that a starting (or restarting)
// cluster gives and that passes once its nodes see each other: a request
// unanswered, or one of the errors above. A cluster really too small for
// the replicas asked keeps answering 10005, and Ensure reports it when
// its ctx ends.
func clusterStarting(err error) bool {
	if isUncertain(err) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeClusterIncomplete, errCodeClusterNoPeers, errCodeClusterNotAvail:
		return true
	}
	return false
}

// WaitEnsured waits until Ensure has made the topology (a process started
// before any edge waits for one), retrying by the fabric's retry policy
// until ctx ends, and calls onWait, when set, with each failure before
// waiting. It returns nil once the topology is there, else the last
// failure wrapped with ctx's error.
func WaitEnsured(ctx context.Context, js jetstream.JetStream, onWait func(error)) error {
	var backoff Backoff
	for {
		_, err := js.Stream(ctx, RunStream)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil && onWait != nil {
			onWait(err)
		}
		if ctx.Err() != nil || !backoff.Wait(ctx) {
			return fmt.Errorf("cannot find stream %s: %w: %w", RunStream, ctx.Err(), err)
		}
	}
}
