package localcluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailLines is how many log lines an error quotes.
const tailLines = 30

// quitGrace is how long a process that ignored SIGTERM gets to write its
// goroutine dump after SIGQUIT.
const quitGrace = 5 * time.Second

// proc is one child process that can be started, stopped and started again.
// Its stdout and stderr are appended to one log file; each start writes a
// "=== start" marker first. Safe for concurrent use.
type proc struct {
	name    string
	bin     string
	args    []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	exitErr error         // the exit status, set before done is closed
	logFrom int64         // log size when the current process started
}

// start launches the process with env (appended to this process's
// environment; later entries win). It fails when the process is running.
func (p *proc) start(env []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", p.name, err)
	}
	from, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s: log: %w", p.name, err)
	}
	fmt.Fprintf(logf, "=== start %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.logFrom = cmd, done, nil, from
	// Owned by the process: it ends when the process exits, which stop
	// waits for.
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		if p.done == done {
			p.exitErr = err
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// running reports whether the process was started and has not exited.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// pid is the running process's id, 0 when it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

// exited returns a non-nil error when the process was started and has
// exited (on its own or killed), quoting its exit status and log.
func (p *proc) exited() error {
	p.mu.Lock()
	cmd, done, exitErr := p.cmd, p.done, p.exitErr
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s is not started", p.name)
	}
	if !isClosed(done) {
		return nil
	}
	if exitErr == nil {
		exitErr = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited (%v)\n%s", p.name, exitErr, p.tail())
}

// stop sends sig and waits up to grace for the process to exit, then
// SIGKILLs it. It returns the exit status when the process did not stop
// cleanly (killed after grace, or non-zero after sig); nil when it was not
// running. A process that exited before stop is forgotten silently.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		if sig == syscall.SIGKILL {
			<-done
			return nil
		}
		// A Go process dumps its goroutines on SIGQUIT: say where it hung.
		p.mu.Lock()
		from := p.logFrom
		p.mu.Unlock()
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(quitGrace):
			_ = cmd.Process.Kill()
			<-done
		}
		return fmt.Errorf("%s did not stop within %s of %s: killed; where it was:\n%s", p.name, grace, sig, stuckGoroutines(p.logPath, from))
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	p.mu.Lock()
	err := p.exitErr
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s after %s: %w\n%s", p.name, sig, err, p.tail())
	}
	return nil
}

// kill SIGKILLs the process and waits for it to exit.
func (p *proc) kill() { _ = p.stop(syscall.SIGKILL, 10*time.Second) }

// logSinceStart is what the current process has logged so far.
func (p *proc) logSinceStart() string {
	p.mu.Lock()
	from := p.logFrom
	p.mu.Unlock()
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 16<<20))
	return string(b)
}

// tail is the last lines of the log, indented, for error messages.
func (p *proc) tail() string {
	return fmt.Sprintf("last lines of %s:\n%s", p.logPath, TailFile(p.logPath, tailLines))
}

// TailFile returns the last n lines of the file at path, indented by two
// spaces (at most the last 64 KiB are read): for quoting a process's log.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	defer f.Close()
	const maxRead = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		_, _ = f.Seek(st.Size()-maxRead, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// stuckGoroutines summarises a Go goroutine dump written to the log at
// path after offset from: each goroutine's header and its frames in this
// module, at most maxDumpLines lines.
func stuckGoroutines(path string, from int64) string {
	const maxDumpLines = 120
	f, err := os.Open(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return "  (" + err.Error() + ")"
	}
	b, _ := io.ReadAll(io.LimitReader(f, 16<<20))
	text := string(b)
	i := strings.Index(text, "SIGQUIT")
	if i < 0 {
		return "  (no goroutine dump in " + path + ")"
	}
	var out []string
	for _, block := range strings.Split(text[i:], "\n\n") {
		lines := strings.Split(block, "\n")
		if !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		var ours []string
		for _, l := range lines[1:] {
			if strings.Contains(l, "haipfabric/") && !strings.HasPrefix(l, "\t") {
				ours = append(ours, "    "+l)
			}
		}
		if len(ours) == 0 {
			continue
		}
		out = append(out, "  "+lines[0])
		out = append(out, ours...)
		if len(out) >= maxDumpLines {
			out = append(out[:maxDumpLines], "  ...")
			break
		}
	}
	if len(out) == 0 {
		return "  (no goroutine of this module in the dump in " + path + ")"
	}
	return strings.Join(out, "\n")
}
