package silence

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDecodeValidSilence(t *testing.T) {
	s, errs := Decode([]byte(`{"host":"web-*","end":"2025-03-01T14:00:00Z","author":"ana","comment":"deploy"}`), t0)
	if errs.Err() != nil {
		t.Fatal(errs)
	}
	if !s.Start.Equal(t0) || !s.End.Equal(t0.Add(2*time.Hour)) || s.Host != "web-*" {
		t.Fatalf("%+v", s)
	}
}

func TestDecodeReportsEachBadField(t *testing.T) {
	tests := []struct {
		name, body string
		fields     []string
	}{
		{"no matcher", `{"end":"2025-03-01T14:00:00Z","author":"a"}`, []string{"matchers"}},
		{"unknown field", `{"rule":"x","host":"h","end":"2025-03-01T14:00:00Z","author":"a"}`, []string{"rule"}},
		{"missing author and end", `{"host":"h"}`, []string{"author", "end"}},
		{"bad times", `{"host":"h","start":"yesterday","end":"tomorrow","author":"a"}`, []string{"start", "end"}},
		{"end before start", `{"host":"h","start":"2025-03-01T15:00:00Z","end":"2025-03-01T14:00:00Z","author":"a"}`, []string{"end"}},
		{"end in the past", `{"host":"h","start":"2025-03-01T10:00:00Z","end":"2025-03-01T11:00:00Z","author":"a"}`, []string{"end"}},
		{"too long", `{"host":"h","end":"2027-03-01T14:00:00Z","author":"a"}`, []string{"end"}},
		{"wrong type", `{"host":5,"end":"2025-03-01T14:00:00Z","author":"a"}`, []string{"host"}},
		{"not an object", `[1]`, []string{"body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Decode([]byte(tt.body), t0)
			got := map[string]bool{}
			for _, e := range errs {
				got[e.Field] = true
			}
			for _, f := range tt.fields {
				if !got[f] {
					t.Errorf("no error for %s: %v", f, errs)
				}
			}
			if len(got) != len(tt.fields) {
				t.Errorf("errors %v, want fields %v", errs, tt.fields)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	target := Target{RuleID: "r1", Host: "web-3", Tag: "app.x", Keywords: []string{"Exception", "OOM"}}
	tests := []struct {
		name string
		s    Silence
		at   time.Time
		want bool
	}{
		{"rule id", Silence{RuleID: "r1"}, t0, true},
		{"other rule", Silence{RuleID: "r2"}, t0, false},
		{"host glob", Silence{Host: "web-*"}, t0, true},
		{"host glob miss", Silence{Host: "db-*"}, t0, false},
		{"tag", Silence{Tag: "app.*"}, t0, true},
		{"keyword", Silence{Keyword: "OOM"}, t0, true},
		{"keyword miss", Silence{Keyword: "Timeout"}, t0, false},
		{"all matchers must match", Silence{RuleID: "r1", Host: "db-*"}, t0, false},
		{"not started", Silence{RuleID: "r1"}, t0.Add(-2 * time.Hour), false},
		{"ended", Silence{RuleID: "r1"}, t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.Start, tt.s.End = t0.Add(-time.Hour), t0.Add(time.Hour)
			if got := tt.s.Matches(target, tt.at); got != tt.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}

// A host or tag matcher the alert's group does not name applies when every
// series behind the alert's count matches it.
func TestMatchesContributingSeries(t *testing.T) {
	tests := []struct {
		name   string
		s      Silence
		target Target
		want   bool
	}{
		{"fleet alert, all from the silenced host", Silence{Host: "web-1"}, Target{Hosts: []string{"web-1"}}, true},
		{"fleet alert, one host outside the glob", Silence{Host: "web-*"}, Target{Hosts: []string{"db-1", "web-1"}}, false},
		{"fleet alert, every host in the glob", Silence{Host: "web-*"}, Target{Hosts: []string{"web-1", "web-2"}}, true},
		{"nothing contributed: host matcher does not apply", Silence{ID: "s1", Host: "*"}, Target{}, false},
		{"nothing contributed: the silence muting the alert keeps it", Silence{ID: "s1", Tag: "hb"}, Target{Host: "h2", SilencedBy: "s1"}, true},
		{"nothing contributed: another silence does not take over", Silence{ID: "s2", Tag: "hb"}, Target{Host: "h2", SilencedBy: "s1"}, false},
		{"contributing series decide even for the silence muting the alert", Silence{ID: "s1", Tag: "hb"}, Target{Host: "h2", Tags: []string{"db"}, SilencedBy: "s1"}, false},
		{"host alert, every tag in the glob", Silence{Tag: "app.*"}, Target{Host: "web-1", Tags: []string{"app.x", "app.y"}}, true},
		{"host alert, a tag outside the glob", Silence{Tag: "app.*"}, Target{Host: "web-1", Tags: []string{"app.x", "db.z"}}, false},
		{"the group's value wins over contributing series", Silence{Host: "web-1"}, Target{Host: "web-1", Hosts: []string{"web-1"}}, true},
		{"tag alert, host silence over its hosts", Silence{Host: "web-*"}, Target{Tag: "app", Hosts: []string{"web-1", "web-2"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.Start, tt.s.End = t0.Add(-time.Hour), t0.Add(time.Hour)
			if got := tt.s.Matches(tt.target, t0); got != tt.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	st := NewStore(srv.Client(), func() time.Time { return t0 }, nil)
	a, err := st.Create(ctx, Silence{Host: "web-*", Start: t0, End: t0.Add(time.Hour), Author: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, Silence{RuleID: "r", Start: t0, End: t0.Add(-time.Minute), Author: "bo"}); err != nil {
		t.Fatal(err)
	}
	list, err := st.List(ctx)
	if err != nil || len(list) != 2 || list[1].ID != a.ID {
		t.Fatalf("list %+v %v", list, err)
	}
	if m := Matching(list, Target{Host: "web-1"}, t0); m == nil || m.ID != a.ID {
		t.Fatalf("matching: %+v", m)
	}
	n, err := st.Prune(ctx, t0)
	if err != nil || n != 1 {
		t.Fatalf("prune removed %d (%v), want 1", n, err)
	}
	got, err := st.Get(ctx, a.ID)
	if err != nil || got.Author != "ana" {
		t.Fatalf("get %+v %v", got, err)
	}
	if err := st.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if v, err := st.Version(ctx); err != nil || v != 4 {
		t.Fatalf("version %d %v", v, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"host":"web-*","end":"2025-03-01T14:00:00Z","author":"ana"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, errs := Decode(body, t0)
		if errs.Err() == nil && (!s.End.After(s.Start) || s.Author == "") {
			t.Fatalf("accepted invalid silence %+v", s)
		}
	})
}
