package streams

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

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
