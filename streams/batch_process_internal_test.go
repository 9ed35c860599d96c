package streams

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/clustertest"
	"github.com/haipfabric/haipfabric/internal/natstest"
)

// The crash tests run a writer in a child process (this test binary,
// started with batchChildEnv set: TestMain runs BatchChild instead of the
// tests), SIGKILL it in the middle of its batches, and check the log.
const (
	batchChildEnv     = "HAIP_STREAMS_BATCH_CHILD_URL" // NATS URLs
	batchChildSession = "HAIP_STREAMS_BATCH_CHILD_SESSION"
	batchChildCut     = "HAIP_STREAMS_BATCH_CHILD_CUT" // stop at the commit of this batch (1-based)
	batchChildWriters = 16
	batchChildPer     = 100_000 // bounds a child nobody kills
)

// batchChild is the writer process: batchChildWriters goroutines append
// to one session, each printing "ACK <id> <seq>" when its append returns.
// With batchChildCut set, the writer stops dead at that batch's commit,
// after publishing its other messages, and prints "CUT <ids>".
func batchChild() int {
	nc, err := nats.Connect(os.Getenv(batchChildEnv), nats.MaxReconnects(-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	l, err := OpenLog(ctx, nc, js)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l.atomic = true // on R1 too
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	if cut, _ := strconv.Atoi(os.Getenv(batchChildCut)); cut > 0 {
		n := 0
		l.beforeCommit = func(msgs []*nats.Msg) {
			if n++; n < cut {
				return
			}
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				ids[i] = recordID(m.Header.Get(jetstream.MsgIDHeader), m.Subject)
			}
			_ = nc.Flush()
			say("CUT %s", strings.Join(ids, " "))
			select {} // until SIGKILL
		}
	}
	session := os.Getenv(batchChildSession)
	var wg sync.WaitGroup
	for w := range batchChildWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range batchChildPer {
				id := fmt.Sprintf("w%d-%d", w, k)
				a, err := l.Append(ctx, session, Out, Record{ID: id}, seqBody)
				if err != nil {
					say("ERR %s %v", id, err)
					continue
				}
				say("ACK %s %d", id, a.Seq)
			}
		}()
	}
	wg.Wait()
	return 0
}

// writerProc is a running batch writer child and what it printed.
type writerProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	acked map[string]uint64
	cut   []string
	errs  int
	lines chan struct{} // a line was read
	done  chan struct{} // stdout closed
}

// startWriter starts a writer child on urls, appending to session.
func startWriter(t *testing.T, urls, session string, cut int) *writerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), batchChildEnv+"="+urls, batchChildSession+"="+session, batchChildCut+"="+strconv.Itoa(cut))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &writerProc{cmd: cmd, acked: map[string]uint64{}, lines: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
		_ = cmd.Wait()
	})
	go w.read(stdout)
	return w
}

func (w *writerProc) read(r io.Reader) {
	defer close(w.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		w.mu.Lock()
		switch {
		case len(f) == 3 && f[0] == "ACK":
			seq, _ := strconv.ParseUint(f[2], 10, 64)
			w.acked[f[1]] = seq
		case len(f) > 1 && f[0] == "CUT":
			w.cut = f[1:]
		case len(f) > 0 && f[0] == "ERR":
			w.errs++
		}
		w.mu.Unlock()
		select {
		case w.lines <- struct{}{}:
		default:
		}
	}
}

// waitFor waits until cond holds on what the writer printed.
func (w *writerProc) waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.lines:
		case <-w.done:
			t.Fatalf("writer exited before %s", what)
		case <-deadline.C:
			t.Fatalf("writer: no %s within %s", what, within)
		}
	}
}

