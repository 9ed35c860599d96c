package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Size is the number of NATS nodes.
const Size = 3

// ClusterName is the NATS cluster name of every node.
const ClusterName = "haip"

// NATS is a running loopback 3-node NATS JetStream cluster: three real
// nats-server processes configured by the repository's nats.conf, each
// with its own store directory under the cluster's directory. Nodes can be
// killed, restarted on the same store, or all stopped and started again.
// Safe for concurrent use.
type NATS struct {
	bin, conf string
	timeout   time.Duration
	logf      func(string, ...any)
	nodes     [Size]*node
	cleanup   func() error // removes what StartNATS created; nil in a Cluster
	closeOnce sync.Once
	closeErr  error
}

type node struct {
	*proc
	name                      string
	client, cluster, httpPort int
	store                     string
}

// StartNATS builds nats-server if needed, starts the three nodes of o's
// topology (without edges or tool workers) and waits until every node
// serves JetStream with an elected meta leader. Close stops them.
func StartNATS(ctx context.Context, o Options) (*NATS, error) {
	s, err := o.setup(ctx, natsServerPkg)
	if err != nil {
		return nil, err
	}
	ports, _, err := reservePorts(natsPorts, 0, 0)
	if err != nil {
		return nil, errors.Join(err, s.cleanup())
	}
	n, err := newNATS(s, ports)
	if err != nil {
		return nil, errors.Join(err, s.cleanup())
	}
	n.cleanup = s.cleanup
	if err := n.StartAll(ctx); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

// natsPorts is how many ports the nodes take: client, cluster and
// monitoring for each.
const natsPorts = 3 * Size

// newNATS prepares the nodes of setup s, on ports (natsPorts of them),
// without starting them.
func newNATS(s *setup, ports []int) (*NATS, error) {
	n := &NATS{bin: s.bins[natsServerPkg], conf: filepath.Join(s.root, "nats.conf"), timeout: s.opts.ReadyTimeout, logf: s.logf}
	for i := range n.nodes {
		name := fmt.Sprintf("nats-%d", i+1)
		n.nodes[i] = &node{
			proc:     &proc{name: name, bin: n.bin, args: []string{"-c", n.conf}, logPath: filepath.Join(s.dir, "logs", name+".log")},
			name:     name,
			client:   ports[3*i],
			cluster:  ports[3*i+1],
			httpPort: ports[3*i+2],
			store:    filepath.Join(s.dir, name),
		}
	}
	return n, nil
}

func (n *NATS) node(i int) (*node, error) {
	if i < 0 || i >= Size {
		return nil, fmt.Errorf("no NATS node %d (have %d)", i, Size)
	}
	return n.nodes[i], nil
}

// URLs is every node's client URL, comma-separated (for NATS_URL).
func (n *NATS) URLs() string {
	urls := make([]string, Size)
	for i := range n.nodes {
		urls[i] = n.URL(i)
	}
	return strings.Join(urls, ",")
}

// URL is node i's client URL (nats://127.0.0.1:PORT).
func (n *NATS) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", n.nodes[i].client) }

// MonitorURL is node i's monitoring base URL (http://127.0.0.1:PORT).
func (n *NATS) MonitorURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", n.nodes[i].httpPort)
}

// Name is node i's server name (nats-1, nats-2, nats-3), also its
// JetStream peer name.
func (n *NATS) Name(i int) string { return n.nodes[i].name }

// Running reports whether node i's process is running.
func (n *NATS) Running(i int) bool { return n.nodes[i].running() }

// PID is node i's process id, 0 when it is not running.
func (n *NATS) PID(i int) int { return n.nodes[i].pid() }

// LogPath is the file node i's output goes to.
func (n *NATS) LogPath(i int) string { return n.nodes[i].logPath }

func (n *NATS) env(m *node) []string {
	routes := make([]string, Size)
	for i, o := range n.nodes {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.cluster)
	}
	return []string{
		"NATS_NODE_NAME=" + m.name,
		"NATS_HOST=127.0.0.1",
		fmt.Sprintf("NATS_CLIENT_PORT=%d", m.client),
		fmt.Sprintf("NATS_CLUSTER_PORT=%d", m.cluster),
		fmt.Sprintf("NATS_HTTP_PORT=%d", m.httpPort),
		"NATS_CLUSTER_NAME=" + ClusterName,
		"NATS_ROUTES=[" + strings.Join(routes, ", ") + "]",
		"NATS_STORE_DIR=" + m.store,
	}
}

func (n *NATS) launch(i int) error {
	m, err := n.node(i)
	if err != nil {
		return err
	}
	if err := m.start(n.env(m)); err != nil {
		return err
	}
	n.logf("%s started (pid %d), client %s", m.name, m.pid(), n.URL(i))
	return nil
}

// Kill SIGKILLs node i and waits for the process to exit.
func (n *NATS) Kill(i int) error {
	m, err := n.node(i)
	if err != nil {
		return err
	}
	m.kill()
	n.logf("%s killed", m.name)
	return nil
}

// Stop stops node i gracefully (SIGTERM, then SIGKILL after 15 s).
func (n *NATS) Stop(i int) error {
	m, err := n.node(i)
	if err != nil {
		return err
	}
	err = m.stop(syscall.SIGTERM, 15*time.Second)
	n.logf("%s stopped", m.name)
	return err
}

// Restart starts node i again with the same configuration and store
// (SIGKILLing it first if it runs) and waits until it serves JetStream and
// is current with the cluster.
func (n *NATS) Restart(ctx context.Context, i int) error {
	if err := n.Kill(i); err != nil {
		return err
	}
	if err := n.launch(i); err != nil {
		return err
	}
	return n.waitReady(ctx, []int{i})
}

