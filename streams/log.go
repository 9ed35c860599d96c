package streams

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/haip"
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
	writeLockStripes   = 256
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
// per session (so they do not race each other's CAS); writers in different
// processes race and retry. Close stops its background tail flusher.
type Log struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	tails jetstream.KeyValue
	seed  maphash.Seed

	locks [writeLockStripes]sync.Mutex

	// mu guards the maps below. Lock order: a stripe lock, then mu.
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
	runCtx, cancel := context.WithCancel(context.Background())
	l := &Log{
		nc:     nc,
		js:     js,
		tails:  tails,
		seed:   maphash.MakeSeed(),
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
// defaultRequestTimeout when ctx sets no deadline). It is idempotent.
func (l *Log) Close(ctx context.Context) error {
	l.once.Do(l.cancel)
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.flushTails(ctx)
}

// Append stores one message at the end of a session log and returns the
// seq it got. build is called with the seq the message will carry (again
// after a lost race) and returns the message body, so the body may embed
// its own seq. A record with an ID is idempotent within the stream's
// duplicate window: a retried Append with the same id returns the first
// one's position with Duplicate set.
//
// Every session shares one stream, whose de-duplication is by message id
// across the whole stream; ids are chosen by clients. So the id is stored
// scoped to its session and direction (logMsgID): the same id in another
// session, or in the other direction of this one, is another message.
func (l *Log) Append(ctx context.Context, session string, d Direction, rec Record, build func(seq uint64) ([]byte, error)) (Appended, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return Appended{}, err
	}
	var msgID string
	if rec.ID != "" {
		msgID = logMsgID(session, d, rec.ID)
	}
	stripe := &l.locks[maphash.String(l.seed, subj)%writeLockStripes]
	stripe.Lock()
	defer stripe.Unlock()
	fail := func(err error) (Appended, error) { return Appended{}, fmt.Errorf("cannot append to %s: %w", subj, err) }

	// Transient failures (no stream leader during an election, a timeout)
	// are retried with backoff for as long as ctx allows: a CAS publish
	// with a stale position is safe, it only conflicts. Lost races are
	// bounded by maxAppendAttempts. Each request is bounded by
	// attemptTimeout on its own: a publish whose ack was lost with a dying
	// stream leader must not use up all of ctx.
	backoff := minRetryBackoff
	pos, ok := l.cached(subj)
	for !ok {
		actx, cancel := attempt(ctx, l.try)
		b, err := l.bounds(actx, session, d, subj)
		cancel()
		switch {
		case err == nil:
			pos, ok = b.Last, true
		case isUncertain(err) && ctx.Err() == nil:
			if !sleepBackoff(ctx, &backoff) {
				return fail(ctx.Err())
			}
		default:
			return fail(err)
		}
	}
	conflicts, uncertain := 0, false
	for {
		seq := pos.Seq + 1
		data, err := build(seq)
		if err != nil {
			return Appended{}, fmt.Errorf("cannot build message %d of %s: %w", seq, subj, err)
		}
		msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
		msg.Header.Set(HeaderSeq, strconv.FormatUint(seq, 10))
		if rec.Type != "" {
			msg.Header.Set(HeaderType, rec.Type)
		}
		if rec.Channel != "" {
			msg.Header.Set(HeaderChannel, rec.Channel)
		}
		if rec.Bin != nil {
			msg.Header.Set(HeaderBinLen, strconv.Itoa(len(rec.Bin)))
			msg.Data = append(data[:len(data):len(data)], rec.Bin...)
		}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(pos.StreamSeq)}
		if msgID != "" {
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		actx, cancel := attempt(ctx, l.try)
		ack, pubErr := l.js.PublishMsg(actx, msg, opts...)
		cancel()
		if pubErr == nil {
			if ack.Duplicate {
				actx, cancel := attempt(ctx, l.try)
				a := l.duplicate(actx, ack.Sequence)
				cancel()
				// After an uncertain try in this call, the stored copy is
				// most likely that try's: not a resend by the caller.
				a.Duplicate = !uncertain
				return a, nil
			}
			pos = Position{Seq: seq, StreamSeq: ack.Sequence}
			l.remember(subj, tailKey(session, d), pos)
			return Appended{Position: pos}, nil
		}
		switch {
		case ctx.Err() != nil:
			return fail(ctx.Err())
		case isConflict(pubErr):
			if conflicts++; conflicts >= maxAppendAttempts {
				return fail(ErrConflictLimit)
			}
		case isUncertain(pubErr):
			uncertain = true
			if !sleepBackoff(ctx, &backoff) {
				return fail(ctx.Err())
			}
		default:
			return fail(pubErr)
		}
		// Lost the race, or do not know whether the publish landed: read
		// the real end of the log. If it is our message, we are done.
		actx, cancel = attempt(ctx, l.try)
		last, err := l.last(actx, subj)
		cancel()
		switch {
		case errors.Is(err, errNotFound):
			actx, cancel := attempt(ctx, l.try)
			b, err := l.bounds(actx, session, d, subj)
			cancel()
			if err == nil {
				pos = b.Last
				continue
			}
			if !isUncertain(err) {
				return fail(err)
			}
			if !sleepBackoff(ctx, &backoff) {
				return fail(ctx.Err())
			}
			continue
		case isUncertain(err):
			// Keep pos: the next CAS publish tells.
			if !sleepBackoff(ctx, &backoff) {
				return fail(ctx.Err())
			}
			continue
		case err != nil:
			return fail(err)
		}
		pos = last.Position
		if msgID != "" && last.MsgID == rec.ID {
			l.remember(subj, tailKey(session, d), pos)
			// After a conflict the message was stored by an earlier call (a
			// duplicate); after an uncertain publish, by this one.
			return Appended{Position: pos, Duplicate: isConflict(pubErr) && !uncertain}, nil
		}
	}
}

