package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit. A session log takes one compare-and-set publish at a time
// (Nats-Expected-Last-Subject-Sequence), so a writer that waited one round
// trip per message could not go faster than the round trip. Appends to one
// subject from one Log queue up instead: the first publishes its message
// alone (no batch costs nothing when there is no queue), and those that
// arrive while a publish is in flight are committed together as one
// JetStream atomic batch (Nats-Batch-Id, Nats-Batch-Sequence,
// Nats-Batch-Commit; the stream has AllowAtomicPublish): one
// compare-and-set for all, on the first message, and the server stores all
// or none, consecutively. Dense seqs, message ids and conflicts with other
// writers work as for one message:
//
//   - a lost race (another process wrote the subject) re-reads the end and
//     sends the batch again with the new seqs (build is called again);
//   - the server refuses a whole batch when one of its message ids is a
//     duplicate (or one message is refused for any reason of its own): the
//     batch's messages are then appended one at a time, so each gets its
//     own answer (a duplicate its first position);
//   - an outcome unknown (a lost ack, a leader election) is told by the last
//     message of the subject: it carries the batch id it was stored with;
//   - a caller whose ctx ends while its message is queued leaves the queue;
//     one whose message is in a batch in flight gets ctx's error at once
//     (its message may be stored, as for one message), build is not called
//     for it again, and the batch goes on for the others.
//
// The batches of a subject are committed by one goroutine owned by the Log,
// started when a queue forms and ended when it is empty or the Log closes.
//
// Only on a replicated stream (useAtomicBatches). On a single-node (R1)
// file stream nats-server stages each atomic batch in a file store of its
// own, made, synced to disk and removed per batch: measured here, 7
// writers' batches of one session committed ~270 msg/s against ~19k msg/s
// for one compare-and-set publish per message. There the queued appends
// are published one by one (still one request at a time per subject).
// A replicated stream stages batches in memory and its Raft log makes
// them durable.

// useAtomicBatches reports whether Logs on a session stream of config cfg
// commit queued appends as atomic batches: when the stream allows them and
// is replicated (see above).
func useAtomicBatches(cfg jetstream.StreamConfig) bool {
	return cfg.AllowAtomicPublish && cfg.Replicas > 1
}

// Headers of JetStream's atomic batch publish.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// Limits of one batch: nats-server refuses batches of more than 1,000
// messages by default; a batch also stops growing at maxBatchBytes of
// bodies (a batch is one Raft proposal on a replicated stream).
const (
	maxBatchMsgs  = 256
	maxBatchBytes = 1 << 20
)

// JetStream errors about a batch rather than its messages: the batch was
// not stored and may be sent again.
const (
	errCodeBatchIncomplete      = 10176 // the server lost or timed out part of it
	errCodeBatchTooManyInflight = 10210 // too many open batches on the stream
)

// errLogClosed fails the appends still queued when the Log closes.
var errLogClosed = errors.New("log closed")

// pending is one Append waiting for, or in, a batch.
type pending struct {
	ctx     context.Context
	session string
	d       Direction
	subj    string
	rec     Record
	msgID   string
	build   func(seq uint64) ([]byte, error)
	done    chan appendResult // buffered: one result, never blocks

	// mu is held while build runs; abandoned is set under it when the
	// caller returned, after which build is not called again.
	mu        sync.Mutex
	abandoned bool
}

type appendResult struct {
	a   Appended
	err error
}

// deliver hands p's outcome to its caller. Each pending gets one.
func (p *pending) deliver(a Appended, err error) {
	select {
	case p.done <- appendResult{a, err}:
	default: // told already: never blocks a commit
	}
}

// fail delivers err, wrapped with p's subject.
func (p *pending) fail(err error) {
	p.deliver(Appended{}, fmt.Errorf("cannot append to %s: %w", p.subj, err))
}

// gone reports a caller that will not read its outcome (ctx ended).
func (p *pending) gone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.abandoned || p.ctx.Err() != nil
}

// abandon stops any further build for p, waiting for one running.
func (p *pending) abandon() {
	p.mu.Lock()
	p.abandoned = true
	p.mu.Unlock()
}

// message builds p's message with seq: body, Haip-* headers, binary tail.
// It fails with errAbandoned when p's caller returned.
func (p *pending) message(seq uint64) (*nats.Msg, error) {
	p.mu.Lock()
	if p.abandoned {
		p.mu.Unlock()
		return nil, errAbandoned
	}
	data, err := p.build(seq)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("cannot build message %d of %s: %w", seq, p.subj, err)
	}
	rec := p.rec
	msg := &nats.Msg{Subject: p.subj, Data: data, Header: nats.Header{}}
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
	return msg, nil
}

