package streams

import "github.com/nats-io/nats.go"

// SetBeforeCommit makes l call f with each batch's messages after all but
// its commit are published (the crash tests stop a writer there).
func SetBeforeCommit(l *Log, f func(msgs []*nats.Msg)) { l.beforeCommit = f }
