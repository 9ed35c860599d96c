package worker

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// UnhealthyAfter is how long a worker's fetches from one of its queues
// may fail in a row before Healthy reports it: long enough for a stream
// leader election or a NATS reconnection to pass unreported.
const UnhealthyAfter = 10 * time.Second

// health follows whether a worker can take work from each of its
// consumers. Safe for concurrent use.
type health struct {
	after   time.Duration // failing this long is unhealthy (zero: UnhealthyAfter)
	mu      sync.Mutex
	failing map[string]failure // consumer -> the failures since its last success
	stopped error              // Run returned with this error (nil: running, or never run)
}

type failure struct {
	since time.Time
	err   error
}

// failed notes a failed fetch from consumer.
func (h *health) failed(consumer string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing == nil {
		h.failing = make(map[string]failure)
	}
	f, ok := h.failing[consumer]
	if !ok {
		f.since = time.Now()
	}
	f.err = err
	h.failing[consumer] = f
}

// ok notes that consumer served a fetch (with or without work).
func (h *health) ok(consumer string) {
	h.mu.Lock()
	delete(h.failing, consumer)
	h.mu.Unlock()
}

// stop notes that Run returned with err.
func (h *health) stop(err error) {
	h.mu.Lock()
	h.stopped = err
	h.mu.Unlock()
}

// err is nil while every consumer is served, or has failed for less than
// UnhealthyAfter; else it names the consumers that fail and why.
func (h *health) err(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped != nil {
		return fmt.Errorf("stopped: %w", h.stopped)
	}
	after := h.after
	if after <= 0 {
		after = UnhealthyAfter
	}
	var names []string
	for name, f := range h.failing {
		if now.Sub(f.since) >= after {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	f := h.failing[names[0]]
	return fmt.Errorf("cannot take work from %d consumer(s) (%s …) for %s: %w", len(names), names[0], now.Sub(f.since).Round(time.Second), f.err)
}
