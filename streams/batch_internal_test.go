package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/haipfabric/haipfabric/internal/natstest"
	"github.com/haipfabric/haipfabric/internal/testkit"
)

// seqBody is a body that embeds its seq, so a rebuilt message shows.
func seqBody(seq uint64) ([]byte, error) {
	return []byte(`{"seq":` + strconv.FormatUint(seq, 10) + `}`), nil
}

// openTestLog opens a Log closed when the test ends. It commits atomic
// batches even on a single-node stream (where a Log does not by default,
// see useAtomicBatches), so the tests run them on R1 too.
func openTestLog(t *testing.T, nc *nats.Conn, js jetstream.JetStream) *Log {
	t.Helper()
	l, err := OpenLog(context.Background(), nc, js)
	if err != nil {
		t.Fatal(err)
	}
	l.atomic = true
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// rawMsg is a stored message of a log subject with the headers the batch
// checks need.
type rawMsg struct {
	Entry
	batch       string
	batchSeq    int
	batchCommit bool
}

// readSubject reads every stored message of subj, in stream order, by
// direct gets.
func readSubject(t testing.TB, js jetstream.JetStream, subj string) []rawMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	var out []rawMsg
	for from := uint64(1); ; {
		m, err := s.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatalf("read %s at %d: %v", subj, from, err)
		}
		e, err := toEntry(stored{Subject: m.Subject, StreamSeq: m.Sequence, Header: m.Header, Data: m.Data})
		if err != nil {
			t.Fatal(err)
		}
		bs, _ := strconv.Atoi(m.Header.Get(hdrBatchSeq))
		out = append(out, rawMsg{Entry: e, batch: m.Header.Get(hdrBatchID), batchSeq: bs, batchCommit: m.Header.Get(hdrBatchCommit) != ""})
		from = m.Sequence + 1
	}
}

// checkLog checks the stored messages of subj: seqs 1..n dense in stream
// order, each body embedding its own seq, no message id twice, every
// batch whole (its messages 1..k consecutive, k the commit); and that
// every acknowledged id (id → seq) is stored once at its seq. It returns
// the messages and the number stored in batches.
func checkLog(t testing.TB, js jetstream.JetStream, subj string, acked map[string]uint64) ([]rawMsg, int) {
	t.Helper()
	msgs := readSubject(t, js, subj)
	byID := map[string]uint64{}
	inBatches := 0
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Fatalf("message %d of %s has seq %d", i+1, subj, m.Seq)
		}
		if want := fmt.Sprintf(`{"seq":%d}`, m.Seq); string(m.Data) != want {
			t.Fatalf("seq %d holds body %s", m.Seq, m.Data)
		}
		if m.MsgID != "" {
			if prev, ok := byID[m.MsgID]; ok {
				t.Fatalf("id %s stored at seqs %d and %d", m.MsgID, prev, m.Seq)
			}
			byID[m.MsgID] = m.Seq
		}
		if m.batch == "" {
			continue
		}
		inBatches++
		// A batch's messages are consecutive: 1 starts one, the previous
		// message continues it.
		if m.batchSeq != 1 && (i == 0 || msgs[i-1].batch != m.batch || msgs[i-1].batchSeq != m.batchSeq-1 || msgs[i-1].StreamSeq != m.StreamSeq-1) {
			t.Fatalf("seq %d is message %d of batch %s without the one before it", m.Seq, m.batchSeq, m.batch)
		}
		end := i == len(msgs)-1 || msgs[i+1].batch != m.batch || msgs[i+1].batchSeq == 1
		if end != m.batchCommit {
			t.Fatalf("seq %d (message %d of batch %s): commit %v, last stored of its batch %v", m.Seq, m.batchSeq, m.batch, m.batchCommit, end)
		}
	}
	for id, seq := range acked {
		if got, ok := byID[id]; !ok || got != seq {
			t.Fatalf("acknowledged %s at seq %d; stored at %d (found %v)", id, seq, got, ok)
		}
	}
	return msgs, inBatches
}

// Many writers on one session in one process: their appends ride batches
// (one compare-and-set for many), seqs stay dense, every append gets the
// position its message is stored at.
func TestGroupCommitDense(t *testing.T) {
	t.Parallel()
	_, nc, js := ensured(t)
	l := openTestLog(t, nc, js)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const writers, per = 32, 40
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				id := fmt.Sprintf("w%d-%d", w, k)
				a, err := l.Append(ctx, "dense", Out, Record{ID: id}, seqBody)
				if err != nil || a.Duplicate {
					t.Errorf("append %s: %+v %v", id, a, err)
					return
				}
				mu.Lock()
				acked[id] = a.Seq
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	msgs, inBatches := checkLog(t, js, "haip.session.dense.out", acked)
	if len(msgs) != writers*per {
		t.Fatalf("%d messages stored, want %d", len(msgs), writers*per)
	}
	if inBatches == 0 {
		t.Fatal("no append rode a batch")
	}
	t.Logf("%d of %d messages stored in batches", inBatches, len(msgs))
}

