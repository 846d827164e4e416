package api

import (
	"log/slog"
	"os"
	"testing"

	"github.com/keyalert/keyalert/pkg/redislog"
)

// go-redis logs every failed dial of the Redis-down tests; keyalertd routes
// those lines into its log at debug level, and so do these tests.
func TestMain(m *testing.M) {
	redislog.Route(slog.New(slog.DiscardHandler), slog.LevelDebug)
	os.Exit(m.Run())
}
