package flbhost

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// kubeKeys are the Label_Keys of the Kubernetes example (conf/kubernetes)
// plus the JSON log's level, which the kubernetes filter's Merge_Log lifts
// to the top level.
const kubeKeys = "namespace=$kubernetes['namespace_name'], app=$kubernetes['labels']['app'], container=$kubernetes['container_name'], $level"

// kubeRecord is a record exactly as Fluent Bit's kubernetes filter (with
// Merge_Log on) leaves a container's JSON log line: the raw line in "log",
// its fields merged at the top, and the nested "kubernetes" map.
func kubeRecord(ns, app, node, level, msg string) map[string]any {
	line, _ := json.Marshal(map[string]string{"level": level, "msg": msg})
	pod := app + "-5d8c7b9f6d-x7k2p"
	return map[string]any{
		"log":    string(line) + "\n",
		"stream": "stdout",
		"time":   "2024-03-01T12:00:00.000000000Z",
		"level":  level,
		"msg":    msg,
		"kubernetes": map[string]any{
			"pod_name":        pod,
			"namespace_name":  ns,
			"pod_id":          "0b1c7e2a-6f4d-4c1e-9a8b-3d2e1f0a9b8c",
			"host":            node,
			"container_name":  app,
			"docker_id":       strings.Repeat("4f", 32),
			"container_hash":  "registry.example/" + app + "@sha256:" + strings.Repeat("0f", 32),
			"container_image": "registry.example/" + app + ":1.4.2",
			"labels":          map[string]any{"app": app, "pod-template-hash": "5d8c7b9f6d"},
		},
	}
}

// kubeTagOf is the tail input's tag for a container's log file.
func kubeTagOf(pod, ns, container string) string {
	return "kube.var.log.containers." + pod + "_" + ns + "_" + container + "-" + strings.Repeat("ab", 32) + ".log"
}

// dim is one (keyword, label name, label value) total.
type dim struct{ kw, name, value string }

// labelTotals sums counts per keyword and label value, for every label of
// the entries and for host; entries must be version 4 exactly when they
// carry labels.
func labelTotals(t *testing.T, rs *redistest.Server, key string) (map[dim]int64, []stream.Entry) {
	t.Helper()
	msgs, err := rs.Client().XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[dim]int64{}
	var entries []stream.Entry
	for _, m := range msgs {
		e, err := stream.Parse(m.Values)
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		if v, want := m.Values[stream.FieldVersion], map[bool]string{true: stream.Version4, false: stream.Version}[len(e.Labels) > 0]; v != want {
			t.Errorf("entry %s with %d labels has version %v, want %s", m.ID, len(e.Labels), v, want)
		}
		entries = append(entries, e)
		out[dim{e.Keyword.ID(), "host", e.Host}] += e.Count
		for _, l := range e.Labels {
			out[dim{e.Keyword.ID(), l.Name, l.Value}] += e.Count
		}
	}
	return out, entries
}

