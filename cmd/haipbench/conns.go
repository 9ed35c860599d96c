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

// conns: K idle, handshaken connections of -transport, each on its own
// session; memory and goroutines before and after. With child processes
// (-spawn, -cluster, -edge-pid) the edge's and nats-server's RSS are read
// from /proc apart from this (client) process's.
func (b *bench) conns(ctx context.Context, r *Result) error {
	k := b.cfg.Conns
	r.Params["conns"] = k
	if k > b.f.maxConns {
		return fmt.Errorf("-conns %d is over what the open-file limit allows here (%d; %d descriptors per connection in -self mode)",
			k, b.f.maxConns, fdsPerSelfConn)
	}
	debug.FreeOSMemory()
	self := os.Getpid()
	rss0, err := vmRSS(self)
	if err != nil {
		return err
	}
	procs0 := make([]int64, len(b.f.procs))
	for i, p := range b.f.procs {
		if procs0[i], err = vmRSS(p.pid); err != nil {
			return fmt.Errorf("%s: %w", p.role, err)
		}
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
	rss1, err := vmRSS(self)
	if err != nil {
		return err
	}
	procs1 := make([]int64, len(b.f.procs))
	for i, p := range b.f.procs {
		if procs1[i], err = vmRSS(p.pid); err != nil {
			return fmt.Errorf("%s: %w", p.role, err)
		}
	}
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	g1 := runtime.NumGoroutine()

	perConn := func(a, b int64) float64 { return float64(b-a) / float64(k) / 1024 }
	r.add(rowConns, float64(k), "conns")
	r.add(rowDialRate, rate(k, dial), "conn/s")
	if len(b.f.procs) == 0 {
		r.add(rowRSSPerConn, perConn(rss0, rss1), "KiB")
		r.add(rowHeapPerConn, (float64(m1.HeapAlloc)-float64(m0.HeapAlloc))/float64(k)/1024, "KiB")
		r.add(rowGorPerConn, float64(g1-g0)/float64(k), "goroutines")
		r.add("RSS before", float64(rss0)/(1<<20), "MiB")
		r.add("RSS after", float64(rss1)/(1<<20), "MiB")
	} else {
		// Sum per role (a cluster has several of each).
		var roles []string
		sum0, sum1 := map[string]int64{}, map[string]int64{}
		for i, p := range b.f.procs {
			if _, ok := sum0[p.role]; !ok {
				roles = append(roles, p.role)
			}
			sum0[p.role] += procs0[i]
			sum1[p.role] += procs1[i]
		}
		for _, role := range roles {
			r.add(role+" "+rowRSSPerConn, perConn(sum0[role], sum1[role]), "KiB")
			r.add(role+" RSS before", float64(sum0[role])/(1<<20), "MiB")
			r.add(role+" RSS after", float64(sum1[role])/(1<<20), "MiB")
		}
		r.add("client process "+rowRSSPerConn, perConn(rss0, rss1), "KiB")
		r.add("client process "+rowHeapPerConn, (float64(m1.HeapAlloc)-float64(m0.HeapAlloc))/float64(k)/1024, "KiB")
		r.add("client process "+rowGorPerConn, float64(g1-g0)/float64(k), "goroutines")
	}
	switch {
	case b.f.mode == modeSelf:
		r.note("-self: client and edge (and the embedded nats-server) are in this process, so RSS, heap and goroutines count BOTH ends of every connection")
	case len(b.f.procs) > 0:
		var ps []string
		pids := map[string][]int{}
		for _, p := range b.f.procs {
			ps = append(ps, fmt.Sprintf("%s pid %d", p.role, p.pid))
			pids[p.role] = append(pids[p.role], p.pid)
		}
		r.Params["pids"] = pids
		r.note("RSS of other processes (%s), summed per role; heap and goroutines are this client process's", strings.Join(ps, ", "))
		r.note("another process cannot be made to collect its garbage: its RSS includes heap not yet collected or returned to the OS, so read it as an upper bound; the edge starts fresh in -spawn")
	default:
		r.note("external edge without -edge-pid: every figure is this client process's, not the edge's")
	}
	r.note("RSS read from /proc/PID/status VmRSS (this process after debug.FreeOSMemory); connections held %s", connsSettle)
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
