package edge

import (
	"time"
)

// writerClock is the writer's one timer, in place of a handshake timer,
// a heartbeat ticker and a credential timer per connection: it fires at
// the handshake deadline (until the handshake is done), at the next
// heartbeat, or when the connection's token expires, whichever is first.
type writerClock struct {
	t           *time.Timer
	interval    time.Duration
	nextBeat    time.Time
	handshakeBy time.Time // zero once the handshake is done
	expiresAt   time.Time // zero: the credential does not expire
}

func newWriterClock(heartbeat, handshake time.Duration, expiresAt time.Time) writerClock {
	now := time.Now()
	k := writerClock{interval: heartbeat, nextBeat: now.Add(heartbeat), handshakeBy: now.Add(handshake), expiresAt: expiresAt}
	k.t = time.NewTimer(k.until(now))
	return k
}

// c is the channel the timer fires on.
func (k *writerClock) c() <-chan time.Time { return k.t.C }

// until is how long from now the timer must wait.
func (k *writerClock) until(now time.Time) time.Duration {
	next := k.nextBeat
	if !k.handshakeBy.IsZero() && k.handshakeBy.Before(next) {
		next = k.handshakeBy
	}
	if !k.expiresAt.IsZero() && k.expiresAt.Before(next) {
		next = k.expiresAt
	}
	return next.Sub(now)
}

// handshook stops watching the handshake deadline.
func (k *writerClock) handshook() {
	k.handshakeBy = time.Time{}
	k.t.Reset(k.until(time.Now()))
}

// clockEvents is what a firing of the writer's clock found due.
type clockEvents struct {
	handshakeExpired bool // no HAI by the handshake deadline
	beat             bool // a heartbeat is due
	tokenExpired     bool // the connection's token has expired
}

// fired is called when the timer has fired at now. It reports what is
// due (like a ticker, beats missed while the writer was busy are not made
// up), and sets the timer again.
func (k *writerClock) fired(now time.Time) clockEvents {
	var ev clockEvents
	ev.handshakeExpired = !k.handshakeBy.IsZero() && !now.Before(k.handshakeBy)
	ev.tokenExpired = !k.expiresAt.IsZero() && !now.Before(k.expiresAt)
	if !now.Before(k.nextBeat) {
		ev.beat = true
		k.nextBeat = k.nextBeat.Add(k.interval)
		if !k.nextBeat.After(now) {
			k.nextBeat = now.Add(k.interval)
		}
	}
	k.t.Reset(k.until(now))
	return ev
}

func (k *writerClock) stop() { k.t.Stop() }
