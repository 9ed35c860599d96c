package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Header names the fabric sets on stored messages, and the ones JetStream
// adds to direct-get replies and republished messages.
const (
	// HeaderSeq carries a log message's dense per-session sequence number.
	HeaderSeq = "Haip-Seq"
	// HeaderType carries the HAIP event type of a log message.
	HeaderType = "Haip-Type"
	// HeaderChannel carries the HAIP channel of a log message.
	HeaderChannel = "Haip-Channel"
	// HeaderBinLen is the length of the binary frame stored after a log
	// message's envelope (two-frame audio), when there is one.
	HeaderBinLen = "Haip-Bin-Len"

	hdrStatus      = "Status"
	hdrDescription = "Description"
	hdrNatsSeq     = "Nats-Sequence"
	hdrNatsSubject = "Nats-Subject"
	hdrNumPending  = "Nats-Num-Pending"
	hdrMsgID       = "Nats-Msg-Id"
	hdrTimeStamp   = "Nats-Time-Stamp"

	statusNotFound     = "404"
	statusEOB          = "204"
	statusNoResponders = "503" // nobody serves the request (yet): transient
)

// errNotFound is a direct get that found no message.
var errNotFound = errors.New("message not found")

// stored is one message returned by a direct get.
type stored struct {
	Subject   string
	StreamSeq uint64
	Header    nats.Header
	Data      []byte
}

// directRequest is JetStream's direct-get request (JSApiMsgGetRequest).
// nats.go exposes only single-message gets (Log.get uses them); batches
// need this by hand.
type directRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
	// MultiLastFor asks for the last message of each of these subjects.
	MultiLastFor []string `json:"multi_last,omitempty"`
}

// defaultRequestTimeout bounds each direct get and pull request, and other
// requests when ctx has no deadline.
const defaultRequestTimeout = 5 * time.Second

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultRequestTimeout)
}

// parseDirect reads one message of a direct-get batch.
func parseDirect(m *nats.Msg) (stored, error) {
	if st := m.Header.Get(hdrStatus); st != "" {
		switch st {
		case statusNotFound:
			return stored{}, errNotFound
		case statusNoResponders:
			return stored{}, fmt.Errorf("direct get: %w", nats.ErrNoResponders)
		}
		return stored{}, fmt.Errorf("direct get: status %s %s", st, m.Header.Get(hdrDescription))
	}
	seq, err := strconv.ParseUint(m.Header.Get(hdrNatsSeq), 10, 64)
	if err != nil {
		return stored{}, fmt.Errorf("direct get: bad %s header: %w", hdrNatsSeq, err)
	}
	return stored{Subject: m.Header.Get(hdrNatsSubject), StreamSeq: seq, Header: m.Header, Data: m.Data}, nil
}

// directBatch fetches up to req.Batch messages (and about req.MaxBytes)
// starting at stream seq req.Seq on subject req.NextFor, in one request.
// pending is how many more matching messages the stream held after the
// last one returned, as the server saw it.
func directBatch(ctx context.Context, nc *nats.Conn, stream string, req directRequest) (msgs []stored, pending uint64, err error) {
	ctx, cancel := attempt(ctx, defaultRequestTimeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	sub, err := subscribeBatch(nc, req.Batch)
	if err != nil {
		return nil, 0, fmt.Errorf("direct batch: subscribe: %w", err)
	}
	defer sub.close()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, sub.inbox, body); err != nil {
		return nil, 0, fmt.Errorf("direct batch: publish: %w", err)
	}
	msgs = make([]stored, 0, min(req.Batch, 1024))
	for {
		m, err := sub.next(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("direct batch: %w", err)
		}
		switch m.Header.Get(hdrStatus) {
		case "":
		case statusEOB:
			pending, _ = strconv.ParseUint(m.Header.Get(hdrNumPending), 10, 64)
			return msgs, pending, nil
		case statusNotFound:
			if len(msgs) == 0 {
				return nil, 0, nil
			}
			return msgs, 0, nil
		case statusNoResponders:
			return nil, 0, fmt.Errorf("direct batch: %w", nats.ErrNoResponders)
		default:
			return nil, 0, fmt.Errorf("direct batch: status %s %s", m.Header.Get(hdrStatus), m.Header.Get(hdrDescription))
		}
		s, err := parseDirect(m)
		if err != nil {
			return nil, 0, err
		}
		msgs = append(msgs, s)
	}
}

