package browser_test

import (
	"testing"

	"github.com/haipfabric/haipfabric/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }
