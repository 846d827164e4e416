package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// k8s gives e the labels of a Kubernetes container (sorted by name).
func k8s(e stream.Entry, app, container, namespace string) stream.Entry {
	e.Labels = []stream.Label{{Name: "app", Value: app}, {Name: "container", Value: container}, {Name: "namespace", Value: namespace}}
	return e
}

// Entries shaped like a DaemonSet's (node hosts, one tag per container,
// namespace/app/container labels), mixed with version 2 and 3 entries of
// the same host in the same minutes, are counted per series; counts and tops
// by any label equal the ground truth, and the label-free cells are where
// they always were.
func TestLabelledEntriesCountedBesideLabelFreeOnes(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	r := start(t, Options{Client: rdb})
	now := nowMinute()
	rng := rand.New(rand.NewPCG(1, 2))
	namespaces := []string{"shop", "shop-staging", "billing"}
	apps := []string{"web", "worker", "db"}
	truth := map[string]map[string]int64{"namespace": {}, "app": {}, "host": {}}
	cells := map[string]int64{}
	var total int64
	var es []stream.Entry
	for i := range 300 {
		minute := now - int64(i%3)*60
		ns, app := namespaces[rng.IntN(3)], apps[rng.IntN(3)]
		host := fmt.Sprintf("node-%d", rng.IntN(2))
		n := int64(1 + rng.IntN(5))
		e := v3(entry(i, "err", host, "kube.var.log.containers."+app, minute, n), 1, 1)
		var labels []stream.Label
		switch i % 3 {
		case 0:
			e = k8s(e, app, app+"-c", ns)
			labels = e.Labels
			truth["namespace"][ns] += n
			truth["app"][app] += n
		case 1: // version 3, label-free
			truth["namespace"][""] += n
			truth["app"][""] += n
		case 2: // version 2, label-free
			e.Producer, e.Attempt = "", ""
			truth["namespace"][""] += n
			truth["app"][""] += n
		}
		truth["host"][host] += n
		cells[window.Field(host, e.Tag, labels...)] += n
		total += n
		es = append(es, e)
	}
	xadd(t, rdb, es...)
	drained(t, rdb, "keyalertd")
	r.stop()

	st := window.NewStore(rdb, testStream)
	kw := es[0].Keyword.Canonical().ID()
	got, err := st.CellsMany(ctx, []string{kw}, now-120, now+60)
	if err != nil {
		t.Fatal(err)
	}
	gotCells := map[string]int64{}
	for _, c := range got[kw] {
		gotCells[window.Field(c.Host, c.Tag, c.Labels...)] += c.Count
	}
	if len(gotCells) != len(cells) {
		t.Errorf("%d series stored, want %d", len(gotCells), len(cells))
	}
	for f, n := range cells {
		if gotCells[f] != n {
			t.Errorf("series %q = %d, want %d", f, gotCells[f], n)
		}
	}
	for by, want := range truth {
		t.Run("top by "+by, func(t *testing.T) {
			groups, tot, err := st.Top(ctx, kw, now-120, now+60, by, 100, 1e6)
			if err != nil {
				t.Fatal(err)
			}
			if tot != total {
				t.Errorf("total %d, want %d", tot, total)
			}
			gotBy := map[string]int64{}
			for _, g := range groups {
				gotBy[g.Value] = g.Count
			}
			if fmt.Sprint(gotBy) != fmt.Sprint(want) {
				t.Errorf("top by %s = %v, want %v", by, gotBy, want)
			}
		})
	}
	for _, ns := range namespaces {
		f := window.Filter{Series: func(host, tag string, labels []stream.Label) bool {
			return window.LabelValue(labels, "namespace") == ns
		}}
		pts, err := st.Counts(ctx, kw, now-120, now+60, f, 1e6)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, p := range pts {
			n += p.Count
		}
		if n != truth["namespace"][ns] {
			t.Errorf("count of namespace %s = %d, want %d", ns, n, truth["namespace"][ns])
		}
	}
	// A host and tag pair has labelled cells beside its label-free one:
	// counted whole.
	var want int64
	for f, n := range cells {
		if h, tg, _ := window.SplitField(f); h == "node-0" && tg == "kube.var.log.containers.web" {
			want += n
		}
	}
	pts, err := st.Counts(ctx, kw, now-120, now+60, window.Filter{Host: "node-0", HostSet: true, Tag: "kube.var.log.containers.web", TagSet: true}, 1e6)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range pts {
		n += p.Count
	}
	if n != want {
		t.Errorf("count of node-0/web = %d, want %d", n, want)
	}
}

