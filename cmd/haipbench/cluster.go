package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/haipfabric/haipfabric/internal/localcluster"
)

// clusterEdges and clusterToolWorkers are the -cluster topology (with
// localcluster's three nats-server nodes and R3 streams).
const (
	clusterEdges       = 2
	clusterToolWorkers = 2
)

// openCluster starts the loopback cluster (built from this module with go
// build) and connects the agent side and the baseline to every node.
// Clients are spread over the edges round robin.
func (f *fabric) openCluster(ctx context.Context, cfg config) error {
	var log io.Writer = os.Stderr
	if cfg.Quiet {
		log = nil
	}
	// A directory of our own, binaries included: the shared binary cache
	// may hold other builds of the module.
	dir, err := os.MkdirTemp("", "haipbench-cluster-")
	if err != nil {
		return fmt.Errorf("cannot create cluster dir: %w", err)
	}
	f.closers = append(f.closers, func() { _ = os.RemoveAll(dir) })
	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir:         dir,
		Edges:       clusterEdges,
		ToolWorkers: clusterToolWorkers,
		Env:         withEnv(map[string]string{"MAX_CONNECTIONS": strconv.Itoa(maxConns + 16)}, noUserLimits()),
		Log:         log,
	})
	if err != nil {
		return fmt.Errorf("cannot start the local cluster: %w", err)
	}
	f.closers = append(f.closers, func() { _ = c.Close() })
	token, err := c.UserToken("haipbench")
	if err != nil {
		return err
	}
	for i := range clusterEdges {
		f.eps = append(f.eps, endpoint{base: c.EdgeURL(i), token: token})
		f.procs = append(f.procs, proc{role: "edge", pid: c.EdgePID(i)})
	}
	for i := range localcluster.Size {
		f.procs = append(f.procs, proc{role: "nats-server", pid: c.NATS().PID(i)})
	}
	f.builtinTools = fmt.Sprintf("the cluster's %d cmd/toolworker processes also serve echo and take calls alongside the in-process workers", clusterToolWorkers)
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	return f.dialNATS(sctx, c.NATSURLs())
}
