package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// last returns the last message of subj (errNotFound: none), with one
// direct get.
func (l *Log) last(ctx context.Context, subj string) (Entry, error) {
	return l.get(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return l.stream.GetLastMsgForSubject(ctx, subj)
	})
}

// next returns the first message of subj at or after stream seq from
// (errNotFound: none), with one direct get.
func (l *Log) next(ctx context.Context, subj string, from uint64) (Entry, error) {
	return l.get(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return l.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subj))
	})
}

// get runs one of nats.go's single-message direct gets, bounded by
// defaultRequestTimeout whatever ctx allows (a request in flight when the
// connection drops is never answered), and parses its message.
func (l *Log) get(ctx context.Context, op func(context.Context) (*jetstream.RawStreamMsg, error)) (Entry, error) {
	ctx, cancel := attempt(ctx, defaultRequestTimeout)
	defer cancel()
	m, err := op(ctx)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, errNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("direct get: %w", err)
	}
	return toEntry(stored{Subject: m.Subject, StreamSeq: m.Sequence, Header: m.Header, Data: m.Data})
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
