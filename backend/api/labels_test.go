package api

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/stream"
)

func (f *fixture) countLabelled(t *testing.T, kwID string, minute time.Time, host, tag string, n int64, pairs ...string) {
	t.Helper()
	var labels []stream.Label
	for i := 0; i+1 < len(pairs); i += 2 {
		labels = append(labels, stream.Label{Name: pairs[i], Value: pairs[i+1]})
	}
	if err := f.rdb.HIncrBy(context.Background(), f.kw.Window(kwID, minute.Unix()), window.Field(host, tag, labels...), n).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestCountsAndTopByLabel(t *testing.T) {
	f := newFixture(t, nil)
	kw := "substring:Error"
	f.countLabelled(t, kw, minute(10, 30), "node-1", "kube.a", 5, "app", "web", "namespace", "shop")
	f.countLabelled(t, kw, minute(10, 29), "node-2", "kube.b", 7, "app", "web", "namespace", "shop-eu")
	f.countLabelled(t, kw, minute(10, 29), "node-1", "kube.c", 3, "app", "db", "namespace", "billing")
	f.count(t, kw, minute(10, 29), "node-1", "plain", 2) // label-free: every label empty

	for _, tt := range []struct {
		query string
		total int64
	}{
		{"&label.namespace=shop*", 12},
		{"&label.namespace=shop*&label.app=web", 12},
		{"&label.app=db&host=node-1", 3},
		{"&label.app=", 2},
		{"&host=node-1", 10},
		{"", 17},
	} {
		t.Run("counts"+tt.query, func(t *testing.T) {
			var got CountsResponse
			if code := f.get(t, "/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z"+tt.query, "tok-a", &got); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if got.Total != tt.total {
				t.Errorf("total %d, want %d", got.Total, tt.total)
			}
		})
	}
	for _, tt := range []struct {
		query string
		items []TopItem
		total int64
	}{
		{"&by=namespace", []TopItem{{"shop-eu", 7}, {"shop", 5}, {"billing", 3}, {"", 2}}, 17},
		{"&by=app", []TopItem{{"web", 12}, {"db", 3}, {"", 2}}, 17},
		{"&by=app&label.namespace=shop*", []TopItem{{"web", 12}}, 12},
		{"&by=host&label.app=web", []TopItem{{"node-2", 7}, {"node-1", 5}}, 12},
	} {
		t.Run("top"+tt.query, func(t *testing.T) {
			var got TopResponse
			if code := f.get(t, "/api/v1/counts/top?keyword=Error"+tt.query, "tok-a", &got); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if !reflect.DeepEqual(got.Items, tt.items) || got.Total != tt.total {
				t.Errorf("items %v total %d, want %v total %d", got.Items, got.Total, tt.items, tt.total)
			}
		})
	}
}

func TestCountsSplitByALabel(t *testing.T) {
	f := newFixture(t, nil)
	kw := "substring:Error"
	f.countLabelled(t, kw, minute(10, 30), "node-1", "kube.a", 5, "app", "web", "namespace", "shop")
	f.countLabelled(t, kw, minute(10, 29), "node-2", "kube.b", 7, "app", "web", "namespace", "shop")
	f.countLabelled(t, kw, minute(10, 29), "node-1", "kube.c", 3, "app", "db", "namespace", "billing")
	f.count(t, kw, minute(10, 29), "node-1", "plain", 2)
	var got CountsResponse
	path := "/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z&by=namespace&limit=2&label.app=*"
	if code := f.get(t, path, "tok-a", &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	type s struct {
		value  string
		points string
		total  int64
	}
	var gotS []s
	for _, x := range got.Series {
		var ps []string
		for _, p := range x.Points {
			ps = append(ps, p.Minute.Format("15:04")+"="+fmt.Sprint(p.Count))
		}
		if x.Labels["namespace"] != x.Value {
			t.Errorf("series %q labels %v", x.Value, x.Labels)
		}
		gotS = append(gotS, s{x.Value, strings.Join(ps, ","), x.Total})
	}
	want := []s{{"shop", "10:29=7,10:30=5", 12}, {"billing", "10:29=3", 3}}
	if got.By != "namespace" || !reflect.DeepEqual(gotS, want) || got.Total != 17 {
		t.Errorf("by %q series %v total %d, want namespace %v 17", got.By, gotS, got.Total, want)
	}
}

func TestBadLabelParametersAreNamed(t *testing.T) {
	f := newFixture(t, nil)
	for _, tt := range []struct{ path, field string }{
		{"/api/v1/counts/top?keyword=Error&by=9x", "by"},
		{"/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z&by=a.b", "by"},
		{"/api/v1/counts/top?keyword=Error&label.a-b=x", "label.a-b"},
		{"/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z&label.host=x", "label.host"},
		{"/api/v1/counts?keyword=Error&from=2024-05-01T10:00:00Z&to=2024-05-01T11:00:00Z&label.app=x&label.app=y", "label.app"},
	} {
		var e Error
		if code := f.get(t, tt.path, "tok-a", &e); code != http.StatusBadRequest || len(e.Fields) != 1 || e.Fields[0].Field != tt.field {
			t.Errorf("%s: %d %+v, want 400 naming %s", tt.path, code, e, tt.field)
		}
	}
}