// errAbandoned is a build refused because its caller returned.
var errAbandoned = errors.New("append abandoned by its caller")

// batcher holds the append queues of a Log, one per subject written now.
type batcher struct {
	mu       sync.Mutex
	subjects map[string]*subjectQueue
	closed   bool
	wg       sync.WaitGroup // commit goroutines
	prefix   string         // batch ids: prefix + counter
	next     uint64
}

type subjectQueue struct {
	queue []*pending
	busy  bool // an append or a commit goroutine writes the subject
}

// batchID returns a batch id unique to this Log (at most 64 bytes, as the
// server requires).
func (b *batcher) batchID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	return b.prefix + strconv.FormatUint(b.next, 36)
}

// submit runs one Append: alone when its subject is idle, else queued for
// the subject's next batch.
func (l *Log) submit(p *pending) (Appended, error) {
	b := &l.batches
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return Appended{}, fmt.Errorf("cannot append to %s: %w", p.subj, errLogClosed)
	}
	q := b.subjects[p.subj]
	if q == nil {
		q = &subjectQueue{}
		b.subjects[p.subj] = q
	}
	if !q.busy {
		q.busy = true
		b.mu.Unlock()
		a, err := l.appendOne(p.ctx, p)
		l.handOver(p.subj, q)
		return a, err
	}
	q.queue = append(q.queue, p)
	b.mu.Unlock()
	select {
	case r := <-p.done:
		return r.a, r.err
	case <-p.ctx.Done():
	}
	b.mu.Lock()
	if i := slices.Index(q.queue, p); i >= 0 {
		q.queue = slices.Delete(q.queue, i, i+1)
		b.mu.Unlock()
		return Appended{}, fmt.Errorf("cannot append to %s: %w", p.subj, p.ctx.Err())
	}
	b.mu.Unlock()
	p.abandon()
	select {
	case r := <-p.done:
		return r.a, r.err
	default:
		return Appended{}, fmt.Errorf("cannot append to %s: outcome unknown: %w", p.subj, p.ctx.Err())
	}
}

// handOver ends a write of subj: the subject goes idle when nothing is
// queued, else a commit goroutine takes the queue.
func (l *Log) handOver(subj string, q *subjectQueue) {
	b := &l.batches
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(q.queue) == 0 {
		q.busy = false
		delete(b.subjects, subj)
		return
	}
	if b.closed {
		l.closeQueueLocked(subj, q)
		return
	}
	b.wg.Add(1)
	go l.commitLoop(subj, q)
}

// closeQueueLocked fails every append queued on q and drops it. b.mu held.
func (l *Log) closeQueueLocked(subj string, q *subjectQueue) {
	for _, p := range q.queue {
		p.fail(errLogClosed)
	}
	q.queue, q.busy = nil, false
	delete(l.batches.subjects, subj)
}

