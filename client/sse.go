package client

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
)

// dialSSE opens GET /haip/sse?session=… as a browser EventSource does
// (a resume sends Last-Event-ID); the edge builds the HAI from the
// request. What the client sends goes by POST.
func dialSSE(ctx context.Context, o *Options) (*oneway, error) {
	u, err := endpointURL(o.URL, pathSSE)
	if err != nil {
		return nil, err
	}
	req, cancel, err := o.streamRequest(http.MethodGet, withQuery(u, "session", o.Session, "token", o.queryToken(), "conversation", o.Conversation), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if o.LastRxSeq != nil {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*o.LastRxSeq, 10))
	}
	t, resp, err := o.openOneway(ctx, req, cancel)
	if err != nil {
		return nil, err
	}
	rd := sse.NewReader(resp.Body, int(o.readLimit()))
	var closing *CloseError // the reader goroutine's
	rd.OnComment(func(text []byte) {
		if ce, ok := parseCloseComment(text); ok {
			closing = ce
		}
	})
	t.start(func() (frame, error) {
		ev, err := rd.Next()
		if err != nil {
			if closing != nil {
				closing.err = err
				return frame{}, closing
			}
			return frame{}, fmt.Errorf("event stream ended: %w", err)
		}
		return frame{data: ev.Data, eventID: ev.ID, hasEventID: ev.HasID}, nil
	}, decodeEvent)
	return t, nil
}

// decodeEvent decodes an SSE event's envelope; a log message's event id
// must be its seq (what Last-Event-ID resumes from).
func decodeEvent(f frame) (*haip.Envelope, error) {
	env, err := haip.Decode(f.data)
	if err != nil {
		return nil, fmt.Errorf("bad envelope in event %q: %w", f.eventID, err)
	}
	if f.hasEventID && !IsControl(env.Type) && f.eventID != strconv.FormatUint(uint64(env.Seq), 10) {
		return nil, fmt.Errorf("event id %q is not the seq %d of its envelope", f.eventID, env.Seq)
	}
	return env, nil
}
