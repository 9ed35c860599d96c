package edge

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/streams"
)

// hub fans the republished live messages of a session log out to the
// connections of this edge that follow it: one core subscription per
// (session, direction) per edge, whatever the number of connections.
// Listeners must not block: they run on the subscription's goroutine.
type hub struct {
	nc *nats.Conn

	mu   sync.Mutex
	subs map[string]*hubSub // live subject -> subscription
}

type hubSub struct {
	sub       *nats.Subscription
	listeners map[*conn]func(streams.Entry)
}

func newHub(nc *nats.Conn) *hub {
	return &hub{nc: nc, subs: make(map[string]*hubSub)}
}

// follow registers fn for every message stored on the session log from
// now on, and returns the function that stops it.
func (h *hub) follow(session string, d streams.Direction, c *conn, fn func(streams.Entry)) (stop func(), err error) {
	subj, err := streams.LiveSubject(session, d)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hs, ok := h.subs[subj]
	if !ok {
		hs = &hubSub{listeners: make(map[*conn]func(streams.Entry))}
		hs.sub, err = h.nc.Subscribe(subj, func(m *nats.Msg) { h.dispatch(subj, m) })
		if err != nil {
			return nil, fmt.Errorf("cannot follow %s: %w", subj, err)
		}
		// Listeners only enqueue; a backlog here means the process is
		// starved, and the gap check in each connection repairs drops.
		if err := hs.sub.SetPendingLimits(-1, 64<<20); err != nil {
			_ = hs.sub.Unsubscribe()
			return nil, fmt.Errorf("cannot follow %s: %w", subj, err)
		}
		h.subs[subj] = hs
	}
	hs.listeners[c] = fn
	return func() { h.unfollow(subj, c) }, nil
}

func (h *hub) unfollow(subj string, c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs, ok := h.subs[subj]
	if !ok {
		return
	}
	delete(hs.listeners, c)
	if len(hs.listeners) == 0 {
		_ = hs.sub.Unsubscribe()
		delete(h.subs, subj)
	}
}

func (h *hub) dispatch(subj string, m *nats.Msg) {
	e, err := streams.ParseEntry(m)
	if err != nil {
		return // not a log message; nothing to deliver
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hs, ok := h.subs[subj]
	if !ok {
		return
	}
	for _, fn := range hs.listeners {
		fn(e)
	}
}