// StopAll stops every node gracefully, concurrently.
func (n *NATS) StopAll() error {
	errs := make([]error, Size)
	var wg sync.WaitGroup
	for i := range n.nodes {
		wg.Go(func() { errs[i] = n.Stop(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StartAll starts every node that is not running, then waits until all
// serve JetStream with an elected meta leader.
func (n *NATS) StartAll(ctx context.Context) error {
	for i, m := range n.nodes {
		if !m.running() {
			if err := n.launch(i); err != nil {
				return err
			}
		}
	}
	return n.waitReady(ctx, []int{0, 1, 2})
}

// WaitReady waits until every running node serves JetStream and knows the
// meta leader.
func (n *NATS) WaitReady(ctx context.Context) error {
	var idx []int
	for i, m := range n.nodes {
		if m.running() {
			idx = append(idx, i)
		}
	}
	return n.waitReady(ctx, idx)
}

// Close SIGTERMs every node, waits for them, and removes the directory
// when StartNATS created it.
func (n *NATS) Close() error {
	n.closeOnce.Do(func() {
		n.closeErr = n.StopAll()
		if n.cleanup != nil {
			n.closeErr = errors.Join(n.closeErr, n.cleanup())
		}
	})
	return n.closeErr
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

func httpGet(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	return resp.StatusCode, body.Bytes(), err
}

// jsz is the part of /jsz read here.
type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
		Size   int    `json:"cluster_size"`
	} `json:"meta_cluster"`
	AccountDetails []struct {
		Streams []struct {
			Name      string       `json:"name"`
			Cluster   *clusterInfo `json:"cluster"`
			Consumers []struct {
				Name    string       `json:"name"`
				Cluster *clusterInfo `json:"cluster"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

type clusterInfo struct {
	Leader string `json:"leader"`
}

func (n *NATS) jsz(ctx context.Context, i int, query string) (*jsz, error) {
	status, body, err := httpGet(ctx, n.MonitorURL(i)+"/jsz"+query)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/jsz: HTTP %d", status)
	}
	var j jsz
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, fmt.Errorf("/jsz: %w", err)
	}
	return &j, nil
}

// ready reports why node i is not ready yet (nil when it is): /healthz must
// answer 200 (JetStream enabled and current), /jsz must name a meta leader
// in a cluster of Size, and every stream and consumer the node holds must
// have a leader.
func (n *NATS) ready(ctx context.Context, i int) error {
	status, body, err := httpGet(ctx, n.MonitorURL(i)+"/healthz")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("/healthz: HTTP %d %s", status, strings.TrimSpace(string(body)))
	}
	j, err := n.jsz(ctx, i, "")
	if err != nil {
		return err
	}
	if j.Meta == nil || j.Meta.Leader == "" {
		return errors.New("no meta leader")
	}
	if j.Meta.Size != Size {
		return fmt.Errorf("meta cluster size %d", j.Meta.Size)
	}
	return n.assetsLed(ctx, i)
}

// assetsLed reports a stream or consumer on node i without a leader (nil
// when all have one). After a whole-cluster restart the meta leader comes
// first and each stream elects its own leader seconds later; until then
// requests about the stream (an edge's stream update at start, a KV read
// when a session opens) go unanswered.
func (n *NATS) assetsLed(ctx context.Context, i int) error {
	j, err := n.jsz(ctx, i, "?accounts=true&streams=true&consumers=true")
	if err != nil {
		return err
	}
	for _, a := range j.AccountDetails {
		for _, s := range a.Streams {
			if s.Cluster == nil || s.Cluster.Leader == "" {
				return fmt.Errorf("stream %s has no leader", s.Name)
			}
			for _, c := range s.Consumers {
				if c.Cluster == nil || c.Cluster.Leader == "" {
					return fmt.Errorf("consumer %s > %s has no leader", s.Name, c.Name)
				}
			}
		}
	}
	return nil
}

func (n *NATS) waitReady(ctx context.Context, idx []int) error {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	for _, i := range idx {
		m := n.nodes[i]
		if err := waitFor(ctx, m.proc, "serve JetStream", func(ctx context.Context) error { return n.ready(ctx, i) }); err != nil {
			return err
		}
	}
	n.logf("NATS nodes %v ready", idx)
	return nil
}

// StreamLeader returns the index of the node leading stream (in the global
// account), asking the running nodes' /jsz; ok is false when no running
// node names a leader.
func (n *NATS) StreamLeader(ctx context.Context, stream string) (int, bool) {
	for i, m := range n.nodes {
		if !m.running() {
			continue
		}
		j, err := n.jsz(ctx, i, "?accounts=true&streams=true")
		if err != nil {
			continue
		}
		for _, a := range j.AccountDetails {
			for _, s := range a.Streams {
				if s.Name != stream || s.Cluster == nil || s.Cluster.Leader == "" {
					continue
				}
				for k, o := range n.nodes {
					if o.name == s.Cluster.Leader {
						return k, true
					}
				}
			}
		}
	}
	return 0, false
}

// WaitStreamLeader polls until stream has a leader among the running nodes
// and returns its index; ctx bounds the wait.
func (n *NATS) WaitStreamLeader(ctx context.Context, stream string) (int, error) {
	var leader int
	err := poll(ctx, func(ctx context.Context) error {
		if i, ok := n.StreamLeader(ctx, stream); ok && n.nodes[i].running() {
			leader = i
			return nil
		}
		return fmt.Errorf("stream %s has no leader among the running nodes", stream)
	})
	return leader, err
}

// ensureDir creates dir (and parents) for data or logs.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}
