package edge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/sse"
	"github.com/haipfabric/haipfabric/streams"
)

// helloSource gives a one-way stream (SSE, or an HTTP stream whose body
// carried no HAI) its handshake, which the client cannot send on it:
//
//   - with ?session=, a HAI built from the request: the session, and
//     last_rx_seq from Last-Event-ID (a browser EventSource's own resume)
//     or ?last_rx_seq=;
//   - without, the HAI the same user POSTs next (as the official SDK does
//     right after connecting), received on the user's bind subject from
//     whichever edge took the POST.
//
// After that it has nothing more: read blocks until the stream ends.
type helloSource struct {
	hello []byte // built HAI, nil once used or when waiting to bind
	bind  *nats.Subscription
	msgs  chan *nats.Msg
	done  <-chan struct{} // the request's end
}

// newHelloSource reads the request. With bind, a request without
// ?session= waits for a POSTed HAI; without, it has no handshake of its
// own (its body must carry the HAI). It fails on a malformed
// Last-Event-ID or last_rx_seq (the caller answers 400).
func (s *Server) newHelloSource(r *http.Request, a admission, bind bool) (*helloSource, error) {
	h := &helloSource{done: r.Context().Done()}
	lastRx := ""
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		seq, ok, err := sse.ParseLastEventID(v)
		if err != nil {
			return nil, fmt.Errorf("Last-Event-ID: %w", err)
		}
		if ok {
			lastRx = strconv.FormatUint(seq, 10)
		}
	} else if v := r.URL.Query().Get("last_rx_seq"); v != "" {
		if _, err := haip.ParseU64(v); err != nil {
			return nil, fmt.Errorf("last_rx_seq: %w", err)
		}
		lastRx = v
	}
	if a.session != "" {
		env, err := haip.New(a.session, haip.ChannelSystem, haip.TypeHAI, haip.HelloPayload{
			HaipVersion: haip.Version, AcceptMajor: []int{haip.Major}, AcceptEvents: haip.AllTypes(), LastRxSeq: lastRx})
		if err != nil {
			return nil, err
		}
		if h.hello, err = haip.Encode(env); err != nil {
			return nil, err
		}
		return h, nil
	}
	if !bind {
		return h, nil
	}
	h.msgs = make(chan *nats.Msg, 1)
	sub, err := s.nc.ChanQueueSubscribe(streams.BindSubject(a.id.Subject), streams.BindQueue, h.msgs)
	if err != nil {
		return nil, fmt.Errorf("cannot wait for a HAI: %w", err)
	}
	h.bind = sub
	return h, nil
}

// next returns the HAI frame once, then blocks until ctx or the request
// ends.
func (h *helloSource) next(ctx context.Context) (frame, error) {
	if h.hello != nil {
		f := frame{data: h.hello}
		h.hello = nil
		return f, nil
	}
	if h.bind != nil {
		select {
		case m := <-h.msgs:
			_ = h.bind.Unsubscribe()
			h.bind = nil
			_ = m.Respond([]byte("bound"))
			return frame{data: m.Data}, nil
		case <-ctx.Done():
		case <-h.done:
		}
		h.stop()
		return frame{}, context.Canceled
	}
	select {
	case <-ctx.Done():
	case <-h.done:
	}
	return frame{}, context.Canceled
}

// stop releases the bind subscription, if still waiting.
func (h *helloSource) stop() {
	if h.bind != nil {
		_ = h.bind.Unsubscribe()
		h.bind = nil
	}
}

// bindHello hands a POSTed HAI to a waiting stream of the same user, on
// any edge. bound is false when no stream was waiting.
func (s *Server) bindHello(ctx context.Context, owner string, hai []byte) (bound bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	_, err = s.nc.RequestWithContext(ctx, streams.BindSubject(owner), hai)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil
	}
	return false, fmt.Errorf("cannot hand the HAI to a waiting stream: %w", err)
}
