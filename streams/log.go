package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors returned by Log lookups.
var (
	// ErrTooOld means the wanted seq was dropped by retention.
	ErrTooOld = errors.New("seq older than retention")
	// ErrBeyondEnd means the wanted seq has not been written yet.
	ErrBeyondEnd = errors.New("seq beyond the end of the log")
	// ErrConflictLimit means Append lost the compare-and-set race too often.
	ErrConflictLimit = errors.New("too many concurrent writers")
)

// Tunables of the Log; see their uses.
const (
	maxAppendAttempts  = 100
	tailFlushInterval  = 500 * time.Millisecond
	maxCachedPositions = 1 << 16
)

// Position locates one message of a session log: its dense Haip-Seq and
// its sequence in the stream. The zero Position is "before the first".
type Position struct {
	Seq       uint64
	StreamSeq uint64
}

// Entry is one stored message of a session log.
type Entry struct {
	Position
	// MsgID is the id the message was appended with (Record.ID), without
	// the session scope it is stored under (see Append).
	MsgID string
	// Type is the HAIP event type the writer declared (Haip-Type header),
	// so readers can filter without decoding Data.
	Type string
	// Channel is the HAIP channel (Haip-Channel header), for credit
	// accounting without decoding Data; empty on messages stored without it.
	Channel string
	// Data is the stored envelope (JSON).
	Data []byte
	// Bin is the binary frame that follows the envelope (an audio chunk
	// stored in two-frame form: the envelope carries bin_len), or nil.
	Bin []byte
}

// Record describes a message to Append.
type Record struct {
	// ID, when set, makes the append idempotent within the stream's
	// duplicate window for this session and direction (see Append).
	ID string
	// Type is stored in the Haip-Type header.
	Type string
	// Channel is stored in the Haip-Channel header.
	Channel string
	// Bin, when set, is stored after the body built by Append (see
	// Entry.Bin); its length goes in the Haip-Bin-Len header.
	Bin []byte
}

// Bounds are the retained range of a log. First.Seq > Last.Seq means the
// log holds nothing now; Last.Seq is still the highest seq ever written
// (remembered after retention emptied the log).
type Bounds struct {
	First Position
	Last  Position
}

// Empty reports whether no message is retained.
func (b Bounds) Empty() bool { return b.First.Seq > b.Last.Seq }

// Appended is the outcome of an Append.
type Appended struct {
	Position
	// Duplicate is true when a message with the same id was already stored;
	// Position is then the original's when it could be found.
	Duplicate bool
}

// Log reads and writes session logs with dense per-session sequence
// numbers. Each message carries its number in the Haip-Seq header; numbers
// are assigned by compare-and-set on the session subject
// (Nats-Expected-Last-Subject-Sequence), so any number of processes may
// write one session and still never share or skip a number.
//
// A Log is safe for concurrent use. Writers in one process are serialised
// per session (so they do not race each other's CAS) and committed in
// batches (group commit, see Append); writers in different processes race
// and retry. Close stops its background tail flusher and batch commits.
type Log struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	tails jetstream.KeyValue
	// stream is the session stream, for nats.go's single-message direct
	// gets; batches use directBatch.
	stream jetstream.Stream

	// batches queues the appends to each subject (batch.go); runCtx
	// bounds its commit goroutines and ends with Close. atomic is whether
	// queued appends are committed as atomic batches (useAtomicBatches).
	batches batcher
	atomic  bool
	runCtx  context.Context
	// beforeCommit, when set (tests), runs with a batch's messages after
	// all but its commit are published.
	beforeCommit func(msgs []*nats.Msg)

	// mu guards the maps below; it is never held with batches.mu.
	mu    sync.Mutex
	cache map[string]Position // subject -> last position this process saw
	dirty map[string]uint64   // tail key -> seq to remember

	// try bounds each request of a retried operation (attemptTimeout).
	try time.Duration

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// OpenLog binds to the topology made by Ensure and starts the tail flusher.
func OpenLog(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) (*Log, error) {
	tails, err := js.KeyValue(ctx, TailBucket)
	if err != nil {
		return nil, fmt.Errorf("cannot open log: bucket %s: %w", TailBucket, err)
	}
	stream, err := js.Stream(ctx, SessionStream)
	if err != nil {
		return nil, fmt.Errorf("cannot open log: stream %s: %w", SessionStream, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l := &Log{
		nc:     nc,
		js:     js,
		tails:  tails,
		stream: stream,
		batches: batcher{
			subjects: make(map[string]*subjectQueue),
			prefix:   nats.NewInbox()[len(nats.InboxPrefix):] + ".",
		},
		runCtx: runCtx,
		atomic: useAtomicBatches(stream.CachedInfo().Config),
		cache:  make(map[string]Position),
		dirty:  make(map[string]uint64),
		try:    attemptTimeout,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go l.flushLoop(runCtx)
	return l, nil
}

// Close stops the tail flusher after a last flush, bounded by ctx (by
// defaultRequestTimeout when ctx sets no deadline). Appends still queued
// for a batch fail; those in a batch in flight get its outcome, or an
// error if it is not known by then. It is idempotent.
func (l *Log) Close(ctx context.Context) error {
	l.once.Do(l.cancel)
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := l.closeBatches(ctx); err != nil {
		return err
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.flushTails(ctx)
}
