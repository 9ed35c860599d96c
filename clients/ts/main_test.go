package ts_test

import (
	"testing"

	"github.com/haipfabric/haipfabric/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.SkipProcessesIfShort("the TypeScript client's tests of clients/ts (npm, edge processes, Chromium)")
	testkit.Main(m)
}
