// Package clustertest runs a loopback 3-node NATS JetStream cluster for
// tests: three real nats-server processes on 127.0.0.1, configured by the
// repository's nats.conf, each with its own store directory. Nodes can be
// killed, restarted on the same store, or all stopped and started again.
//
// The nats-server binary is built once per test binary from the
// github.com/nats-io/nats-server/v2 module that go.mod requires.
package clustertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Size is the number of nodes.
const Size = 3

// ReadyTimeout bounds how long Start, Restart and StartAll wait for the
// nodes to serve JetStream.
const ReadyTimeout = 60 * time.Second

var build struct {
	once sync.Once
	bin  string
	err  error
}

// serverBinary builds nats-server once per test binary.
func serverBinary(root string) (string, error) {
	build.once.Do(func() {
		// One shared path, so that test runs do not leave a binary each;
		// built to a private name and renamed into place, so concurrent
		// test binaries never see a partial file. The go build cache makes
		// the rebuild cheap.
		dir := filepath.Join(os.TempDir(), "haipfabric-clustertest")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			build.err = err
			return
		}
		tmp, err := os.CreateTemp(dir, "nats-server-*.tmp")
		if err != nil {
			build.err = err
			return
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		cmd := exec.Command("go", "build", "-o", tmp.Name(), "github.com/nats-io/nats-server/v2")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build nats-server: %v\n%s", err, out)
			return
		}
		bin := filepath.Join(dir, "nats-server")
		if err := os.Rename(tmp.Name(), bin); err != nil {
			build.err = err
			return
		}
		build.bin = bin
	})
	return build.bin, build.err
}

// repoRoot walks up from the working directory to the directory holding
// go.mod and nats.conf.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "nats.conf")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod with nats.conf above the working directory")
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Cluster is a running loopback cluster.
type Cluster struct {
	t     testing.TB
	bin   string
	conf  string
	nodes [Size]*node
}

type node struct {
	name                      string
	client, cluster, httpPort int
	store, logPath            string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start builds nats-server if needed, starts three nodes and waits until
// every node serves JetStream with an elected meta leader. Everything is
// stopped and removed when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := serverBinary(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ports, err := freePorts(3 * Size)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: bin, conf: filepath.Join(root, "nats.conf")}
	for i := range c.nodes {
		c.nodes[i] = &node{
			name:     fmt.Sprintf("n%d", i+1),
			client:   ports[3*i],
			cluster:  ports[3*i+1],
			httpPort: ports[3*i+2],
			store:    filepath.Join(dir, fmt.Sprintf("n%d", i+1), "store"),
			logPath:  filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
		}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("log of %s (last 40 lines):\n%s", n.name, tail(n.logPath, 40))
			}
		}
	})
	c.StartAll()
	return c
}

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
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// ClientURLs is every node's client URL, comma-separated (for NATS_URL).
func (c *Cluster) ClientURLs() string {
	urls := make([]string, Size)
	for i, n := range c.nodes {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", n.client)
	}
	return strings.Join(urls, ",")
}

// ClientURL is node i's client URL.
func (c *Cluster) ClientURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].client)
}

// MonitorURL is node i's monitoring base URL (http://127.0.0.1:port).
func (c *Cluster) MonitorURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.nodes[i].httpPort)
}

// Name is node i's server name (n1, n2, n3).
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Running reports whether node i's process is running.
func (c *Cluster) Running(i int) bool { return c.nodes[i].running() }

func (c *Cluster) env(n *node) []string {
	routes := make([]string, Size)
	for i, m := range c.nodes {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", m.cluster)
	}
	return append(os.Environ(),
		"NATS_NODE_NAME="+n.name,
		"NATS_HOST=127.0.0.1",
		fmt.Sprintf("NATS_CLIENT_PORT=%d", n.client),
		fmt.Sprintf("NATS_CLUSTER_PORT=%d", n.cluster),
		fmt.Sprintf("NATS_HTTP_PORT=%d", n.httpPort),
		"NATS_CLUSTER_NAME=haip-test",
		"NATS_ROUTES=["+strings.Join(routes, ", ")+"]",
		"NATS_STORE_DIR="+n.store,
	)
}

// launch starts node i's process without waiting for it.
func (c *Cluster) launch(i int) {
	c.t.Helper()
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		c.t.Fatalf("node %s is already running", n.name)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s at %s\n", n.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, "-c", c.conf)
	cmd.Env = c.env(n)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	n.cmd, n.done = cmd, done
}