// logMsgID is the Nats-Msg-Id under which a message with id id is stored
// in the log of session in direction d: "<session>.<direction>.<id>".
// Session ids and directions hold no ".", so no two (session, direction,
// id) share one.
func logMsgID(session string, d Direction, id string) string {
	return session + "." + string(d) + "." + id
}

// recordID is the id a message was appended with, from its stored
// Nats-Msg-Id and the subject it was read on: a log subject or its live
// subject, both ending in "<session>.<direction>". Messages stored before
// ids were scoped carry the bare id, which is returned as it is.
func recordID(msgID, subj string) string {
	i := strings.LastIndexByte(subj, '.')
	if i <= 0 {
		return msgID
	}
	j := strings.LastIndexByte(subj[:i], '.')
	return strings.TrimPrefix(msgID, subj[j+1:]+".")
}

// Backoff between retries of transient failures.
const (
	minRetryBackoff = 20 * time.Millisecond
	maxRetryBackoff = time.Second
)

// attemptTimeout bounds one request of a retried operation.
const attemptTimeout = defaultRequestTimeout

// attempt bounds one request by try, within ctx.
func attempt(ctx context.Context, try time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, try)
}

// sleepBackoff waits *d (or until ctx ends: false) and doubles *d.
func sleepBackoff(ctx context.Context, d *time.Duration) bool {
	t := time.NewTimer(*d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	*d = min(2*(*d), maxRetryBackoff)
	return true
}

// AppendEnvelope appends a HAIP envelope: its id is the message id, its
// type the Haip-Type header, and its seq field is set to the seq it gets
// (env is modified). Ack is not stored: it belongs to one connection.
func (l *Log) AppendEnvelope(ctx context.Context, session string, d Direction, env *haip.Envelope) (Appended, error) {
	return l.AppendBinary(ctx, session, d, env, nil)
}

// AppendBinary is AppendEnvelope for an envelope followed by a binary
// frame (two-frame mode, HAIP §8): bin_len is set to len(bin) and the
// bytes are stored with the envelope (Entry.Bin). A nil bin stores the
// envelope alone.
func (l *Log) AppendBinary(ctx context.Context, session string, d Direction, env *haip.Envelope, bin []byte) (Appended, error) {
	env.Ack = nil
	if bin != nil {
		n := int64(len(bin))
		env.BinLen = &n
		if env.BinMime == "" && env.Type == haip.TypeAudioChunk {
			// In two-frame mode bin_mime duplicates the chunk's mime (§8).
			var p haip.AudioChunkPayload
			if env.DecodePayload(&p) == nil {
				env.BinMime = p.Mime
			}
		}
	}
	rec := Record{ID: env.ID, Type: string(env.Type), Channel: string(env.Channel), Bin: bin}
	return l.Append(ctx, session, d, rec, func(seq uint64) ([]byte, error) {
		env.Seq = haip.U64(seq)
		return haip.Encode(env)
	})
}

// duplicate resolves the position of an already-stored message.
func (l *Log) duplicate(ctx context.Context, streamSeq uint64) Appended {
	m, err := directGet(ctx, l.nc, SessionStream, directRequest{Seq: streamSeq})
	if err != nil {
		return Appended{Position: Position{StreamSeq: streamSeq}, Duplicate: true}
	}
	e, _ := toEntry(m)
	return Appended{Position: e.Position, Duplicate: true}
}

// Bounds returns the retained range of a session log.
func (l *Log) Bounds(ctx context.Context, session string, d Direction) (Bounds, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return Bounds{}, err
	}
	return l.bounds(ctx, session, d, subj)
}