// Past MaxSeriesPerMinute distinct series of a keyword in a minute, the
// counts of further series go to the overflow series; series already
// stored keep counting, nothing is lost, and the metric counts the entries.
func TestSeriesPastTheLimitGoToTheOverflowSeries(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(&lockedWriter{&mu, &logs}, nil))
	r := start(t, Options{Client: rdb, MaxSeriesPerMinute: 5, Registerer: reg, Logger: log})
	now := nowMinute()
	var es []stream.Entry
	for i := range 5 {
		es = append(es, k8s(v3(entry(i, "err", "node-1", "app", now, 1), 1, 1), "app", "c", fmt.Sprintf("ns-%d", i)))
	}
	xadd(t, rdb, es...)
	drained(t, rdb, "keyalertd")
	es = es[:0]
	for i := range 10 { // 5 new series and 5 known ones
		es = append(es, k8s(v3(entry(10+i, "err", "node-1", "app", now, 2), 1, 1), "app", "c", fmt.Sprintf("ns-%d", i)))
	}
	es = append(es, v3(entry(30, "err", "node-2", "app", now, 3), 1, 1)) // a new label-free series
	xadd(t, rdb, es...)
	drained(t, rdb, "keyalertd")
	r.stop()

	kw := es[0].Keyword.Canonical().ID()
	cells, err := window.NewStore(rdb, testStream).Cells(ctx, kw, now, now+60)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var sum int64
	for _, c := range cells {
		got[window.Field(c.Host, c.Tag, c.Labels...)] = c.Count
		sum += c.Count
	}
	other := stream.OverflowValue
	want := map[string]int64{
		window.Field(other, other): 3,
		window.Field(other, other, stream.Label{Name: "app", Value: other}, stream.Label{Name: "container", Value: other}, stream.Label{Name: "namespace", Value: other}): 10,
	}
	for i := range 5 {
		want[window.Field("node-1", "app", k8s(stream.Entry{}, "app", "c", fmt.Sprintf("ns-%d", i)).Labels...)] = 3
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cells %v\nwant %v", got, want)
	}
	if sum != 5+20+3 {
		t.Errorf("sum %d, want every count kept (28)", sum)
	}
	if n := testutil.ToFloat64(r.c.m.overflow); n != 6 {
		t.Errorf("keyalert_ingest_overflow_total = %v, want 6 entries", n)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "overflow series"); n != 1 || !strings.Contains(out, `"keyword_id":"`+kw+`"`) || !strings.Contains(out, `"limit":5`) {
		t.Errorf("want one warning naming the keyword and the limit; logs:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Host and tag values of entries written before the plugin sanitized them
// are sanitized, not rejected: a NUL in a host no longer shifts it into
// the tag.
func TestUnsanitizedHostAndTagAreSanitized(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	r := start(t, Options{Client: rdb})
	now := nowMinute()
	e := entry(1, "err", "web\x001", "app\nx\xff", now, 4)
	xadd(t, rdb, e)
	drained(t, rdb, "keyalertd")
	r.stop()
	cells, err := window.NewStore(rdb, testStream).Cells(ctx, e.Keyword.Canonical().ID(), now, now+60)
	if err != nil {
		t.Fatal(err)
	}
	want := []window.Cell{{Minute: now, Host: "web_1", Tag: "app_x\uFFFD", Count: 4}}
	if !slices.EqualFunc(cells, want, func(a, b window.Cell) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Errorf("cells %+v, want %+v", cells, want)
	}
}