func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// stop sends sig and waits for the process to exit; after grace it kills.
func (n *node) stop(sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd, n.done = nil, nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (n *node) kill() { n.stop(syscall.SIGKILL, 10*time.Second) }

// Kill SIGKILLs node i and waits for the process to exit.
func (c *Cluster) Kill(i int) { c.nodes[i].kill() }

// Stop stops node i gracefully (SIGTERM, then SIGKILL after 15 s).
func (c *Cluster) Stop(i int) { c.nodes[i].stop(syscall.SIGTERM, 15*time.Second) }

// Restart starts node i again with the same configuration and store
// directory (stopping it first if it runs) and waits until it serves
// JetStream and is current with the cluster.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.nodes[i].kill()
	c.launch(i)
	c.waitReady([]int{i}, ReadyTimeout)
}

// StopAll stops every node gracefully, concurrently.
func (c *Cluster) StopAll() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// StartAll starts every node that is not running, then waits until all
// three serve JetStream with an elected meta leader.
func (c *Cluster) StartAll() {
	c.t.Helper()
	for i := range c.nodes {
		if !c.nodes[i].running() {
			c.launch(i)
		}
	}
	c.waitReady([]int{0, 1, 2}, ReadyTimeout)
}

// WaitReady waits until every running node serves JetStream and knows the
// meta leader.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	var idx []int
	for i := range c.nodes {
		if c.nodes[i].running() {
			idx = append(idx, i)
		}
	}
	c.waitReady(idx, ReadyTimeout)
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// jsz is the part of /jsz read here.
type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
		Size   int    `json:"cluster_size"`
	} `json:"meta_cluster"`
	AccountDetails []struct {
		Streams []struct {
			Name    string `json:"name"`
			Cluster *struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

func (c *Cluster) jsz(i int, query string) (*jsz, error) {
	resp, err := httpClient.Get(c.MonitorURL(i) + "/jsz" + query)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/jsz: HTTP %d", resp.StatusCode)
	}
	var j jsz
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		return nil, err
	}
	return &j, nil
}

// ready reports why node i is not ready yet (nil when it is): /healthz must
// answer 200 (JetStream enabled and current) and /jsz must name a meta
// leader in a cluster of Size.
func (c *Cluster) ready(i int) error {
	resp, err := httpClient.Get(c.MonitorURL(i) + "/healthz")
	if err != nil {
		return err
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: HTTP %d %s", resp.StatusCode, strings.TrimSpace(body.String()))
	}
	j, err := c.jsz(i, "")
	if err != nil {
		return err
	}
	if j.Meta == nil || j.Meta.Leader == "" {
		return errors.New("no meta leader")
	}
	if j.Meta.Size != Size {
		return fmt.Errorf("meta cluster size %d", j.Meta.Size)
	}
	return nil
}

func (c *Cluster) waitReady(idx []int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for _, i := range idx {
		for {
			err := c.ready(i)
			if err == nil {
				break
			}
			if !c.nodes[i].running() {
				c.t.Fatalf("node %s is not running", c.nodes[i].name)
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %s not ready within %s: %v\nlog:\n%s", c.nodes[i].name, within, err, tail(c.nodes[i].logPath, 40))
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	}
}

// StreamLeader returns the index of the node leading stream (in the global
// account), asking the running nodes' /jsz; ok is false when no running
// node names a leader.
func (c *Cluster) StreamLeader(stream string) (int, bool) {
	for i := range c.nodes {
		if !c.nodes[i].running() {
			continue
		}
		j, err := c.jsz(i, "?accounts=true&streams=true")
		if err != nil {
			continue
		}
		for _, a := range j.AccountDetails {
			for _, s := range a.Streams {
				if s.Name != stream || s.Cluster == nil || s.Cluster.Leader == "" {
					continue
				}
				for k, n := range c.nodes {
					if n.name == s.Cluster.Leader {
						return k, true
					}
				}
			}
		}
	}
	return 0, false
}

// WaitStreamLeader polls until stream has a leader among the running nodes
// and returns its index.
func (c *Cluster) WaitStreamLeader(stream string, within time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if i, ok := c.StreamLeader(stream); ok && c.nodes[i].running() {
			return i
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("stream %s has no leader within %s", stream, within)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}