// closeBatches fails the queued appends and waits, within ctx, for the
// batches in flight.
func (l *Log) closeBatches(ctx context.Context) error {
	b := &l.batches
	b.mu.Lock()
	b.closed = true
	for subj, q := range b.subjects {
		if len(q.queue) > 0 {
			for _, p := range q.queue {
				p.fail(errLogClosed)
			}
			q.queue = nil
		}
		if !q.busy {
			delete(b.subjects, subj)
		}
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitLoop commits the queue of subj batch after batch until it is empty.
func (l *Log) commitLoop(subj string, q *subjectQueue) {
	defer l.batches.wg.Done()
	for {
		ps := l.take(subj, q)
		if len(ps) == 0 {
			return
		}
		l.commitBatch(ps)
	}
}

// take removes the next batch from q: up to maxBatchMsgs appends, stopping
// before a message id already in it (its second copy goes in the next
// batch, where the server tells it a duplicate). An empty q goes idle.
func (l *Log) take(subj string, q *subjectQueue) []*pending {
	b := &l.batches
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		l.closeQueueLocked(subj, q)
		return nil
	}
	if len(q.queue) == 0 {
		q.busy = false
		delete(b.subjects, subj)
		return nil
	}
	n, ids := 0, map[string]bool{}
	for _, p := range q.queue {
		if n == maxBatchMsgs || (p.msgID != "" && ids[p.msgID]) {
			break
		}
		if p.msgID != "" {
			ids[p.msgID] = true
		}
		n++
	}
	ps := slices.Clone(q.queue[:n])
	q.queue = slices.Delete(q.queue, 0, n)
	return ps
}

// requeue puts ps back at the head of subj's queue, for the next batch.
func (l *Log) requeue(subj string, ps []*pending) {
	b := &l.batches
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.subjects[subj]
	if q == nil || b.closed {
		for _, p := range ps {
			p.fail(errLogClosed)
		}
		return
	}
	q.queue = append(slices.Clone(ps), q.queue...)
}

// live drops from ps the appends whose callers left, telling those that
// may still read their outcome.
func live(ps []*pending) []*pending {
	return slices.DeleteFunc(ps, func(p *pending) bool {
		if !p.gone() {
			return false
		}
		p.fail(p.ctx.Err())
		return true
	})
}

// commitBatch stores ps (one subject) as one atomic batch, retrying lost
// races and transient failures, and delivers each its outcome.
func (l *Log) commitBatch(ps []*pending) {
	ctx := l.runCtx
	p0 := ps[0]
	subj, session, d := p0.subj, p0.session, p0.d
	failAll := func(err error) {
		for _, p := range ps {
			p.fail(err)
		}
	}
	if len(ps) == 1 || !l.atomic {
		for _, p := range ps {
			p.deliver(l.appendOne(p.ctx, p))
		}
		return
	}
	var backoff Backoff
	// sent maps the id of each batch whose outcome is unknown to its
	// members.
	sent := map[string][]*pending{}
	conflicts := 0
	pos, known := l.cached(subj)
	for {
		if len(sent) == 0 {
			// Nothing of ps can be stored: callers that left go.
			ps = live(ps)
		} else if !slices.ContainsFunc(ps, func(p *pending) bool { return !p.gone() }) {
			// Nobody waits for the unknown outcome: leave it to the next
			// append (a stale position only conflicts).
			failAll(errAbandoned)
			return
		}
		if len(ps) == 0 {
			return
		}
		if !known {
			actx, cancel := attempt(ctx, l.try)
			b, err := l.bounds(actx, session, d, subj)
			cancel()
			switch {
			case err == nil:
				pos, known = b.Last, true
			case isUncertain(err) && ctx.Err() == nil:
				if !backoff.Wait(ctx) {
					failAll(errLogClosed)
					return
				}
				continue
			default:
				failAll(err)
				return
			}
		}
		msgs, members, rest := buildBatch(pos, ps)
		if len(rest) > 0 {
			// Too many bytes for one batch: the rest goes in the next.
			l.requeue(subj, rest)
		}
		ps = members
		if len(ps) == 0 {
			continue
		}
		id := l.batches.batchID()
		lastSeq, err := l.publishBatch(ctx, id, pos.StreamSeq, msgs)
		if err == nil {
			l.storedBatch(ps, Position{Seq: pos.Seq + uint64(len(ps)), StreamSeq: lastSeq}, ps)
			return
		}
		var apiErr *jetstream.APIError
		switch {
		case isConflict(err):
			if conflicts++; conflicts >= maxAppendAttempts {
				failAll(ErrConflictLimit)
				return
			}
		case isUncertain(err) || isBatchRefused(err):
			if isUncertain(err) {
				sent[id] = slices.Clone(ps)
			}
			if !backoff.Wait(ctx) {
				failAll(errLogClosed)
				return
			}
		case len(sent) > 0:
			// Tell the unknown outcome below before anything else.
		case errors.As(err, &apiErr):
			// One of the messages is refused (a duplicate id, too large):
			// one at a time, each gets its own answer.
			for _, p := range ps {
				p.deliver(l.appendOne(p.ctx, p))
			}
			return
		default:
			failAll(err)
			return
		}
		// Lost the race, or do not know whether a batch landed: read the
		// real end of the log. If it is one of our batches, we are done.
		actx, cancel := attempt(ctx, l.try)
		e, batch, err := l.lastWithBatch(actx, subj)
		cancel()
		switch {
		case errors.Is(err, errNotFound):
			known = false
			continue
		case isUncertain(err):
			// Keep pos: the next CAS publish tells.
			if !backoff.Wait(ctx) {
				failAll(errLogClosed)
				return
			}
			continue
		case err != nil:
			failAll(err)
			return
		}
		if members, ok := sent[batch]; ok {
			// That batch was stored whole; e is its last message. Those of
			// its members that left since were told already.
			l.storedBatch(members, e.Position, ps)
			return
		}
		pos = e.Position
		clear(sent)
	}
}

// buildBatch builds the messages of ps from the seq after pos, up to
// maxBatchBytes of messages (at least one). It returns the messages, the
// appends they are for, and the appends left for the next batch. An
// append whose build fails, or whose caller left, gets its outcome here
// and is in neither.
func buildBatch(pos Position, ps []*pending) (msgs []*nats.Msg, members, rest []*pending) {
	size := 0
	for i, p := range ps {
		if len(members) > 0 && size >= maxBatchBytes {
			return msgs, members, ps[i:]
		}
		msg, err := p.message(pos.Seq + uint64(len(members)) + 1)
		if errors.Is(err, errAbandoned) {
			p.fail(err)
			continue
		}
		if err != nil {
			p.deliver(Appended{}, err)
			continue
		}
		if p.msgID != "" {
			msg.Header.Set(jetstream.MsgIDHeader, p.msgID)
		}
		size += len(msg.Data)
		msgs = append(msgs, msg)
		members = append(members, p)
	}
	return msgs, members, nil
}

// storedBatch delivers their positions to the members of a batch stored
// whole, whose last message is at last; only those in waiting are told
// (the others were told already).
func (l *Log) storedBatch(members []*pending, last Position, waiting []*pending) {
	n := uint64(len(members))
	for i, p := range members {
		if !slices.Contains(waiting, p) {
			continue
		}
		back := n - 1 - uint64(i)
		p.deliver(Appended{Position: Position{Seq: last.Seq - back, StreamSeq: last.StreamSeq - back}}, nil)
	}
	p := members[0]
	l.remember(p.subj, tailKey(p.session, p.d), last)
}

// isBatchRefused reports a batch the server did not store for a reason of
// the batch's own (part of it lost, too many open batches): it may be sent
// again.
func isBatchRefused(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == errCodeBatchIncomplete || apiErr.ErrorCode == errCodeBatchTooManyInflight
}

// batchAck is the server's answer to a batch's commit message.
type batchAck struct {
	Error    *jetstream.APIError `json:"error,omitempty"`
	Sequence uint64              `json:"seq"`
	Count    uint64              `json:"count"`
}

// publishBatch publishes msgs as one atomic batch with id id, the first
// expecting expect as the last stream seq of its subject, and returns the
// stream seq of the last. The messages before the commit are published
// without a reply (the server answers the commit, or refuses the batch
// there if one went missing); the commit is one request bounded by l.try.
func (l *Log) publishBatch(ctx context.Context, id string, expect uint64, msgs []*nats.Msg) (uint64, error) {
	n := len(msgs)
	for i, m := range msgs {
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
		}
		if i == n-1 {
			m.Header.Set(hdrBatchCommit, "1")
			break
		}
		if err := l.nc.PublishMsg(m); err != nil {
			return 0, fmt.Errorf("batch message %d: %w", i+1, err)
		}
	}
	if l.beforeCommit != nil {
		l.beforeCommit(msgs)
	}
	actx, cancel := attempt(ctx, l.try)
	defer cancel()
	resp, err := l.nc.RequestMsgWithContext(actx, msgs[n-1])
	if err != nil {
		return 0, fmt.Errorf("batch commit: %w", err)
	}
	return parseBatchAck(resp.Data, n)
}