// TestKubernetesLabelsCountPerNamespaceAndApp: records shaped like the
// kubernetes filter's output, in chunks of both event formats, counted with
// the Kubernetes example's labels: the totals per namespace, app, container,
// level and node read back from the real Redis equal the ground truth, and
// Tag_Label off leaves the per-container tag out of every series.
func TestKubernetesLabelsCountPerNamespaceAndApp(t *testing.T) {
	rs := redistest.Start(t)
	h := StartForTest(t)
	mustInit(t, h, "k8s", instanceConfig(rs, "ka:k8s", "ERROR,timeout",
		"Label_Keys", kubeKeys, "Tag_Label", "off", "Hostname_Key", "$kubernetes['host']", "Keys", "log", "Samples", "1"))

	rng := rand.New(rand.NewPCG(12, 1))
	namespaces := []string{"shop", "payments", "kube-system"}
	apps := []string{"web", "api", "worker", "coredns"}
	levels := []string{"info", "warn", "error"}
	nodes := []string{"node-a", "node-b"}
	msgs := []string{"served GET /", "ERROR upstream refused", "call timeout after 5s", "ERROR timeout talking to db", "ok"}
	want := map[dim]int64{}
	formats := []chunk.Format{chunk.FormatV1, chunk.FormatV2}
	for c := range 8 {
		var data []byte
		for i := range 250 {
			ns, app, lvl, node, msg := namespaces[rng.IntN(3)], apps[rng.IntN(4)], levels[rng.IntN(3)], nodes[rng.IntN(2)], msgs[rng.IntN(5)]
			rec := kubeRecord(ns, app, node, lvl, msg)
			var err error
			if data, err = chunk.AppendEvent(data, formats[c%2], base.Add(time.Duration(c*250+i)*100*time.Millisecond), chunk.EventTime, rec); err != nil {
				t.Fatal(err)
			}
			for _, kw := range []string{"ERROR", "timeout"} {
				if strings.Contains(msg, kw) {
					id := "substring:" + kw
					for _, d := range []dim{{id, "namespace", ns}, {id, "app", app}, {id, "container", app}, {id, "level", lvl}, {id, "host", node}} {
						want[d]++
					}
				}
			}
		}
		mustFlush(t, h, "k8s", kubeTagOf(apps[c%4]+"-5d8c7b9f6d-x7k2p", namespaces[c%3], apps[c%4]), data, OK)
	}
	got, entries := labelTotals(t, rs, "ka:k8s")
	if !maps.Equal(got, want) {
		for d, n := range want {
			if got[d] != n {
				t.Errorf("%s %s=%s: %d, want %d", d.kw, d.name, d.value, got[d], n)
			}
		}
		for d, n := range got {
			if _, ok := want[d]; !ok {
				t.Errorf("%s %s=%s: %d, want none", d.kw, d.name, d.value, n)
			}
		}
	}
	for _, e := range entries {
		if e.Tag != "" || len(e.Labels) != 4 {
			t.Fatalf("entry tag %q labels %v: want no tag (Tag_Label off) and 4 labels", e.Tag, e.Labels)
		}
	}
}

