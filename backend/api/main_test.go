package api

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/keyalert/keyalert/harness/openapitest"
	"github.com/keyalert/keyalert/pkg/redislog"
)

// go-redis logs every failed dial of the Redis-down tests; keyalertd routes
// those lines into its log at debug level, and so do these tests. A whole
// run (no -run) fails when an operation of openapi.yaml got no 2xx from
// any test: every test server checks its exchanges against the document
// (checked), so that is an operation whose success answer nothing checked.
func TestMain(m *testing.M) {
	redislog.Route(slog.New(slog.DiscardHandler), slog.LevelDebug)
	code := m.Run()
	if d, err := openapitest.Load(openapiYAML); err == nil && code == 0 && flag.Lookup("test.run").Value.String() == "" {
		if ops := d.Unexercised(); len(ops) > 0 {
			// Every documented operation is checked by at least one
			// exchange that worked, not only by its error answers.
			fmt.Fprintf(os.Stderr, "FAIL: openapi.yaml operations no test of this package got a 2xx from: %v\n", ops)
			code = 1
		}
	}
	os.Exit(code)
}
