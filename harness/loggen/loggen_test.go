package loggen

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunWritesBurstsOfExceptions(t *testing.T) {
	clock := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	o := Options{Rate: 10, BurstEvery: 5 * time.Second, BurstLines: 3, Host: "web-7", Seed: 42}
	var buf bytes.Buffer
	n, err := Run(context.Background(), &buf, o, 500, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 500 {
		t.Fatalf("wrote %d lines, want 500", n)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 500 {
		t.Fatalf("got %d lines, want 500", len(lines))
	}
	exceptions := strings.Count(buf.String(), "Exception")
	if exceptions == 0 {
		t.Fatal("no Exception line in 500 lines with a burst every 5s")
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "\tat ") && !strings.Contains(l, "[web-7]") {
			t.Fatalf("line without the host label: %q", l)
		}
	}
}

func TestRunRejectsZeroRate(t *testing.T) {
	if _, err := Run(context.Background(), &bytes.Buffer{}, Options{}, 1, 0, time.Now); err == nil {
		t.Fatal("rate 0 accepted")
	}
}