// Statuses a pull request may end with.
const (
	statusNoMessages   = "404"
	statusLimitReached = "409"
)

// errPullFailed means a pull request could not be served as asked (the
// consumer is gone, or the next message alone is over max_bytes): the
// caller reads with a direct get instead.
var errPullFailed = errors.New("pull request not served")

// pullRequest is JetStream's pull request (JSApiConsumerGetNextRequest),
// always with no_wait: answer with what is stored now, never wait.
type pullRequest struct {
	Batch    int  `json:"batch"`
	MaxBytes int  `json:"max_bytes,omitempty"`
	NoWait   bool `json:"no_wait"`
}

// pullBatch fetches up to req.Batch messages (and at most req.MaxBytes,
// counted as the server counts them: subject, reply, headers and data) from
// a pull consumer with one no_wait request, and stops reading as soon as
// the batch is complete. pending is how many matching messages the
// consumer had left after the last one returned.
//
// Consumer deliveries carry the stored headers as they are (a direct get
// regenerates its Nats-* headers for every message) and their stream seq
// in the reply subject.
func pullBatch(ctx context.Context, nc *nats.Conn, stream, consumer string, req pullRequest) (msgs []stored, pending uint64, err error) {
	ctx, cancel := attempt(ctx, defaultRequestTimeout)
	defer cancel()
	req.NoWait = true
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	sub, err := subscribeBatch(nc, req.Batch)
	if err != nil {
		return nil, 0, fmt.Errorf("pull: subscribe: %w", err)
	}
	defer sub.close()
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+stream+"."+consumer, sub.inbox, body); err != nil {
		return nil, 0, fmt.Errorf("pull: publish: %w", err)
	}
	msgs = make([]stored, 0, min(req.Batch, 1024))
	left := req.MaxBytes
	for {
		m, err := sub.next(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("pull: %w", err)
		}
		if st := m.Header.Get(hdrStatus); st != "" && len(m.Data) == 0 {
			switch {
			case st == statusNoMessages:
				return msgs, 0, nil // the end of what is stored
			case st == statusLimitReached && len(msgs) > 0:
				return msgs, pending, nil // max_bytes reached
			}
			// 409 with nothing delivered (the next message alone is over
			// max_bytes, or the consumer was deleted), 503 (no consumer),
			// 408 (another request pending): let a direct get do it.
			return nil, 0, fmt.Errorf("%w: status %s %s", errPullFailed, st, m.Header.Get(hdrDescription))
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, 0, fmt.Errorf("pull: reply subject %q: %w", m.Reply, err)
		}
		msgs = append(msgs, stored{Subject: m.Subject, StreamSeq: md.Sequence.Stream, Header: m.Header, Data: m.Data})
		pending = md.NumPending
		left -= m.Size()
		// The server ends a request silently when its batch or its bytes
		// are used up exactly; at the end of the stream it sends a 404
		// that need not be waited for.
		if len(msgs) >= req.Batch || (req.MaxBytes > 0 && left <= 0) || pending == 0 {
			return msgs, pending, nil
		}
	}
}

// batchSub is the reply inbox of one batch request. Its channel holds a
// whole batch and the status that ends it, so nothing is dropped, and is
// sized for that batch: a synchronous subscription would allocate the
// client's default 64k-message queue (512 KiB) for every request.
type batchSub struct {
	inbox string
	sub   *nats.Subscription
	ch    chan *nats.Msg
}

// batchSlack covers the status messages that may follow a batch.
const batchSlack = 4

func subscribeBatch(nc *nats.Conn, batch int) (*batchSub, error) {
	b := &batchSub{inbox: nc.NewInbox(), ch: make(chan *nats.Msg, max(batch, 1)+batchSlack)}
	sub, err := nc.ChanSubscribe(b.inbox, b.ch)
	if err != nil {
		return nil, err
	}
	b.sub = sub
	return b, nil
}

func (b *batchSub) next(ctx context.Context) (*nats.Msg, error) {
	select {
	case m := <-b.ch:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *batchSub) close() { _ = b.sub.Unsubscribe() }
