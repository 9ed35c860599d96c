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

// edgePorts is first, first+1, … (n ports) when first is set, each
// checked to be free now; else n free ports.
func edgePorts(first, n int) ([]int, error) {
	if first == 0 {
		return freePorts(n)
	}
	if first < 1 || first+n-1 > 65535 {
		return nil, fmt.Errorf("edge ports %d-%d: want 1-65535", first, first+n-1)
	}
	ports := make([]int, n)
	for i := range ports {
		ports[i] = first + i
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[i]))
		if err != nil {
			return nil, fmt.Errorf("edge port %d is not free (choose other edge ports): %w", ports[i], err)
		}
		l.Close()
	}
	return ports, nil
}

// freePorts picks n distinct free TCP ports on 127.0.0.1 (free when
// picked: the processes bind them moments later).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
