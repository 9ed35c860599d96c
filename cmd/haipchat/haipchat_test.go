package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/auth"
	"github.com/haipfabric/haipfabric/client"
	"github.com/haipfabric/haipfabric/edge"
	"github.com/haipfabric/haipfabric/haip"
	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/internal/testkit/harness"
	"github.com/haipfabric/haipfabric/streams"
	"github.com/haipfabric/haipfabric/worker/demo"
)

// testEdge is the test kit's fabric with an edge, served through a
// Cutter, and a demo agent, all stopped in t.Cleanup.
type testEdge struct {
	*harness.Edge
	f     *harness.Fabric
	conns *harness.Cutter
}

func newTestEdge(t *testing.T, agentDelay time.Duration) *testEdge {
	t.Helper()
	f := harness.New(t, streams.Config{})
	conns := &harness.Cutter{}
	e := f.EdgeWrapped(nil, edge.Config{}, nil, conns.Wrap)
	f.Agent(agentDelay)
	return &testEdge{Edge: e, f: f, conns: conns}
}

// token mints a user token for sub.
func (e *testEdge) token(sub string) string { return e.f.Token(sub, auth.RoleUser) }

// session is one run of the command with piped stdin.
type session struct {
	t        *testing.T
	in       *io.PipeWriter
	out, err *testkit.Buffer
	done     chan error
}

func start(t *testing.T, args ...string) *session {
	t.Helper()
	pr, pw := io.Pipe()
	s := &session{t: t, in: pw, out: &testkit.Buffer{}, err: &testkit.Buffer{}, done: make(chan error, 1)}
	go func() { s.done <- run(context.Background(), args, pr, s.out, s.err) }()
	// Ends the stdin reader run leaves behind (see run).
	t.Cleanup(func() { _ = pw.Close() })
	return s
}

// send types a line. If run has returned, nobody reads stdin: the test
// fails with run's error instead of waiting forever.
func (s *session) send(line string) {
	s.t.Helper()
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(s.in, line+"\n")
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			s.t.Fatalf("write %q: %v", line, err)
		}
	case err := <-s.done:
		_ = s.in.CloseWithError(errors.New("run returned"))
		if werr := <-wrote; werr == nil {
			// The line was read, and run returned after it (as /quit
			// does): both were ready at once. Keep run's end for wait.
			s.done <- err
			return
		}
		s.t.Fatalf("run returned (%v) before reading %q; stdout:\n%s\nstderr:\n%s", err, line, s.out, s.err)
	}
}

func (s *session) waitOut(what string, cond func(out string) bool) {
	s.t.Helper()
	testkit.Eventually(s.t, 10*time.Second, func() bool { return cond(s.out.String()) }, what,
		func() string { return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", s.out, s.err) })
}

func (s *session) wait() error {
	s.t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(10 * time.Second):
		s.t.Fatalf("run did not return; stdout:\n%s", s.out)
		return nil
	}
}

var seqLabel = regexp.MustCompile(`\[seq (\d+)(?:-(\d+))?\]`)

// printedSeqs expands every [seq N] and [seq A-B] label in out, in order.
func printedSeqs(t *testing.T, out string) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, m := range seqLabel.FindAllStringSubmatch(out, -1) {
		a, _ := strconv.ParseUint(m[1], 10, 64)
		b := a
		if m[2] != "" {
			b, _ = strconv.ParseUint(m[2], 10, 64)
		}
		for s := a; s <= b; s++ {
			seqs = append(seqs, s)
		}
	}
	return seqs
}

