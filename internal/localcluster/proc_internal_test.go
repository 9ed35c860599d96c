package localcluster

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haipfabric/haipfabric/internal/testkit"
)

// hangEnv makes this test binary a child that ignores SIGTERM.
const hangEnv = "LOCALCLUSTER_TEST_HANG"

// A process that ignores SIGTERM is killed after its grace period, and
// the error says where its goroutines were (from its SIGQUIT dump).
func TestStopQuotesWhereAHungProcessWas(t *testing.T) {
	if os.Getenv(hangEnv) == "1" {
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("hanging")
		<-time.After(time.Minute) // killed long before
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: "hung", bin: exe, args: []string{"-test.run=^TestStopQuotesWhereAHungProcessWas$"},
		logPath: filepath.Join(t.TempDir(), "hung.log")}
	if err := p.start([]string{hangEnv + "=1"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() bool {
		if !p.running() {
			t.Fatalf("child exited before it hung:\n%s", p.tail())
		}
		return strings.Contains(p.logSinceStart(), "hanging")
	}, "child never hung", p.tail)
	err = p.stop(syscall.SIGTERM, 200*time.Millisecond)
	if err == nil {
		t.Fatal("stop of a process ignoring SIGTERM succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "did not stop within") || !strings.Contains(msg, "TestStopQuotesWhereAHungProcessWas") {
		t.Fatalf("error does not say where the process hung:\n%s", msg)
	}
	t.Log(msg)
	if p.running() {
		t.Fatal("still running after stop")
	}
}
