package natstest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/haipfabric/haipfabric/internal/testkit"
)

// Proxy forwards loopback TCP connections to a NATS server and can cut
// them all and refuse new ones for a while: a network partition between
// the clients that use it and their server.
type Proxy struct {
	t      testing.TB
	addr   string // where clients connect, the same across Cut and Resume
	target string

	mu      sync.Mutex
	ln      net.Listener
	conns   []net.Conn
	clients []*nats.Conn // made by Conn
	wg      sync.WaitGroup
}

// StartProxy forwards to s, which must listen on TCP (ServerAt with a
// listen address). It stops with the test.
func StartProxy(t testing.TB, s *server.Server) *Proxy {
	t.Helper()
	addr := s.Addr()
	if addr == nil {
		t.Fatal("the server does not listen on TCP")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, addr: ln.Addr().String(), target: addr.String()}
	p.serve(ln)
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// URL is the proxy's NATS URL.
func (p *Proxy) URL() string { return "nats://" + p.addr }

// Conn opens a client through the proxy that reconnects every 20 ms while
// cut, closed in t.Cleanup.
func (p *Proxy) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(p.URL(), nats.Name(t.Name()+" via proxy"), nats.MaxReconnects(-1),
		nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p.mu.Lock()
	p.clients = append(p.clients, nc)
	p.mu.Unlock()
	return nc
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return // cut
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut meanwhile
				p.mu.Unlock()
				in.Close()
				out.Close()
				return
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(out, in)
			go p.pipe(in, out)
		}
	}()
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut closes every forwarded connection and stops accepting.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Partition cuts, then waits until every client made by Conn has noticed
// (is no longer connected).
func (p *Proxy) Partition() {
	p.t.Helper()
	p.Cut()
	p.mu.Lock()
	clients := p.clients
	p.mu.Unlock()
	testkit.Eventually(p.t, 10*time.Second, func() bool {
		for _, nc := range clients {
			if nc.IsConnected() {
				return false
			}
		}
		return true
	}, "a client did not notice the cut")
}

// Resume accepts again on the same address.
func (p *Proxy) Resume() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("resume proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