// The user chats, resumes by hand, chats again and quits, over each
// transport: every log seq is printed once, in order across the resume,
// and the exit line names the last one.
func TestChatResumeQuit(t *testing.T) {
	t.Parallel()
	e := newTestEdge(t, -1)
	for _, tr := range client.Transports() {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			s := start(t, "-url", e.WS, "-token", e.token("alice"), "-transport", tr)

			s.send("hello")
			s.waitOut("first answer", func(out string) bool {
				return strings.Contains(out, demo.Answer("hello")) && strings.Contains(out, "RUN_FINISHED")
			})
			firstLast := printedSeqs(t, s.out.String())
			s.send("/resume")
			s.send("again")
			s.waitOut("second answer", func(out string) bool {
				return strings.Contains(out, demo.Answer("again")) && strings.Count(out, "RUN_FINISHED") == 2
			})
			s.send("/quit")
			if err := s.wait(); err != nil {
				t.Fatalf("run: %v\n%s", err, s.out)
			}

			out := s.out.String()
			session := regexp.MustCompile(`(?m)^session (\S+)$`).FindStringSubmatch(out)
			if session == nil {
				t.Fatalf("no session line:\n%s", out)
			}
			if want := fmt.Sprintf("resuming from seq %d\n", len(firstLast)); !strings.Contains(out, want) {
				t.Fatalf("no %q:\n%s", want, out)
			}
			seqs := printedSeqs(t, out)
			harness.AssertDenseSeqs(t, seqs, 1, out)
			if len(seqs) <= len(firstLast) {
				t.Fatalf("nothing printed after the resume:\n%s", out)
			}
			last := seqs[len(seqs)-1]
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if got, want := lines[len(lines)-1], fmt.Sprintf("last seq %d (resume with -session %s -last-seq %d)", last, session[1], last); got != want {
				t.Fatalf("last line %q, want %q", got, want)
			}
		})
	}
}

// A connection cut by the network in the middle of an answer is resumed
// on its own; in quiet mode stdout is exactly the answer, nothing lost or
// repeated, and the resume hint goes to stderr.
func TestQuietAutoResumeMidAnswer(t *testing.T) {
	t.Parallel()
	e := newTestEdge(t, 10*time.Millisecond)
	s := start(t, "-url", e.WS, "-token", e.token("bob"), "-quiet")

	s.send("cut me off")
	s.waitOut("the answer to begin", func(out string) bool { return strings.Contains(out, "Hello from the") })
	e.conns.Cut()
	s.waitOut("the answer to end", func(out string) bool { return strings.HasSuffix(out, "\n") })
	s.send("/quit")
	if err := s.wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, s.err)
	}
	if got, want := s.out.String(), demo.Answer("cut me off")+"\n"; got != want {
		t.Fatalf("stdout\n%q, want\n%q", got, want)
	}
	if n := e.conns.Count(); n != 2 {
		t.Fatalf("%d connections, want 2 (one resume)", n)
	}
	if !regexp.MustCompile(`last seq \d+ \(resume with -session \S+ -last-seq \d+\)\n$`).MatchString(s.err.String()) {
		t.Fatalf("stderr has no resume hint:\n%s", s.err)
	}
}

// Refusals before the stream starts are final, on every transport: run
// fails at once, naming the HTTP status, without retrying.
func TestRefused(t *testing.T) {
	t.Parallel()
	e := newTestEdge(t, -1)

	// alice owns a session that bob then tries to join.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: e.WS, Token: e.token("alice")})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{name: "bad token", args: []string{"-token", "not-a-jwt"}, want: "401"},
		{name: "foreign session", args: []string{"-token", e.token("bob"), "-session", c.Session()}, want: "403"},
	}
	for _, tc := range cases {
		for _, tr := range client.Transports() {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				t.Parallel()
				began := time.Now()
				s := start(t, append([]string{"-url", e.WS, "-transport", tr}, tc.args...)...)
				err := s.wait()
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("run: %v, want an error naming %s", err, tc.want)
				}
				if d := time.Since(began); d > 2*time.Second {
					t.Fatalf("took %s", d)
				}
			})
		}
	}
}

