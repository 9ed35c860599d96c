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

	statusNotFound = "404"
	statusEOB      = "204"
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
// nats.go exposes only single-message gets; batches need this by hand.
type directRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	LastFor  string `json:"last_by_subj,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// defaultRequestTimeout bounds a direct get when ctx has no deadline.
const defaultRequestTimeout = 5 * time.Second

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultRequestTimeout)
}

// directGet fetches one message: by stream seq, the next one on a subject at
// or after Seq, or the last one on a subject.
func directGet(ctx context.Context, nc *nats.Conn, stream string, req directRequest) (stored, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return stored{}, err
	}
	m, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, body)
	if err != nil {
		return stored{}, fmt.Errorf("direct get: %w", err)
	}
	return parseDirect(m)
}

func parseDirect(m *nats.Msg) (stored, error) {
	if st := m.Header.Get(hdrStatus); st != "" {
		if st == statusNotFound {
			return stored{}, errNotFound
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
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, fmt.Errorf("direct batch: subscribe: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // best effort: the inbox is unique
	// The server sends the whole batch at once; never drop part of it.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, 0, fmt.Errorf("direct batch: %w", err)
	}
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return nil, 0, fmt.Errorf("direct batch: publish: %w", err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
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
