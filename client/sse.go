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
	req, cancel, err := o.streamRequest(http.MethodGet, withQuery(u, "session", o.Session, "token", o.queryToken()), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if o.LastRxSeq != nil {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*o.LastRxSeq, 10))
	}
	resp, err := o.open(ctx, req, cancel)
	if err != nil {
		return nil, err
	}
	p, err := o.poster()
	if err != nil {
		cancel()
		_ = resp.Body.Close()
		return nil, err
	}
	t := newOneway(o.Session, p, resp, cancel)
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
		env, err := haip.Decode(ev.Data)
		if err != nil {
			return frame{}, fmt.Errorf("bad envelope in event %q: %w", ev.ID, err)
		}
		if ev.HasID && !IsControl(env.Type) && ev.ID != strconv.FormatUint(uint64(env.Seq), 10) {
			return frame{}, fmt.Errorf("event id %q is not the seq %d of its envelope", ev.ID, env.Seq)
		}
		return frame{env: env}, nil
	})
	return t, nil
}
