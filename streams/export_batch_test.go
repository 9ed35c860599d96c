package streams

import (
	"os"

	"github.com/nats-io/nats.go"
)

// SetBeforeCommit makes l call f with each batch's messages after all but
// its commit are published (the crash tests stop a writer there).
func SetBeforeCommit(l *Log, f func(msgs []*nats.Msg)) { l.beforeCommit = f }

// IsBatchChild reports a test binary started as the crash tests' writer
// process.
func IsBatchChild() bool { return os.Getenv(batchChildEnv) != "" }

// BatchChild runs the crash tests' writer process (batchChild).
func BatchChild() int { return batchChild() }
