package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCountsOverTheCellLimitGet400NamingIt(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxCellsPerQuery = 2 })
	for _, h := range []string{"web-1", "web-2", "web-3"} {
		f.count(t, "substring:Error", minute(10, 29), h, "app", 1)
	}
	tests := []struct {
		name, path, field string
	}{
		{"top", "/api/v1/counts/top?keyword=Error&window=5m", "window"},
		{"counts", "/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T10:31:00Z", "to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Error
			if code := f.get(t, tt.path, "tok-a", &e); code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", code)
			}
			if len(e.Fields) != 1 || e.Fields[0].Field != tt.field ||
				!strings.Contains(e.Fields[0].Message, "limit of 2 (KEYALERT_MAX_CELLS_PER_QUERY)") {
				t.Errorf("error %+v: want field %s naming the limit", e, tt.field)
			}
		})
	}
}

func TestCountsQueriesOverTheConcurrencyLimitGet503(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxConcurrentQueries = 1 })
	ctx := context.Background()
	tests := []string{
		"/api/v1/counts/top?keyword=Error",
		"/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T10:31:00Z",
	}
	// A paused Redis holds the one slot with a query that waits for it.
	if err := f.rdb.Do(ctx, "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	held := make(chan int)
	go func() { held <- f.get(t, tests[0], "tok-a", nil) }()
	time.Sleep(300 * time.Millisecond)
	for _, path := range tests {
		var e Error
		if code := f.get(t, path, "tok-a", &e); code != http.StatusServiceUnavailable || !strings.Contains(e.Error, "KEYALERT_MAX_CONCURRENT_QUERIES") {
			t.Errorf("%s: status %d %+v, want 503 naming the limit", path, code, e)
		}
	}
	if err := f.rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	if code := <-held; code != http.StatusOK {
		t.Errorf("the query holding the slot: status %d, want 200", code)
	}
	for _, path := range tests {
		if code := f.get(t, path, "tok-a", nil); code != http.StatusOK {
			t.Errorf("%s after the slot is free: status %d, want 200", path, code)
		}
	}
}