func (l *Log) bounds(ctx context.Context, session string, d Direction, subj string) (Bounds, error) {
	last, err := l.last(ctx, subj)
	if errors.Is(err, errNotFound) {
		// Empty: new, or emptied by retention. The tail bucket remembers.
		t, err := l.tail(ctx, tailKey(session, d))
		if err != nil {
			return Bounds{}, err
		}
		return Bounds{First: Position{Seq: t + 1}, Last: Position{Seq: t}}, nil
	}
	if err != nil {
		return Bounds{}, err
	}
	first, err := l.next(ctx, subj, 1)
	if errors.Is(err, errNotFound) {
		// Dropped between the two gets.
		first = Entry{Position: Position{Seq: last.Seq + 1}}
	} else if err != nil {
		return Bounds{}, err
	}
	return Bounds{First: first.Position, Last: last.Position}, nil
}

// Find returns the position of message seq. It answers ErrTooOld when
// retention dropped it and ErrBeyondEnd when it was never written. It costs
// O(log n) direct gets: an interpolation search on stream sequence, with a
// bisection every other probe so that an uneven spread cannot degrade it.
func (l *Log) Find(ctx context.Context, session string, d Direction, seq uint64) (Position, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return Position{}, err
	}
	b, err := l.bounds(ctx, session, d, subj)
	if err != nil {
		return Position{}, err
	}
	return l.find(ctx, subj, b, seq)
}

func (l *Log) find(ctx context.Context, subj string, b Bounds, seq uint64) (Position, error) {
	switch {
	case seq > b.Last.Seq:
		return Position{}, fmt.Errorf("seq %d (last is %d): %w", seq, b.Last.Seq, ErrBeyondEnd)
	case seq < b.First.Seq:
		return Position{}, fmt.Errorf("seq %d (first retained is %d): %w", seq, b.First.Seq, ErrTooOld)
	case seq == b.First.Seq:
		return b.First, nil
	case seq == b.Last.Seq:
		return b.Last, nil
	}
	lo, hi := b.First, b.Last
	// Messages with Seq in (lo.Seq, hi.Seq) have StreamSeq in [a, z].
	a, z := lo.StreamSeq+1, hi.StreamSeq-1
	for probe := 0; a <= z; probe++ {
		guess := a + (z-a)/2
		if probe%2 == 0 {
			guess = interpolate(lo, hi, seq)
			guess = max(a, min(z, guess))
		}
		e, err := l.next(ctx, subj, guess)
		if errors.Is(err, errNotFound) || (err == nil && e.StreamSeq > z) {
			z = guess - 1 // nothing of ours in [guess, z]
			continue
		}
		if err != nil {
			return Position{}, err
		}
		switch {
		case e.Seq == seq:
			return e.Position, nil
		case e.Seq < seq:
			lo, a = e.Position, e.StreamSeq+1
		default:
			hi, z = e.Position, guess-1
		}
	}
	// Dense numbering makes this unreachable unless messages were removed
	// from the middle of the log by hand.
	return Position{}, fmt.Errorf("seq %d of %s missing between stream seqs %d and %d: %w", seq, subj, lo.StreamSeq, hi.StreamSeq, ErrTooOld)
}