// A retried append (same id) in a batch does not break the batch for the
// others: it gets the first one's position with Duplicate set, and two
// concurrent appends of one new id store it once.
func TestGroupCommitDuplicates(t *testing.T) {
	t.Parallel()
	_, nc, js := ensured(t)
	l := openTestLog(t, nc, js)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const old = 20
	first := map[string]uint64{}
	for k := range old {
		id := fmt.Sprintf("old-%d", k)
		a, err := l.Append(ctx, "dups", Out, Record{ID: id}, seqBody)
		if err != nil {
			t.Fatal(err)
		}
		first[id] = a.Seq
	}
	const writers, per = 16, 20
	type got struct {
		id string
		a  Appended
	}
	results := make(chan got, 2*writers*per)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				ids := []string{fmt.Sprintf("new-%d-%d", w, k), fmt.Sprintf("old-%d", (w+k)%old)}
				if k%4 == 0 {
					// The same new id from two writers at once.
					ids[1] = fmt.Sprintf("twin-%d-%d", w/2, k)
				}
				for _, id := range ids {
					a, err := l.Append(ctx, "dups", Out, Record{ID: id}, seqBody)
					if err != nil {
						t.Errorf("append %s: %v", id, err)
						return
					}
					results <- got{id, a}
				}
			}
		}()
	}
	wg.Wait()
	close(results)
	if t.Failed() {
		return
	}
	acked := map[string]uint64{}
	for id, seq := range first {
		acked[id] = seq
	}
	stored := map[string]int{}
	for r := range results {
		if prev, ok := acked[r.id]; ok && prev != r.a.Seq {
			t.Fatalf("%s at seq %d and %d", r.id, prev, r.a.Seq)
		}
		acked[r.id] = r.a.Seq
		if _, isOld := first[r.id]; isOld && !r.a.Duplicate {
			t.Fatalf("resent %s not reported a duplicate: %+v", r.id, r.a)
		}
		if !r.a.Duplicate {
			stored[r.id]++
		}
	}
	for id, n := range stored {
		if n != 1 {
			t.Fatalf("%s reported stored (not a duplicate) %d times", id, n)
		}
	}
	msgs, _ := checkLog(t, js, "haip.session.dups.out", acked)
	if len(msgs) != len(acked) {
		t.Fatalf("%d messages stored, want %d ids", len(msgs), len(acked))
	}
}

