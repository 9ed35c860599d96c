package streams_test

import (
	"os"
	"testing"

	"github.com/haipfabric/haipfabric/internal/testkit"
	"github.com/haipfabric/haipfabric/streams"
)

func TestMain(m *testing.M) {
	// The crash tests start this binary as a writer process.
	if streams.IsBatchChild() {
		os.Exit(streams.BatchChild())
	}
	testkit.Main(m)
}
