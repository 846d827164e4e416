package silence

import (
	"testing"
	"time"
)

func TestLabelMatchersMatchTheGroupOrEveryContributingSeries(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s := Silence{ID: "s1", Labels: map[string]string{"namespace": "shop*"}, Start: now.Add(-time.Minute), End: now.Add(time.Hour)}
	for _, tt := range []struct {
		name string
		t    Target
		want bool
	}{
		{"the group's namespace matches", Target{Labels: map[string]string{"namespace": "shop-eu"}}, true},
		{"the group's namespace does not", Target{Labels: map[string]string{"namespace": "billing"}}, false},
		{"not grouped: every contributing value matches", Target{Hosts: []string{"n1"}, LabelValues: map[string][]string{"namespace": {"shop", "shop-eu"}}}, true},
		{"not grouped: one does not", Target{Hosts: []string{"n1"}, LabelValues: map[string][]string{"namespace": {"billing", "shop"}}}, false},
		{"contributing series lack the label", Target{Hosts: []string{"n1"}}, false},
		{"nothing contributes and it is not the muting silence", Target{}, false},
		{"nothing contributes, kept by the muting silence", Target{SilencedBy: "s1"}, true},
	} {
		if got := s.Matches(tt.t, now); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDecodeChecksLabelMatchers(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		body, field string
	}{
		{`{"labels":{"9x":"a"},"author":"a","end":"2025-03-01T13:00:00Z"}`, "labels.9x"},
		{`{"labels":{"host":"a"},"author":"a","end":"2025-03-01T13:00:00Z"}`, "labels.host"},
		{`{"labels":{"app":""},"author":"a","end":"2025-03-01T13:00:00Z"}`, "labels.app"},
		{`{"labels":{"app":3},"author":"a","end":"2025-03-01T13:00:00Z"}`, "labels"},
	} {
		_, errs := Decode([]byte(tt.body), now)
		if !errs.Has(tt.field) {
			t.Errorf("%s: errors %v, want one for %s", tt.body, errs, tt.field)
		}
	}
	s, errs := Decode([]byte(`{"labels":{"namespace":"shop-*"},"author":"a","end":"2025-03-01T13:00:00Z"}`), now)
	if errs.Err() != nil || s.Labels["namespace"] != "shop-*" {
		t.Errorf("labels-only silence: %+v %v", s, errs)
	}
}