// kill SIGKILLs the writer and waits for it, then returns what it acked.
func (w *writerProc) kill(t *testing.T) map[string]uint64 {
	t.Helper()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-w.done
	_ = w.cmd.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// checkAfterKill checks the log of session after its writer died: dense,
// every acked message there once, every batch whole (checkLog), none of
// the cut batch's messages stored; then a new writer goes on densely.
func checkAfterKill(t *testing.T, nc *nats.Conn, js jetstream.JetStream, session string, acked map[string]uint64, cut []string) {
	t.Helper()
	subj := "haip.session." + session + ".out"
	msgs, inBatches := checkLog(t, js, subj, acked)
	if len(msgs) < len(acked) || inBatches == 0 {
		t.Fatalf("%d messages stored (%d in batches), %d acked", len(msgs), inBatches, len(acked))
	}
	for _, id := range cut {
		for _, m := range msgs {
			if m.MsgID == id {
				t.Fatalf("message %s of the batch cut before its commit is stored at seq %d", id, m.Seq)
			}
		}
	}
	l := openTestLog(t, nc, js)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(ctx, session, Out, Record{ID: fmt.Sprintf("after-%d", i)}, seqBody); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	after, _ := checkLog(t, js, subj, acked)
	if len(after) != len(msgs)+8 {
		t.Fatalf("%d messages after 8 more appends to %d", len(after), len(msgs))
	}
	t.Logf("%d acked, %d stored (%d in batches), cut batch of %d", len(acked), len(msgs), inBatches, len(cut))
}

// A writer process SIGKILLed with a batch published but its commit (the
// batch cut in half), or anywhere in its stream of batches: the log holds
// whole batches only, dense, with every acknowledged message once.
func TestGroupCommitWriterKilled(t *testing.T) {
	t.Parallel()
	ns := natstest.ServerAt(t, t.TempDir(), "127.0.0.1:0")
	nc := natstest.Conn(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := Ensure(context.Background(), js, Config{}); err != nil {
		t.Fatal(err)
	}
	t.Run("at a commit", func(t *testing.T) {
		w := startWriter(t, ns.ClientURL(), "cut", 20)
		w.waitFor(t, time.Minute, "cut batch", func() bool { return len(w.cut) > 1 })
		acked := w.kill(t)
		checkAfterKill(t, nc, js, "cut", acked, w.cut)
	})
	t.Run("anywhere", func(t *testing.T) {
		w := startWriter(t, ns.ClientURL(), "anywhere", 0)
		w.waitFor(t, time.Minute, "2,000 acks", func() bool { return len(w.acked) >= 2000 })
		acked := w.kill(t)
		checkAfterKill(t, nc, js, "anywhere", acked, nil)
	})
}

// The same on the 3-node loopback cluster with R3 streams, and with the
// session stream's leader node SIGKILLed while the writer's batches go on.
func TestGroupCommitWriterKilledR3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster of processes")
	}
	c := clustertest.Start(t)
	nc, js := c.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Ensure(ctx, js, Config{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	t.Run("at a commit", func(t *testing.T) {
		w := startWriter(t, c.ClientURLs(), "cut", 20)
		w.waitFor(t, time.Minute, "cut batch", func() bool { return len(w.cut) > 1 })
		acked := w.kill(t)
		checkAfterKill(t, nc, js, "cut", acked, w.cut)
	})
	t.Run("node killed", func(t *testing.T) {
		w := startWriter(t, c.ClientURLs(), "nodekill", 0)
		w.waitFor(t, time.Minute, "1,000 acks", func() bool { return len(w.acked) >= 1000 })
		leader, err := c.NATS().WaitStreamLeader(ctx, SessionStream)
		if err != nil {
			t.Fatal(err)
		}
		c.Kill(leader)
		w.waitFor(t, time.Minute, "1,000 acks after the leader died", func() bool { return len(w.acked) >= 2000 })
		acked := w.kill(t)
		t.Logf("%d appends failed while the leader was down", w.errs)
		c.Restart(leader)
		checkAfterKill(t, nc, js, "nodekill", acked, nil)
	})
}
