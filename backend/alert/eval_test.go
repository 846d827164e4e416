package alert

import (
	"fmt"
	"slices"
	"testing"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/window"
)

func TestSampleSeriesPicksTheGroupsLatestSeriesBoundedByN(t *testing.T) {
	cells := map[string][]window.Cell{
		"substring:a": {
			{Minute: 60, Host: "web-1", Tag: "app", Count: 1},
			{Minute: 120, Host: "web-1", Tag: "app", Count: 1},
			{Minute: 120, Host: "web-1", Tag: "cron", Count: 9},
			{Minute: 60, Host: "web-2", Tag: "app", Count: 5},
			{Minute: 120, Host: "db-1", Tag: "app", Count: 1},
			{Minute: 0, Host: "web-3", Tag: "app", Count: 1}, // before from
			{Minute: 120, Host: "web-4", Tag: "app", Count: 0},
		},
		"substring:b": {{Minute: 120, Host: "web-1", Tag: "app", Count: 3}},
	}
	kws := []string{"substring:a", "substring:b"}
	tests := []struct {
		name    string
		filters rules.Filters
		by      rules.GroupBy
		group   string
		n       int
		want    []string
	}{
		{"host: that host's series over its tags and keywords, latest then largest", rules.Filters{}, rules.GroupHost, "web-1", 5,
			[]string{"substring:a web-1 cron", "substring:b web-1 app", "substring:a web-1 app"}},
		{"tag: that tag's series over its hosts", rules.Filters{}, rules.GroupTag, "app", 5,
			[]string{"substring:b web-1 app", "substring:a web-1 app", "substring:a db-1 app", "substring:a web-2 app"}},
		{"none: every series, filters applied", rules.Filters{Host: "web-*"}, rules.GroupNone, "", 5,
			[]string{"substring:a web-1 cron", "substring:b web-1 app", "substring:a web-1 app", "substring:a web-2 app"}},
		{"at most n series", rules.Filters{}, rules.GroupNone, "", 2,
			[]string{"substring:a web-1 cron", "substring:b web-1 app"}},
		{"n zero reads nothing", rules.Filters{}, rules.GroupNone, "", 0, nil},
		{"a group without counts", rules.Filters{}, rules.GroupHost, "web-9", 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range sampleSeries(kws, cells, tt.filters, tt.by, tt.group, 60, 120, tt.n) {
				got = append(got, fmt.Sprintf("%s %s %s", s.KeywordID, s.Host, s.Tag))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("series %q, want %q", got, tt.want)
			}
		})
	}
}
