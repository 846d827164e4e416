package rules

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/keyalert/keyalert/pkg/stream"
)

func TestGroupByAndLabelFiltersDecodeAndAnswerInTheirShapes(t *testing.T) {
	for _, tt := range []struct {
		name          string
		groupBy       any
		filters       map[string]any
		want          GroupBy
		wantJSON      string
		wantFilters   Filters
		wantFiltersJS string
	}{
		{"string host as before", "host", map[string]any{"host": "web-*"}, GroupHost, `"host"`, Filters{Host: "web-*"}, `{"host":"web-*"}`},
		{"a label name", "namespace", nil, GroupBy("namespace"), `"namespace"`, Filters{}, `{}`},
		{"a list of one answers as a string", []string{"app"}, nil, GroupBy("app"), `"app"`, Filters{}, `{}`},
		{"a list", []string{"namespace", "app"}, map[string]any{"namespace": "shop-*", "tag": "kube.*"}, GroupBy("namespace,app"),
			`["namespace","app"]`, Filters{Tag: "kube.*", Labels: map[string]string{"namespace": "shop-*"}}, `{"namespace":"shop-*","tag":"kube.*"}`},
		{"host and tag in a list", []string{"host", "tag", "level"}, nil, GroupBy("host,tag,level"), `["host","tag","level"]`, Filters{}, `{}`},
		{"none", "none", nil, GroupNone, `"none"`, Filters{}, `{}`},
		{"an empty list is none", []string{}, nil, GroupNone, `"none"`, Filters{}, `{}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := validBody()
			b["group_by"] = tt.groupBy
			if tt.filters == nil {
				delete(b, "filters")
			} else {
				b["filters"] = tt.filters
			}
			r, errs := Decode(encode(t, b), DecodeOptions{})
			if errs.Err() != nil {
				t.Fatal(errs)
			}
			if r.GroupBy != tt.want || !r.Filters.Equal(tt.wantFilters) {
				t.Errorf("group_by %q filters %+v, want %q %+v", r.GroupBy, r.Filters, tt.want, tt.wantFilters)
			}
			js, _ := json.Marshal(r)
			var back map[string]json.RawMessage
			json.Unmarshal(js, &back)
			if string(back["group_by"]) != tt.wantJSON || string(back["filters"]) != tt.wantFiltersJS {
				t.Errorf("answers group_by %s filters %s, want %s %s", back["group_by"], back["filters"], tt.wantJSON, tt.wantFiltersJS)
			}
			// What is stored loads back the same.
			var again Rule
			if err := json.Unmarshal(js, &again); err != nil || again.GroupBy != r.GroupBy || !again.Filters.Equal(r.Filters) {
				t.Errorf("stored form reads back as %q %+v (%v)", again.GroupBy, again.Filters, err)
			}
		})
	}
}

func TestRulesStoredBeforeLabelsLoad(t *testing.T) {
	var r Rule
	if err := json.Unmarshal([]byte(`{"id":"r1","group_by":"tag","filters":{"host":"web-*"}}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.GroupBy != GroupTag || r.Filters.Host != "web-*" || r.Filters.Labels != nil {
		t.Errorf("loaded %q %+v", r.GroupBy, r.Filters)
	}
}

func TestGroupKeysAndTheirLabels(t *testing.T) {
	labels := []stream.Label{{Name: "app", Value: "web"}, {Name: "namespace", Value: "shop"}}
	for _, tt := range []struct {
		by   GroupBy
		key  string
		want map[string]string
	}{
		{GroupNone, "", nil},
		{GroupHost, "node-1", map[string]string{"host": "node-1"}},
		{GroupTag, "kube.x", map[string]string{"tag": "kube.x"}},
		{GroupBy("namespace"), "shop", map[string]string{"namespace": "shop"}},
		{GroupBy("container"), "", map[string]string{"container": ""}},
		{GroupBy("namespace,app"), "namespace=shop,app=web", map[string]string{"namespace": "shop", "app": "web"}},
		{GroupBy("host,level,app"), "host=node-1,level=,app=web", map[string]string{"host": "node-1", "level": "", "app": "web"}},
	} {
		if got := tt.by.Key("node-1", "kube.x", labels); got != tt.key {
			t.Errorf("%q.Key = %q, want %q", tt.by, got, tt.key)
		}
		if got := tt.by.Labels(tt.key); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q.Labels(%q) = %v, want %v", tt.by, tt.key, got, tt.want)
		}
	}
}

func TestFiltersMatchLabelsAndAbsentLabelsAreEmpty(t *testing.T) {
	f := Filters{Host: "node-*", Labels: map[string]string{"namespace": "shop-*"}}
	shop := []stream.Label{{Name: "namespace", Value: "shop-eu"}}
	if !f.MatchSeries("node-1", "t", shop) || f.MatchSeries("db-1", "t", shop) || f.MatchSeries("node-1", "t", nil) {
		t.Error("label filter matched wrongly")
	}
	if !(Filters{Labels: map[string]string{"level": ""}}).MatchSeries("h", "t", nil) {
		t.Error("an empty glob filters nothing")
	}
}

// BenchmarkGroupKey is the group of one cell, computed per cell on every
// evaluation.
func BenchmarkGroupKey(b *testing.B) {
	labels := []stream.Label{{Name: "app", Value: "web"}, {Name: "container", Value: "web-c"}, {Name: "namespace", Value: "shop"}}
	for _, by := range []GroupBy{GroupHost, GroupBy("namespace"), GroupBy("namespace,app")} {
		b.Run(string(by), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = by.Key("node-1", "kube.x", labels)
			}
		})
	}
}
