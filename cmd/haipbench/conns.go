package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// connsSettle lets handshakes finish their background work before the
// second memory reading.
const connsSettle = 500 * time.Millisecond

// conns: K idle, handshaken WebSocket connections, each on its own
// session; RSS and goroutines before and after.
func (b *bench) conns(ctx context.Context, r *Result) error {
	k := b.cfg.Conns
	r.Params["conns"] = k
	if k > b.f.maxConns {
		return fmt.Errorf("-conns %d is over what the open-file limit allows here (%d; %d descriptors per connection in -self mode)",
			k, b.f.maxConns, fdsPerSelfConn)
	}
	pid := os.Getpid()
	if b.f.edgePID != 0 {
		pid = b.f.edgePID
	}
	debug.FreeOSMemory()
	rss0, err := vmRSS(pid)
	if err != nil {
		return err
	}
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	start := time.Now()
	cs, err := b.dialAll(ctx, k, nil)
	if err != nil {
		return err
	}
	defer closeAll(cs)
	dial := time.Since(start)
	select {
	case <-time.After(connsSettle):
	case <-ctx.Done():
		return ctx.Err()
	}
	debug.FreeOSMemory()
	rss1, err := vmRSS(pid)
	if err != nil {
		return err
	}
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	g1 := runtime.NumGoroutine()

	r.add(rowConns, float64(k), "conns")
	r.add(rowDialRate, rate(k, dial), "conn/s")
	r.add(rowRSSPerConn, float64(rss1-rss0)/float64(k)/1024, "KiB")
	r.add(rowHeapPerConn, (float64(m1.HeapAlloc)-float64(m0.HeapAlloc))/float64(k)/1024, "KiB")
	r.add(rowGorPerConn, float64(g1-g0)/float64(k), "goroutines")
	r.add("RSS before", float64(rss0)/(1<<20), "MiB")
	r.add("RSS after", float64(rss1)/(1<<20), "MiB")
	switch {
	case b.f.mode == modeSelf:
		r.note("-self: client and edge (and the embedded nats-server) are in this process, so RSS, heap and goroutines count BOTH ends of every connection")
	case b.f.edgePID != 0:
		r.note("RSS is the edge process's (pid %d); heap and goroutines are this client process's", b.f.edgePID)
	default:
		r.note("external edge without -edge-pid: every figure is this client process's, not the edge's")
	}
	r.note("RSS read from /proc/PID/status VmRSS after debug.FreeOSMemory; connections held %s", connsSettle)
	return nil
}

// vmRSS reads VmRSS of pid in bytes.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("cannot read RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(rest) // "12345 kB"
			if len(fields) == 2 && fields[1] == "kB" {
				kb, err := strconv.ParseInt(fields[0], 10, 64)
				if err == nil {
					return kb * 1024, nil
				}
			}
			return 0, fmt.Errorf("cannot parse %q", line)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

// percentile of sorted d (nearest rank); 0 for none.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*q+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}
