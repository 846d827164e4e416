package api

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/stream"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// tieredFixture holds counts in both tiers around the fixture's clock
// (2024-05-01 10:30:20, minute retention 7 days, so the minute tier starts
// at 2024-04-24 11:00): two hours only in the hourly tier (their minutes
// rolled up, then gone as if expired), and minutes of the last week.
func tieredFixture(t *testing.T, mutate func(o *Options)) *fixture {
	t.Helper()
	f := newFixture(t, mutate)
	ctx := context.Background()
	store := window.NewStore(f.rdb, stream.DefaultStream)
	const kw = "substring:Error"
	roll := func(hour time.Time, gone bool, cells ...func()) {
		for _, c := range cells {
			c()
		}
		// Hourly keys expire from Redis's clock, which is not the fixture's.
		if _, _, err := store.RollHour(ctx, kw, hour.Unix(), time.Now().Add(time.Hour).Unix()); err != nil {
			t.Fatal(err)
		}
		if gone {
			for m := hour; m.Before(hour.Add(time.Hour)); m = m.Add(time.Minute) {
				f.rdb.Del(ctx, f.kw.Window(kw, m.Unix()))
			}
		}
	}
	roll(at("2024-04-22T08:00:00Z"), true,
		func() { f.count(t, kw, at("2024-04-22T08:05:00Z"), "web-1", "app", 3) },
		func() { f.count(t, kw, at("2024-04-22T08:50:00Z"), "web-2", "nginx", 4) })
	// The hour holding the minute retention's edge: its minute 10:40 is
	// still kept, but the hour is read whole from the hourly tier.
	roll(at("2024-04-24T10:00:00Z"), false,
		func() { f.count(t, kw, at("2024-04-24T10:40:00Z"), "web-1", "app", 5) })
	f.count(t, kw, at("2024-04-30T09:00:00Z"), "web-1", "app", 2)
	f.count(t, kw, at("2024-05-01T10:29:00Z"), "web-2", "app", 1)
	return f
}

func TestCountsOverBothTiersEqualGroundTruth(t *testing.T) {
	f := tieredFixture(t, nil)
	const rng = "/api/v1/counts?keyword=Error&from=2024-04-20T00:00:00Z&to=2024-05-01T10:31:00Z"
	tests := []struct {
		name, query string
		want        []Point
		total       int64
	}{
		{"all hosts", "", []Point{
			{Minute: at("2024-04-22T08:00:00Z"), Step: 3600, Count: 7},
			{Minute: at("2024-04-24T10:00:00Z"), Step: 3600, Count: 5},
			{Minute: at("2024-04-30T09:00:00Z"), Step: 60, Count: 2},
			{Minute: at("2024-05-01T10:29:00Z"), Step: 60, Count: 1},
		}, 15},
		{"one host", "&host=web-1", []Point{
			{Minute: at("2024-04-22T08:00:00Z"), Step: 3600, Count: 3},
			{Minute: at("2024-04-24T10:00:00Z"), Step: 3600, Count: 5},
			{Minute: at("2024-04-30T09:00:00Z"), Step: 60, Count: 2},
		}, 10},
		{"one tag", "&tag=nginx", []Point{
			{Minute: at("2024-04-22T08:00:00Z"), Step: 3600, Count: 4},
		}, 4},
		{"host and tag", "&host=web-2&tag=app", []Point{
			{Minute: at("2024-05-01T10:29:00Z"), Step: 60, Count: 1},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got CountsResponse
			if code := f.get(t, rng+tt.query, "tok-a", &got); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if !reflect.DeepEqual(got.Points, tt.want) || got.Total != tt.total {
				t.Errorf("points %+v total %d, want %+v total %d", got.Points, got.Total, tt.want, tt.total)
			}
		})
	}
}

func TestCountsOfRecentMinutesKeepTheirShape(t *testing.T) {
	f := tieredFixture(t, nil)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/v1/counts?keyword=Error&from=2024-04-30T00:00:00Z&to=2024-05-01T10:31:00Z", nil)
	req.Header.Set("Authorization", "Bearer tok-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `"points":[{"minute":"2024-04-30T09:00:00Z","count":2},{"minute":"2024-05-01T10:29:00Z","count":1}],"total":3,"counted":`
	if !strings.Contains(string(body), want) {
		t.Errorf("body %s, want it to hold %s", body, want)
	}
}

func TestTopOverBothTiersEqualsGroundTruth(t *testing.T) {
	f := tieredFixture(t, nil)
	tests := []struct {
		query string
		want  []TopItem
		total int64
		from  string
	}{
		{"&window=10d", []TopItem{{"web-1", 10}, {"web-2", 5}}, 15, "2024-04-21T10:00:00Z"},
		{"&window=10d&by=tag", []TopItem{{"app", 11}, {"nginx", 4}}, 15, "2024-04-21T10:00:00Z"},
		{"&window=7d", []TopItem{{"web-1", 7}, {"web-2", 1}}, 8, "2024-04-24T10:00:00Z"},
		{"&window=2d", []TopItem{{"web-1", 2}, {"web-2", 1}}, 3, "2024-04-29T10:31:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var got TopResponse
			if code := f.get(t, "/api/v1/counts/top?keyword=Error"+tt.query, "tok-a", &got); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if !reflect.DeepEqual(got.Items, tt.want) || got.Total != tt.total || !got.From.Equal(at(tt.from)) {
				t.Errorf("items %+v total %d from %s, want %+v total %d from %s", got.Items, got.Total, got.From, tt.want, tt.total, tt.from)
			}
		})
	}
}

func TestReadsOverBothTiersOverTheCellLimitGet400NamingIt(t *testing.T) {
	tests := []struct {
		name, path, field string
		max               int64
	}{
		// 107 hours from the hourly tier, one cell each.
		{"counts", "/api/v1/counts?keyword=Error&from=2024-04-20T00:00:00Z&to=2024-05-01T10:31:00Z", "to", 100},
		// Three hourly host entries beside the minutes' cells.
		{"top", "/api/v1/counts/top?keyword=Error&window=10d", "window", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tieredFixture(t, func(o *Options) { o.MaxCellsPerQuery = tt.max })
			var e Error
			if code := f.get(t, tt.path, "tok-a", &e); code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", code)
			}
			if len(e.Fields) != 1 || e.Fields[0].Field != tt.field || !strings.Contains(e.Fields[0].Message, "KEYALERT_MAX_CELLS_PER_QUERY") {
				t.Errorf("error %+v: want field %s naming the limit", e, tt.field)
			}
		})
	}
}

func TestReadsPastTheHourlyRetentionAre400(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.HourlyRetention = 30 * 24 * time.Hour })
	for _, path := range []string{
		"/api/v1/counts?keyword=Error&from=2024-03-01T00:00:00Z&to=2024-05-01T10:31:00Z",
		"/api/v1/counts/top?keyword=Error&window=31d",
	} {
		var e Error
		if code := f.get(t, path, "tok-a", &e); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", path, code)
		}
	}
}