// Command-line mistakes are usage errors, all reported at once.
func TestFlags(t *testing.T) {
	t.Setenv(tokenEnv, "")
	_, err := parseFlags([]string{"-session", "bad session", "-last-seq", "3"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-token") || !strings.Contains(err.Error(), "-session") {
		t.Fatalf("err %v, want both -token and -session named", err)
	}
	if _, err := parseFlags([]string{"-token", "x", "-last-seq", "3"}, io.Discard); err == nil || !strings.Contains(err.Error(), "needs -session") {
		t.Fatalf("err %v", err)
	}
	if _, err := parseFlags([]string{"-token", "x", "-transport", "carrier-pigeon"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-transport") {
		t.Fatalf("err %v, want -transport named", err)
	}
	cfg, err := parseFlags([]string{"-token", "x", "-session", "s1", "-last-seq", "0"}, io.Discard)
	if err != nil || cfg.LastSeq == nil || *cfg.LastSeq != 0 {
		t.Fatalf("cfg %+v, err %v", cfg, err)
	}
}

// The printer labels every log seq once, keeps a message interrupted by a
// resume on two labelled lines, and shows replays and errors apart.
func TestPrinter(t *testing.T) {
	var out bytes.Buffer
	c := &chat{out: &printer{out: &out, diag: io.Discard}}
	var seq uint64
	msg := haip.NewUUID()
	env := func(typ haip.Type, payload any) *haip.Envelope {
		t.Helper()
		e, err := haip.New("s1", haip.ChannelAgent, typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		if !client.IsControl(typ) {
			seq++
		}
		e.Seq = haip.U64(seq)
		return e
	}
	part := func(text string) *haip.Envelope {
		return env(haip.TypeTextMessagePart, haip.TextMessagePartPayload{MessageID: msg, Text: text})
	}
	c.show(env(haip.TypeFlowUpdate, haip.FlowUpdatePayload{Channel: haip.ChannelAgent}))
	c.show(env(haip.TypeRunStarted, map[string]any{}))
	c.show(env(haip.TypeTextMessageStart, haip.TextMessageStartPayload{MessageID: msg, Author: "bot"}))
	c.show(part("one "))
	c.show(part("two "))
	c.out.status("resuming from seq %d", c.pos)
	c.show(part("three"))
	c.show(env(haip.TypeTextMessageEnd, haip.TextMessageEndPayload{MessageID: msg}))
	c.show(env(haip.TypeRunFinished, haip.RunFinishedPayload{Status: haip.RunStatusOK}))
	replayed := part("one ")
	replayed.Seq, seq = 3, seq-1
	c.show(replayed)
	c.show(env(haip.TypeError, haip.ErrorPayload{Code: haip.CodeReplayTooOld, Message: "gone"}))

	want := `[seq 1] RUN_STARTED
[seq 2] bot: one two [seq 3-4]
resuming from seq 4
[seq 5] bot: … three [seq 6]
[seq 7] RUN_FINISHED OK
[seq 3] (replayed) TEXT_MESSAGE_PART "one "
error REPLAY_TOO_OLD: gone
`
	if got := out.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if c.pos != 7 {
		t.Fatalf("pos %d, want 7", c.pos)
	}
}

// The demo agent asks before a tool ("approve add 2 3"); /approve with
// the call id printed in its TOOL_CALL lets it go on.
func TestApproveCommand(t *testing.T) {
	t.Parallel()
	e := newTestEdge(t, -1)
	e.f.Tools("tools", 1)
	s := start(t, "-url", e.WS, "-token", e.token("alice"))
	s.send("approve add 2 3")
	call := regexp.MustCompile(`TOOL_CALL user_approval .*\(call (\S+)\)`)
	s.waitOut("the approval request", func(out string) bool { return call.MatchString(out) })
	id := call.FindStringSubmatch(s.out.String())[1]
	s.send("/approve " + id + " looks fine")
	s.waitOut("the answer after the approval", func(out string) bool {
		return strings.Contains(out, "I called the tool add.") && strings.Contains(out, "RUN_FINISHED")
	})
	s.send("/quit")
	if err := s.wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, s.out)
	}
}