// TestTagRegexLabelsFromKubeTags: Tag_Regex's groups label the series from
// the tail tag; Tag_Label on (the default) keeps the tag too, and a tag the
// regex does not match gives a series without those labels.
func TestTagRegexLabelsFromKubeTags(t *testing.T) {
	rs := redistest.Start(t)
	h := StartForTest(t)
	for i, tc := range []struct {
		tagLabel string
		wantTag  func(tag string) string
	}{{"on", func(tag string) string { return tag }}, {"off", func(string) string { return "" }}} {
		t.Run("Tag_Label "+tc.tagLabel, func(t *testing.T) {
			inst, key := fmt.Sprintf("re%d", i), fmt.Sprintf("ka:re%d", i)
			mustInit(t, h, inst, instanceConfig(rs, key, "ERROR", "Tag_Label", tc.tagLabel,
				"Tag_Regex", `^kube\.var\.log\.containers\.(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<container>.+)-[0-9a-f]{64}\.log$`))
			tags := []string{kubeTagOf("web-1", "shop", "nginx"), kubeTagOf("db-0", "data", "postgres"), "app.other"}
			for j, tag := range tags {
				for _, f := range []chunk.Format{chunk.FormatV1, chunk.FormatV2} {
					data, err := chunk.AppendEvent(nil, f, base.Add(time.Duration(j)*time.Second), chunk.IntTime, kubeRecord("ignored", "x", "n", "error", "ERROR "+tag))
					if err != nil {
						t.Fatal(err)
					}
					mustFlush(t, h, inst, tag, data, OK)
				}
			}
			var got []string
			for _, e := range readEntries(t, rs.Client(), key) {
				got = append(got, fmt.Sprintf("%s %v %d", e.Tag, e.Labels, e.Count))
			}
			want := []string{
				fmt.Sprintf("%s [{container nginx} {namespace shop} {pod web-1}] 1", tc.wantTag(tags[0])),
				fmt.Sprintf("%s [{container nginx} {namespace shop} {pod web-1}] 1", tc.wantTag(tags[0])),
				fmt.Sprintf("%s [{container postgres} {namespace data} {pod db-0}] 1", tc.wantTag(tags[1])),
				fmt.Sprintf("%s [{container postgres} {namespace data} {pod db-0}] 1", tc.wantTag(tags[1])),
				fmt.Sprintf("%s [] 1", tc.wantTag(tags[2])),
				fmt.Sprintf("%s [] 1", tc.wantTag(tags[2])),
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("entries\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestOverflowSeriesPastMaxSeries: with more distinct label sets in a flush
// than Max_Series, the first Max_Series keep their series, the rest are
// counted in the overflow series (host, tag and labels __other__) — nothing
// is dropped — and the plugin warns, naming the keyword and the limit.
func TestOverflowSeriesPastMaxSeries(t *testing.T) {
	rs := redistest.Start(t)
	h := StartForTest(t)
	mustInit(t, h, "ov", instanceConfig(rs, "ka:ov", "ERROR", "Label_Keys", kubeKeys, "Max_Series", "3"))
	var data []byte
	for i := range 10 {
		for range i + 1 {
			var err error
			data, err = chunk.AppendEvent(data, chunk.FormatV2, base, chunk.EventTime, kubeRecord("shop", fmt.Sprintf("app-%d", i), "n", "error", "ERROR x"))
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	mark := h.LogLen()
	mustFlush(t, h, "ov", "kube.x", data, OK)
	var total, other int64
	series := 0
	for _, e := range readEntries(t, rs.Client(), "ka:ov") {
		total += e.Count
		if e.Host == stream.OverflowValue {
			other += e.Count
			if e.Tag != stream.OverflowValue || len(e.Labels) != 4 {
				t.Errorf("overflow entry tag %q labels %v", e.Tag, e.Labels)
			}
			for _, l := range e.Labels {
				if l.Value != stream.OverflowValue {
					t.Errorf("overflow entry label %s=%q", l.Name, l.Value)
				}
			}
			continue
		}
		series++
	}
	// Records in order: app-0 once, app-1 twice, app-2 three times, then
	// app-3..app-9 (4+…+10 = 49 records) overflow.
	if total != 55 || other != 49 || series != 3 {
		t.Errorf("total %d, overflow %d, series %d; want 55, 49, 3", total, other, series)
	}
	for _, w := range []string{"series limit reached", "keywords=substring:ERROR", "max_series=3", "overflow=49"} {
		if !h.WaitLog(mark, w, 5*time.Second) {
			t.Errorf("log lacks %q:\n%s", w, h.LogSince(mark))
		}
	}
}

// TestValuesSanitized: NUL, control bytes, invalid UTF-8 and over-long
// values in Hostname_Key and labels reach the stream sanitized; a NUL in
// the host stays in the host (it used to shift host into tag in keyalertd's
// series field).
func TestValuesSanitized(t *testing.T) {
	rs := redistest.Start(t)
	h := StartForTest(t)
	mustInit(t, h, "san", instanceConfig(rs, "ka:san", "ERROR", "Hostname_Key", "$kubernetes['host']",
		"Label_Keys", "namespace=$kubernetes['namespace_name'], $level"))
	long := strings.Repeat("ü", 200) // 400 bytes
	recs := []map[string]any{
		kubeRecord("shop\x00evil", "web", "node\x001", "err\tor\x7f", "ERROR a"),
		kubeRecord("bad\xff\xfeutf8", "web", long, long+"tail", "ERROR b"),
	}
	var data []byte
	for _, r := range recs {
		var err error
		if data, err = chunk.AppendEvent(data, chunk.FormatV1, base, chunk.FloatTime, r); err != nil {
			t.Fatal(err)
		}
	}
	mustFlush(t, h, "san", "app.\x01tag", data, OK)
	var got []string
	for _, e := range readEntries(t, rs.Client(), "ka:san") {
		for _, v := range []string{e.Host, e.Tag} {
			if err := stream.ValidValue(v); err != nil {
				t.Errorf("value %q: %v", v, err)
			}
		}
		got = append(got, fmt.Sprintf("%s|%s|%v", e.Host, e.Tag, e.Labels))
	}
	cut := strings.Repeat("ü", 128)
	want := []string{
		"node_1|app._tag|[{level err_or_} {namespace shop_evil}]",
		cut + "|app._tag|[{level " + cut + "} {namespace bad\uFFFD\uFFFDutf8}]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries\n%q\nwant\n%q", got, want)
	}
}
