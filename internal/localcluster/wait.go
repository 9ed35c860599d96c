package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// pollInterval is how often a wait re-checks its condition.
const pollInterval = 50 * time.Millisecond

// poll calls check until it returns nil or ctx ends; the error then names
// the last reason check gave. A *permanentError from check ends the poll at
// once with its error. Each check gets ctx (which bounds it too).
func poll(ctx context.Context, check func(context.Context) error) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

// permanentError ends a poll: waiting longer cannot help.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

// waitFor polls check for process p, failing at once when p exits; what
// describes the condition in errors, which quote p's log.
func waitFor(ctx context.Context, p *proc, what string, check func(context.Context) error) error {
	began := time.Now()
	exited := false
	err := poll(ctx, func(ctx context.Context) error {
		if err := p.exited(); err != nil {
			exited = true
			return &permanentError{err}
		}
		return check(ctx)
	})
	switch {
	case err == nil:
		return nil
	case exited:
		return fmt.Errorf("waiting for %s to %s: %w", p.name, what, err)
	default:
		return fmt.Errorf("%s did not %s within %s: %w\n%s", p.name, what, time.Since(began).Round(time.Millisecond), err, p.tail())
	}
}

// reservePorts picks, in one step, nats ports for the NATS nodes and
// edges ports for the edges: first, first+1, … when first is set (each
// checked to be free), else free ones. Every port is held open until all
// are picked, so none is handed out twice (two separate picks could get a
// port the first had just let go); the processes bind them moments later.
func reservePorts(nats, first, edges int) (natsPorts, edgePorts []int, err error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	if first != 0 {
		if first < 1 || first+edges-1 > 65535 {
			return nil, nil, fmt.Errorf("edge ports %d-%d: want 1-65535", first, first+edges-1)
		}
		for i := range edges {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", first+i))
			if err != nil {
				return nil, nil, fmt.Errorf("edge port %d is not free (choose other edge ports): %w", first+i, err)
			}
			ls = append(ls, l)
			edgePorts = append(edgePorts, first+i)
		}
	}
	free := nats
	if first == 0 {
		free += edges
	}
	for range free {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		port := l.Addr().(*net.TCPAddr).Port
		if len(natsPorts) < nats {
			natsPorts = append(natsPorts, port)
		} else {
			edgePorts = append(edgePorts, port)
		}
	}
	return natsPorts, edgePorts, nil
}
