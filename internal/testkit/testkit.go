// Package testkit is what the tests of every package share: waiting on a
// condition with a deadline, and a check, in each package's TestMain, that
// the tests left no goroutine running.
//
// Start with Main in a package's TestMain:
//
//	func TestMain(m *testing.M) { testkit.Main(m) }
package testkit

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs the package's tests, then fails the run if goroutines are
// left that the tests started: every goroutine must have an owner that
// stops it, and a test's cleanups are where its owners stop. Goroutines
// the NATS libraries keep for the life of the process by design are not
// counted (each is named below, with why).
func Main(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions()...)
}

// SkipProcessesIfShort ends a package's test run at once under -short,
// saying so, for the suites that build and start real processes or
// clusters (what): the developer's fast set (go test -short ./...) leaves
// them out. The README's test command, and CI, run them. Call it first in
// TestMain.
func SkipProcessesIfShort(what string) {
	flag.Parse()
	if testing.Short() {
		fmt.Fprintf(os.Stderr, "-short: %s left out (go test without -short runs them)\n", what)
		os.Exit(0)
	}
}

// leakOptions are the goroutines that outlive a test by design.
func leakOptions() []goleak.Option {
	return []goleak.Option{
		// nats-server's process-wide timers and pools: started once per
		// process by the first embedded server, never stopped.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine"),
	}
}

// Eventually waits until cond holds, checking it every few milliseconds,
// and fails the test with msg if it does not within the deadline; each
// diag then adds what it says to the message (the state the condition
// looked at, say). It is how tests wait: never a sleep.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msg string, diag ...func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			for _, d := range diag {
				msg += "; " + d()
			}
			t.Fatalf("%s (waited %s)", msg, within)
		}
		<-tick.C
	}
}

// Go runs fn on a goroutine until the test ends or the returned stop is
// called, then cancels its context and waits for it to return: the owner
// of a worker, an agent or a server loop a test starts. stop may be
// called more than once.
func Go(t testing.TB, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fn(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}