// interpolate guesses the stream seq of seq between lo and hi, assuming
// the session's messages are spread evenly among other sessions'.
func interpolate(lo, hi Position, seq uint64) uint64 {
	span := hi.StreamSeq - lo.StreamSeq
	h, l := bits.Mul64(seq-lo.Seq, span)
	q, _ := bits.Div64(h%(hi.Seq-lo.Seq), l, hi.Seq-lo.Seq)
	if h >= hi.Seq-lo.Seq {
		return hi.StreamSeq
	}
	return lo.StreamSeq + q
}

// Read returns up to max messages (and about maxBytes) of a session log
// starting at stream seq from, in one request. more reports whether the
// log held further messages when the server answered.
func (l *Log) Read(ctx context.Context, session string, d Direction, from uint64, max, maxBytes int) (entries []Entry, more bool, err error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return nil, false, err
	}
	msgs, pending, err := directBatch(ctx, l.nc, SessionStream, directRequest{Seq: max64(from, 1), NextFor: subj, Batch: max, MaxBytes: maxBytes})
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s from %d: %w", subj, from, err)
	}
	if entries, err = toEntries(msgs, subj); err != nil {
		return nil, false, err
	}
	return entries, pending > 0, nil
}

// DefaultConsumerThreshold is ReaderOptions.ConsumerThreshold's default:
// a catch-up with more than this many messages left switches from direct
// gets to a pull consumer.
const DefaultConsumerThreshold = 2048

// readerInactive is how long a Reader's consumer outlives its last request
// if the Reader is never closed (a crashed edge): the server deletes it.
const readerInactive = time.Minute

// ReaderOptions tune a Reader.
type ReaderOptions struct {
	// ConsumerThreshold: when a read finds more than this many messages
	// left, the Reader creates a pull consumer for the rest. Zero means
	// DefaultConsumerThreshold; negative, never.
	ConsumerThreshold int
}

// Reader reads one session log forward in bounded batches: a catch-up.
// Each Read returns at most the asked number of messages and about the
// asked bytes, fetched with one request, exactly as Log.Read does; nothing
// is read ahead.
//
// Reads start with batched direct gets. When one finds a long backlog
// (ReaderOptions.ConsumerThreshold), the Reader creates an ephemeral pull
// consumer (no acks, memory storage) on the session subject, starting after
// that batch, and later Reads that continue where the last one ended are
// served by it with one no_wait pull request each: the server sends stored
// headers as they are instead of regenerating six headers per message, and
// reads about twice as fast. A Read from anywhere else (the caller went
// back, e.g. to a message that waited for credit), or any failure of the
// consumer, drops the consumer and goes back to direct gets for good.
//
// A Reader is for one goroutine's Reads; Close may be called from any
// goroutine, also during a Read, and deletes the consumer.
type Reader struct {
	l         *Log
	subj      string
	threshold int

	mu         sync.Mutex
	consumer   string // "" when none
	next       uint64 // stream seq the consumer delivers next
	noConsumer bool   // direct gets only from now on
	closed     bool
}

// NewReader returns a Reader of a session log. Close it when the catch-up
// ends.
func (l *Log) NewReader(session string, d Direction, opts ReaderOptions) (*Reader, error) {
	subj, err := LogSubject(session, d)
	if err != nil {
		return nil, err
	}
	t := opts.ConsumerThreshold
	if t == 0 {
		t = DefaultConsumerThreshold
	}
	return &Reader{l: l, subj: subj, threshold: t, noConsumer: t < 0}, nil
}

