package clustertest_test

import (
	"testing"

	"github.com/haipfabric/haipfabric/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.SkipProcessesIfShort("the cluster tests of internal/clustertest")
	testkit.Main(m)
}