// parseBatchAck reads the server's answer to the commit of a batch of n
// messages: the stream seq of its last message, or the server's error (a
// *jetstream.APIError), or an error for an answer that is not a whole
// batch's ack.
func parseBatchAck(data []byte, n int) (uint64, error) {
	var ack batchAck
	if err := json.Unmarshal(data, &ack); err != nil {
		return 0, fmt.Errorf("batch commit: bad ack %q: %w", truncate(string(data), 200), err)
	}
	if ack.Error != nil {
		return 0, fmt.Errorf("batch commit: %w", ack.Error)
	}
	if n <= 0 || ack.Count != uint64(n) || ack.Sequence < uint64(n) {
		return 0, fmt.Errorf("batch commit: ack for %d messages at %d, sent %d", ack.Count, ack.Sequence, n)
	}
	return ack.Sequence, nil
}

// lastWithBatch returns the last message of subj (errNotFound: none) and
// the id of the batch it was stored in ("" for a message stored alone).
func (l *Log) lastWithBatch(ctx context.Context, subj string) (Entry, string, error) {
	ctx, cancel := attempt(ctx, defaultRequestTimeout)
	defer cancel()
	m, err := l.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, "", errNotFound
	}
	if err != nil {
		return Entry{}, "", fmt.Errorf("direct get: %w", err)
	}
	e, err := toEntry(stored{Subject: m.Subject, StreamSeq: m.Sequence, Header: m.Header, Data: m.Data})
	return e, m.Header.Get(hdrBatchID), err
}
