package flbhost

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
)

// StartForTest starts the host with the plugin from the build directory and
// closes it when the test ends. The plugin's stderr goes to the test log. When
// the binaries are missing the test is skipped ("run `make build` first"),
// or fails under KEYALERT_REQUIRE_REDIS=1 (as `make test` sets it).
func StartForTest(tb testing.TB, opts ...Option) *Host {
	tb.Helper()
	so, host, err := Paths()
	if err != nil {
		tb.Fatalf("flbhost: %v", err)
	}
	for _, p := range []string{so, host} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("KEYALERT_REQUIRE_REDIS") == "1" {
				tb.Fatalf("flbhost: %s missing: run `make build` first", p)
			}
			tb.Skipf("flbhost: %s missing: run `make build` first", p)
		}
	}
	lw := &tbWriter{tb: tb}
	opts = append([]Option{WithStderr(lw)}, opts...)
	h, err := Start(context.Background(), so, host, opts...)
	if err != nil {
		tb.Fatalf("flbhost: %v", err)
	}
	tb.Cleanup(func() {
		if err := h.Close(); err != nil {
			tb.Errorf("flbhost: close: %v", err)
		}
		lw.stop()
	})
	return h
}

// tbWriter logs whole lines to a test; after stop it drops them, because a
// test's log must not be written once the test has finished.
type tbWriter struct {
	tb      testing.TB
	mu      sync.Mutex
	partial []byte
	stopped bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.tb.Log("plugin: " + string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.tb.Log("plugin: " + string(w.partial))
	}
	w.stopped = true
}