// UsesConsumer reports whether the next Read that continues the last one
// will be served by a consumer.
func (r *Reader) UsesConsumer() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.consumer != ""
}

// Read returns up to max messages (and about maxBytes) of the log from
// stream seq from, like Log.Read.
func (r *Reader) Read(ctx context.Context, from uint64, max, maxBytes int) (entries []Entry, more bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, fmt.Errorf("cannot read %s: reader closed", r.subj)
	}
	from = max64(from, 1)
	if r.consumer != "" {
		if from == r.next {
			entries, more, err := r.pull(ctx, max, maxBytes)
			if err == nil {
				return entries, more, nil
			}
			if ctx.Err() != nil {
				return nil, false, fmt.Errorf("cannot read %s from %d: %w", r.subj, from, err)
			}
		}
		// Elsewhere, or the consumer failed: direct gets from now on.
		r.dropConsumer(ctx)
		r.noConsumer = true
	}
	msgs, pending, err := directBatch(ctx, r.l.nc, SessionStream, directRequest{Seq: from, NextFor: r.subj, Batch: max, MaxBytes: maxBytes})
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s from %d: %w", r.subj, from, err)
	}
	if entries, err = toEntries(msgs, r.subj); err != nil {
		return nil, false, err
	}
	if !r.noConsumer && len(entries) > 0 && pending > uint64(r.threshold) {
		r.startConsumer(ctx, entries[len(entries)-1].StreamSeq+1)
	}
	return entries, pending > 0, nil
}

// pull serves a Read from the consumer.
func (r *Reader) pull(ctx context.Context, max, maxBytes int) ([]Entry, bool, error) {
	msgs, pending, err := pullBatch(ctx, r.l.nc, SessionStream, r.consumer, pullRequest{Batch: max, MaxBytes: maxBytes})
	if err != nil {
		return nil, false, fmt.Errorf("cannot read %s with consumer %s: %w", r.subj, r.consumer, err)
	}
	entries, err := toEntries(msgs, r.subj)
	if err != nil {
		return nil, false, err
	}
	if len(entries) > 0 {
		r.next = entries[len(entries)-1].StreamSeq + 1
	}
	return entries, pending > 0, nil
}

// startConsumer creates the pull consumer; on failure (e.g. the stream's
// consumer limit) the Reader stays with direct gets.
func (r *Reader) startConsumer(ctx context.Context, start uint64) {
	c, err := r.l.js.CreateConsumer(ctx, SessionStream, jetstream.ConsumerConfig{
		FilterSubject:     r.subj,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: readerInactive,
	})
	if err != nil {
		r.noConsumer = true
		return
	}
	r.consumer, r.next = c.CachedInfo().Name, start
}

// dropConsumer deletes the consumer, best effort: an undeleted one goes
// after readerInactive.
func (r *Reader) dropConsumer(ctx context.Context) {
	if r.consumer == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultRequestTimeout)
	defer cancel()
	_ = r.l.js.DeleteConsumer(ctx, SessionStream, r.consumer)
	r.consumer = ""
}

// Close deletes the Reader's consumer, if any. Reads after Close fail. It
// is idempotent.
func (r *Reader) Close(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.dropConsumer(ctx)
}

// toEntries parses a batch of stored messages of subj.
func toEntries(msgs []stored, subj string) ([]Entry, error) {
	entries := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := toEntry(m)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", subj, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func (l *Log) last(ctx context.Context, subj string) (Entry, error) {
	m, err := directGet(ctx, l.nc, SessionStream, directRequest{LastFor: subj})
	if err != nil {
		return Entry{}, err
	}
	return toEntry(m)
}

func (l *Log) next(ctx context.Context, subj string, from uint64) (Entry, error) {
	m, err := directGet(ctx, l.nc, SessionStream, directRequest{Seq: from, NextFor: subj})
	if err != nil {
		return Entry{}, err
	}
	return toEntry(m)
}