// Two Logs (two processes) with many writers each on one session: the
// batches race by compare-and-set, the loser re-reads the end and builds
// its batch again; seqs stay dense and every message is stored once.
func TestGroupCommitTwoWriters(t *testing.T) {
	t.Parallel()
	ns, nc, js := ensured(t)
	nc2 := natstest.Conn(t, ns)
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	logs := []*Log{openTestLog(t, nc, js), openTestLog(t, nc2, js2)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const writers, per = 12, 30
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	for i, l := range logs {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range per {
					id := fmt.Sprintf("l%d-w%d-%d", i, w, k)
					a, err := l.Append(ctx, "two", Out, Record{ID: id}, seqBody)
					if err != nil || a.Duplicate {
						t.Errorf("append %s: %+v %v", id, a, err)
						return
					}
					mu.Lock()
					acked[id] = a.Seq
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	msgs, _ := checkLog(t, js, "haip.session.two.out", acked)
	if len(msgs) != 2*writers*per {
		t.Fatalf("%d messages stored, want %d", len(msgs), 2*writers*per)
	}
}

// A caller whose ctx ends while its append waits for a batch leaves the
// queue (its message is not stored); one whose message is in the batch in
// flight gets an error at once; the batch goes on and stores every other
// message.
func TestGroupCommitCallerLeaves(t *testing.T) {
	t.Parallel()
	_, nc, js := ensured(t)
	l := openTestLog(t, nc, js)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	l.beforeCommit = func([]*nats.Msg) {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	subj := "haip.session.leaves.out"
	// Hold the subject as an append in flight would, so the next appends
	// queue.
	q := &subjectQueue{busy: true}
	l.batches.mu.Lock()
	l.batches.subjects[subj] = q
	l.batches.mu.Unlock()
	queued := func() int {
		l.batches.mu.Lock()
		defer l.batches.mu.Unlock()
		return len(q.queue)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type outcome struct {
		a   Appended
		err error
	}
	const members = 5
	leaver := 2
	leaverCtx, leave := context.WithCancel(ctx)
	defer leave()
	outs := make([]chan outcome, members)
	for i := range members {
		outs[i] = make(chan outcome, 1)
		c := ctx
		if i == leaver {
			c = leaverCtx
		}
		go func() {
			a, err := l.Append(c, "leaves", Out, Record{ID: fmt.Sprintf("m%d", i)}, seqBody)
			outs[i] <- outcome{a, err}
		}()
		// One at a time, so the queue's order is i's.
		testkit.Eventually(t, 10*time.Second, func() bool { return queued() == i+1 }, "append did not queue")
	}
	l.handOver(subj, q)
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the batch never reached its commit")
	}

	// Queued for the next batch, then gone: not stored.
	lateCtx, late := context.WithCancel(ctx)
	lateOut := make(chan error, 1)
	go func() {
		_, err := l.Append(lateCtx, "leaves", Out, Record{ID: "late"}, seqBody)
		lateOut <- err
	}()
	testkit.Eventually(t, 10*time.Second, func() bool { return queued() == 1 }, "late append did not queue")
	late()
	if err := <-lateOut; !errors.Is(err, context.Canceled) {
		t.Fatalf("late append: %v, want canceled", err)
	}
	// In the batch in flight, then gone: told at once.
	leave()
	if o := <-outs[leaver]; !errors.Is(o.err, context.Canceled) {
		t.Fatalf("leaver: %+v, want canceled", o)
	}

	close(release)
	acked := map[string]uint64{}
	for i := range members {
		if i == leaver {
			continue
		}
		o := <-outs[i]
		if o.err != nil || o.a.Seq != uint64(i+1) {
			t.Fatalf("member %d: %+v %v, want seq %d", i, o.a, o.err, i+1)
		}
		acked[fmt.Sprintf("m%d", i)] = o.a.Seq
	}
	msgs, inBatches := checkLog(t, js, subj, acked)
	if len(msgs) != members || inBatches != members {
		t.Fatalf("%d messages stored (%d in batches), want the batch of %d", len(msgs), inBatches, members)
	}
}

// A session stream made before atomic batches (without
// AllowAtomicPublish) gets it from Ensure, and batches then commit.
func TestEnsureAllowsAtomicPublish(t *testing.T) {
	t.Parallel()
	ns := natstest.Server(t)
	nc := natstest.Conn(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := Config{}.SessionStreamConfig()
	old.AllowAtomicPublish = false
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, js, Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, SessionStream)
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.AllowAtomicPublish {
		t.Fatal("Ensure left the session stream without atomic publish")
	}
	l := openTestLog(t, nc, js)
	var wg sync.WaitGroup
	acked := make([]uint64, 16)
	for i := range acked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := l.Append(ctx, "upgraded", Out, Record{}, seqBody)
			if err != nil {
				t.Error(err)
			}
			acked[i] = a.Seq
		}()
	}
	wg.Wait()
	msgs, _ := checkLog(t, js, "haip.session.upgraded.out", nil)
	if len(msgs) != len(acked) {
		t.Fatalf("%d stored, want %d", len(msgs), len(acked))
	}
}

// Atomic batches are used on replicated session streams that allow them;
// a single-node stream stages each batch on disk (slower than one publish
// per message), so its queued appends go one by one.
func TestUseAtomicBatches(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  Config
		want bool
	}{{Config{}, false}, {Config{Replicas: 3}, true}} {
		if got := useAtomicBatches(c.cfg.SessionStreamConfig()); got != c.want {
			t.Errorf("replicas %d: atomic batches %v, want %v", c.cfg.Replicas, got, c.want)
		}
	}
	sc := Config{Replicas: 3}.SessionStreamConfig()
	sc.AllowAtomicPublish = false
	if useAtomicBatches(sc) {
		t.Error("atomic batches on a stream that does not allow them")
	}
}

// The commit's ack: a whole batch's gives its last stream seq; an error
// is the server's (conflicts are told apart); anything else is refused.
func TestParseBatchAck(t *testing.T) {
	t.Parallel()
	if seq, err := parseBatchAck([]byte(`{"stream":"HAIP_SESSIONS","seq":42,"batch":"b1","count":3}`), 3); err != nil || seq != 42 {
		t.Fatalf("ack: %d %v", seq, err)
	}
	_, err := parseBatchAck([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 7"}}`), 3)
	if !isConflict(err) {
		t.Fatalf("conflict not told: %v", err)
	}
	for _, bad := range []string{``, `{`, `{"seq":42,"count":2}`, `{"seq":1,"count":3}`, `null`, `[]`} {
		if _, err := parseBatchAck([]byte(bad), 3); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseBatchAck(f *testing.F) {
	f.Add([]byte(`{"stream":"HAIP_SESSIONS","seq":42,"batch":"b1","count":3}`), 3)
	f.Add([]byte(`{"error":{"code":400,"err_code":10201,"description":"atomic publish batch contains duplicate message id"}}`), 2)
	f.Add([]byte(`{"seq":18446744073709551615,"count":1}`), 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		seq, err := parseBatchAck(data, n)
		if err == nil && (n <= 0 || seq < uint64(n)) {
			t.Fatalf("ack %q for %d messages gave seq %d", data, n, seq)
		}
	})
}
