package integration

import (
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
)

func TestMain(m *testing.M) { hulltest.Main(m) }
