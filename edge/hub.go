package edge

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/streams"
)

// hubQueue is how many live messages, of every session together, may
// wait for the hub's dispatcher. The nats client drops what does not fit
// (a slow consumer: the process is starved); the dispatcher then sends
// the followers of every subscription that lost a message back to
// catch-up, so the log repairs the drop. 64 Ki pointers are 512 KiB per
// edge, whatever the number of connections.
const hubQueue = 64 << 10

// hub fans the republished live messages of a session log out to the
// connections of this edge that follow it: one core subscription per
// (session, direction) per edge, whatever the number of connections.
//
// The subscriptions are channel subscriptions into one queue read by one
// dispatcher goroutine, not callback subscriptions: the nats client runs
// a goroutine per callback subscription, which with one session per
// connection was a goroutine (and its stack) per idle connection. One
// dispatcher also keeps each subject's messages in order. It runs while
// at least one subscription exists and is stopped by the unfollow that
// removes the last one.
type hub struct {
	nc   *nats.Conn
	msgs chan *nats.Msg // every subscription's messages, in arrival order

	mu   sync.Mutex
	subs map[string]*hubSub // live subject -> subscription
	// quit stops the running dispatcher (nil: none runs); done is closed
	// when the last dispatcher started has returned.
	quit chan struct{}
	done chan struct{}
}

type hubSub struct {
	sub       *nats.Subscription
	listeners map[*conn]struct{}
	dropped   int // the subscription's drops already repaired
}

func newHub(nc *nats.Conn) *hub {
	done := make(chan struct{})
	close(done)
	return &hub{nc: nc, msgs: make(chan *nats.Msg, hubQueue), subs: make(map[string]*hubSub), done: done}
}

// follow makes c receive every message stored on the session log from
// now on (onLive, or onOverflow when some were lost), and returns the
// function that stops it. Neither may block: they run on the dispatcher.
func (h *hub) follow(session string, d streams.Direction, c *conn) (stop func(), err error) {
	subj, err := streams.LiveSubject(session, d)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hs, ok := h.subs[subj]
	if !ok {
		sub, err := h.nc.ChanSubscribe(subj, h.msgs)
		if err != nil {
			return nil, fmt.Errorf("cannot follow %s: %w", subj, err)
		}
		hs = &hubSub{sub: sub, listeners: make(map[*conn]struct{}, 1)}
		h.subs[subj] = hs
		if h.quit == nil {
			h.startLocked()
		}
	}
	hs.listeners[c] = struct{}{}
	return func() { h.unfollow(subj, c) }, nil
}

// startLocked starts a dispatcher. It begins reading only after the one
// before it has returned, so that two never take from the queue at once.
func (h *hub) startLocked() {
	quit, done, prev := make(chan struct{}), make(chan struct{}), h.done
	h.quit, h.done = quit, done
	go func() {
		defer close(done)
		<-prev
		h.run(quit)
	}()
}

func (h *hub) unfollow(subj string, c *conn) {
	h.mu.Lock()
	hs, ok := h.subs[subj]
	if !ok {
		h.mu.Unlock()
		return
	}
	delete(hs.listeners, c)
	if len(hs.listeners) > 0 {
		h.mu.Unlock()
		return
	}
	_ = hs.sub.Unsubscribe()
	delete(h.subs, subj)
	if len(h.subs) > 0 || h.quit == nil {
		h.mu.Unlock()
		return
	}
	close(h.quit)
	h.quit = nil
	done := h.done
	h.mu.Unlock()
	<-done // the dispatcher takes h.mu: wait without it
}

// run dispatches queued messages until quit is closed.
func (h *hub) run(quit <-chan struct{}) {
	suspect := false // the queue was full: the nats client may have dropped
	for {
		select {
		case <-quit:
			return
		case m := <-h.msgs:
			if len(h.msgs) >= cap(h.msgs)-1 {
				suspect = true
			}
			h.dispatch(m)
			if suspect && len(h.msgs) == 0 {
				suspect = false
				h.repairDrops()
			}
		}
	}
}

func (h *hub) dispatch(m *nats.Msg) {
	e, err := streams.ParseEntry(m)
	if err != nil {
		return // not a log message; nothing to deliver
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hs, ok := h.subs[m.Subject]
	if !ok || hs.sub != m.Sub {
		return // a message of a subscription already gone
	}
	for c := range hs.listeners {
		c.onLive(&e)
	}
}

// resyncAll sends every follower back to catch-up: after the NATS
// connection was re-established, live messages published while it was
// down never reached this edge, and nothing else would tell a follower
// whose session has gone quiet since.
func (h *hub) resyncAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hs := range h.subs {
		for c := range hs.listeners {
			c.onOverflow()
		}
	}
}

// repairDrops sends the followers of every subscription that lost
// messages back to catch-up: the log has what was dropped.
func (h *hub) repairDrops() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hs := range h.subs {
		n, err := hs.sub.Dropped()
		if err != nil || n <= hs.dropped {
			continue
		}
		hs.dropped = n
		for c := range hs.listeners {
			c.onOverflow()
		}
	}
}

// listeners returns the connections of this edge that follow either log
// of session.
func (h *hub) listeners(session string) []*conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*conn
	for _, d := range []streams.Direction{streams.Out, streams.In} {
		subj, err := streams.LiveSubject(session, d)
		if err != nil {
			return nil
		}
		if hs, ok := h.subs[subj]; ok {
			for c := range hs.listeners {
				out = append(out, c)
			}
		}
	}
	return out
}