// ParseEntry reads a message republished on a live subject (or any message
// that carries Haip-Seq and Nats-Sequence headers) as an Entry.
func ParseEntry(m *nats.Msg) (Entry, error) {
	ss, err := strconv.ParseUint(m.Header.Get(hdrNatsSeq), 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("bad %s header: %w", hdrNatsSeq, err)
	}
	return toEntry(stored{Subject: m.Subject, StreamSeq: ss, Header: m.Header, Data: m.Data})
}

func toEntry(m stored) (Entry, error) {
	seq, err := strconv.ParseUint(m.Header.Get(HeaderSeq), 10, 64)
	if err != nil {
		return Entry{}, fmt.Errorf("message %d has no valid %s header: %w", m.StreamSeq, HeaderSeq, err)
	}
	e := Entry{Position: Position{Seq: seq, StreamSeq: m.StreamSeq}, MsgID: recordID(m.Header.Get(hdrMsgID), m.Subject),
		Type: m.Header.Get(HeaderType), Channel: m.Header.Get(HeaderChannel), Data: m.Data}
	if h := m.Header.Get(HeaderBinLen); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 || n > len(m.Data) {
			return Entry{}, fmt.Errorf("message %d has a bad %s header %q", m.StreamSeq, HeaderBinLen, h)
		}
		cut := len(m.Data) - n
		e.Data, e.Bin = m.Data[:cut:cut], m.Data[cut:]
	}
	return e, nil
}

func (l *Log) cached(subj string) (Position, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.cache[subj]
	return p, ok
}

func (l *Log) remember(subj, key string, p Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.cache) >= maxCachedPositions {
		// Forget an arbitrary half; a miss costs one direct get.
		n := 0
		for k := range l.cache {
			delete(l.cache, k)
			if n++; n >= maxCachedPositions/2 {
				break
			}
		}
	}
	l.cache[subj] = p
	l.dirty[key] = p.Seq
}

func (l *Log) tail(ctx context.Context, key string) (uint64, error) {
	e, err := l.tails.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read tail %s: %w", key, err)
	}
	v, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad tail %s: %w", key, err)
	}
	return v, nil
}

func (l *Log) flushLoop(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(tailFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout)
			_ = l.flushTails(fctx) // retried at the next tick: entries stay dirty
			cancel()
		}
	}
}

// flushTails records the highest seq of every log written since the last
// flush. It only ever raises a tail, so racing writers cannot lower it.
func (l *Log) flushTails(ctx context.Context) error {
	l.mu.Lock()
	batch := l.dirty
	l.dirty = make(map[string]uint64, len(batch))
	l.mu.Unlock()
	var errs []error
	for key, seq := range batch {
		if err := l.raiseTail(ctx, key, seq); err != nil {
			errs = append(errs, err)
			l.mu.Lock()
			if l.dirty[key] < seq {
				l.dirty[key] = seq
			}
			l.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (l *Log) raiseTail(ctx context.Context, key string, seq uint64) error {
	val := []byte(strconv.FormatUint(seq, 10))
	for range 5 {
		e, err := l.tails.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err = l.tails.Create(ctx, key, val); err == nil {
				return nil
			}
		case err != nil:
			return fmt.Errorf("cannot read tail %s: %w", key, err)
		default:
			if cur, perr := strconv.ParseUint(string(e.Value()), 10, 64); perr == nil && cur >= seq {
				return nil
			}
			if _, err = l.tails.Update(ctx, key, val, e.Revision()); err == nil {
				return nil
			}
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !isConflict(err) {
			return fmt.Errorf("cannot write tail %s: %w", key, err)
		}
	}
	return fmt.Errorf("cannot write tail %s: %w", key, ErrConflictLimit)
}

// isConflict reports a lost compare-and-set: 10071 on R1 streams, 10164 on
// replicated ones.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// IsTransient reports a failure that may pass on its own: JetStream did
// not answer in time or nobody served the request (a stream leader
// election, a NATS reconnection). Worth retrying with backoff.
func IsTransient(err error) bool { return isUncertain(err) }

// isUncertain reports a publish whose outcome is unknown: it may have been
// stored.
func isUncertain(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}
