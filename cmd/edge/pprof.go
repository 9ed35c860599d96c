package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// checkLoopback accepts host:port only when host is a loopback address
// (127.0.0.0/8, ::1 or localhost): profiles must not leave the machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address", host)
}

// pprofServer serves net/http/pprof on its own listener and mux, apart
// from the edge's handler, so that no profile is reachable on the public
// port.
type pprofServer struct {
	hs   *http.Server
	done chan struct{}
}

// startPprof listens on addr (already checked by checkLoopback) and
// serves the profiles until stop is called.
func startPprof(addr string, logger *slog.Logger) (*pprofServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on PPROF_LISTEN: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	p := &pprofServer{
		hs:   &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(p.done)
		if err := p.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("pprof server stopped", slog.Any("err", err))
		}
	}()
	logger.Info("pprof listening", slog.String("addr", ln.Addr().String()))
	return p, nil
}

// stop closes the listener and every open profile request, and waits for
// the serving goroutine.
func (p *pprofServer) stop() {
	_ = p.hs.Close()
	<-p.done
}
