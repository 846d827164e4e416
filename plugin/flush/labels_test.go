package flush

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/accessor"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// kubeTag is the kubernetes filter's tag regex for tail on
// /var/log/containers (pod, namespace, container, container id).
var kubeTag = regexp.MustCompile(`^kube\.var\.log\.containers\.(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<container>.+)-[0-9a-f]{64}\.log$`)

// k8s is a record shaped like the kubernetes filter's output.
func k8s(log, ns, app, level string) map[string]any {
	return map[string]any{
		"log":    log,
		"stream": "stdout",
		"level":  level,
		"kubernetes": map[string]any{
			"pod_name": app + "-7d9f-x2x", "namespace_name": ns, "container_name": app,
			"host": "node-1", "labels": map[string]any{"app": app, "pod-template-hash": "7d9f"},
		},
	}
}

func kubeLabels() []Label {
	return []Label{
		{Name: "namespace", Path: accessor.MustParse("$kubernetes['namespace_name']")},
		{Name: "app", Path: accessor.MustParse("$kubernetes['labels']['app']")},
		{Name: "level", Path: accessor.MustParse("$level")},
	}
}

// labelSummary renders entries as "id host tag {labels} +minute count [samples]".
func labelSummary(es []stream.Entry) []string {
	var out []string
	for _, e := range es {
		var ls []string
		for _, l := range e.Labels {
			ls = append(ls, l.Name+"="+l.Value)
		}
		s := fmt.Sprintf("%s %s %s {%s} +%d %d", e.Keyword.ID(), e.Host, e.Tag, strings.Join(ls, ","), e.Minute-t0.Unix(), e.Count)
		if len(e.Samples) > 0 {
			s += " [" + strings.Join(e.Samples, "|") + "]"
		}
		out = append(out, s)
	}
	return out
}

func TestLabels(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	tests := []struct {
		name string
		opt  func(o *Options)
		tag  string
		evs  []ev
		want []string
	}{
		{"labels from nested maps, sorted by name; empty values left out",
			func(o *Options) { o.Labels = kubeLabels() }, "kube.x",
			[]ev{
				{0, k8s("ERROR a", "shop", "web", "error")},
				{1, k8s("ERROR b", "shop", "web", "error")},
				{2, k8s("ERROR c", "shop", "api", "warn")},
				{3, k8s("quiet", "shop", "db", "info")},
				{4, map[string]any{"log": "ERROR no kubernetes map"}},
				{5, map[string]any{"log": "ERROR", "level": int64(3), "kubernetes": map[string]any{"namespace_name": "data"}}},
			},
			[]string{
				"substring:ERROR agent kube.x {} +0 1 [ERROR no kubernetes map]",
				"substring:ERROR agent kube.x {namespace=data} +0 1 [ERROR]",
				"substring:ERROR agent kube.x {app=api,level=warn,namespace=shop} +0 1 [ERROR c]",
				"substring:ERROR agent kube.x {app=web,level=error,namespace=shop} +0 2 [ERROR a]",
			}},
		{"tag label off leaves the tag empty",
			func(o *Options) { o.Labels, o.NoTag = kubeLabels()[:1], true }, "kube.x",
			[]ev{{0, k8s("ERROR", "shop", "web", "")}},
			[]string{"substring:ERROR agent  {namespace=shop} +0 1 [ERROR]"}},
		{"tag regex groups are labels, with record labels",
			func(o *Options) { o.Labels, o.NoTag, o.TagRegex = kubeLabels()[1:2], true, kubeTag },
			"kube.var.log.containers.web-7d9f-x2x_shop_nginx-" + strings.Repeat("ab", 32) + ".log",
			[]ev{{0, k8s("ERROR", "ignored", "web", "")}},
			[]string{"substring:ERROR agent  {app=web,container=nginx,namespace=shop,pod=web-7d9f-x2x} +0 1 [ERROR]"}},
		{"a tag the regex does not match gives empty values",
			func(o *Options) { o.TagRegex = kubeTag }, "app.log",
			[]ev{{0, map[string]any{"log": "ERROR"}}},
			[]string{"substring:ERROR agent app.log {} +0 1 [ERROR]"}},
		{"NUL, controls, invalid UTF-8 and long values are sanitized",
			func(o *Options) {
				o.Labels = kubeLabels()[:1]
				o.HostnameKey = accessor.MustParse("$kubernetes['host']")
			}, "t\x00ag",
			[]ev{
				{0, map[string]any{"log": "ERROR", "kubernetes": map[string]any{"host": "web\x001", "namespace_name": "sh\nop\xff"}}},
				{1, map[string]any{"log": "ERROR", "kubernetes": map[string]any{"host": long + "tail", "namespace_name": long + "x"}}},
			},
			[]string{
				"substring:ERROR web_1 t_ag {namespace=sh_op\uFFFD} +0 1 [ERROR]",
				"substring:ERROR " + strings.Repeat("é", 128) + " t_ag {namespace=" + strings.Repeat("é", 128) + "} +0 1 [ERROR]",
			}},
		{"samples are per series",
			func(o *Options) { o.Labels, o.Samples = kubeLabels()[:1], 1 }, "t",
			[]ev{
				{0, k8s("ERROR a1", "a", "x", "")}, {1, k8s("ERROR a2", "a", "x", "")},
				{2, k8s("ERROR b1", "b", "x", "")},
			},
			[]string{"substring:ERROR agent t {namespace=a} +0 2 [ERROR a1]", "substring:ERROR agent t {namespace=b} +0 1 [ERROR b1]"}},
		{"past Max_Series the counts go to the overflow series",
			func(o *Options) { o.Labels, o.MaxSeries = kubeLabels()[:2], 2 }, "t",
			[]ev{
				{0, k8s("ERROR", "a", "x", "")}, {1, k8s("ERROR", "b", "x", "")}, {2, k8s("ERROR", "c", "x", "")},
				{3, k8s("ERROR", "a", "x", "")}, {4, k8s("ERROR", "d", "x", "")}, {61 * time.Second, k8s("ERROR", "c", "x", "")},
			},
			[]string{
				"substring:ERROR __other__ __other__ {app=__other__,namespace=__other__} +0 2 [ERROR]",
				"substring:ERROR __other__ __other__ {app=__other__,namespace=__other__} +60 1",
				"substring:ERROR agent t {app=x,namespace=a} +0 2 [ERROR]",
				"substring:ERROR agent t {app=x,namespace=b} +0 1 [ERROR]",
			}},
		{"Max_Series counts hosts too, without labels",
			func(o *Options) { o.HostnameKey, o.MaxSeries, o.Samples = accessor.MustParse("h"), 1, 0 }, "t",
			[]ev{{0, map[string]any{"log": "ERROR", "h": "a"}}, {1, map[string]any{"log": "ERROR", "h": "b"}}},
			[]string{"substring:ERROR __other__ __other__ {} +0 1", "substring:ERROR a t {} +0 1"}},
	}
	for _, tt := range tests {
		for _, f := range []chunk.Format{chunk.FormatV1, chunk.FormatV2} {
			t.Run(fmt.Sprintf("%s/v%d", tt.name, 2-int(f)), func(t *testing.T) {
				opt := Options{Keys: []string{"log"}, Hostname: "agent", Samples: 1, Identity: "id"}
				tt.opt(&opt)
				data := build(t, f, chunk.EventTime, tt.evs...)
				res := New(opt).Process(compile(t, sub("ERROR")), data, tt.tag)
				if res.Err != nil {
					t.Fatal(res.Err)
				}
				got := labelSummary(res.Entries)
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
				for _, e := range res.Entries {
					for _, v := range append([]string{e.Host, e.Tag}, labelValues(e)...) {
						if err := stream.ValidValue(v); err != nil {
							t.Errorf("entry value %q: %v", v, err)
						}
					}
					// What the publisher writes must read back as it was.
					e.Producer, e.Attempt = "0123456789abcdef", "0123456789abcdef"
					back, err := stream.Parse(valuesMap(e.AppendValues(nil)))
					if err != nil {
						t.Fatalf("entry does not parse back: %v", err)
					}
					if fmt.Sprint(back.Labels) != fmt.Sprint(e.Labels) {
						t.Errorf("labels %v read back as %v", e.Labels, back.Labels)
					}
				}
			})
		}
	}
}

func TestOverflowIsReported(t *testing.T) {
	fl := New(Options{Keys: []string{"log"}, Hostname: "agent", Identity: "id", MaxSeries: 1,
		HostnameKey: accessor.MustParse("h")})
	data := build(t, chunk.FormatV2, chunk.EventTime,
		ev{0, map[string]any{"log": "ERROR WARN", "h": "a"}},
		ev{1, map[string]any{"log": "ERROR WARN", "h": "b"}},
		ev{2, map[string]any{"log": "ERROR", "h": "c"}})
	res := fl.Process(compile(t, sub("WARN"), sub("ERROR")), data, "t")
	if res.Overflow != 3 || strings.Join(res.OverflowKeywords, ",") != "substring:ERROR,substring:WARN" {
		t.Errorf("overflow %d %v, want 3 [substring:ERROR substring:WARN]", res.Overflow, res.OverflowKeywords)
	}
	if res := fl.Process(compile(t, sub("ERROR")), data[:0], "t"); res.Overflow != 0 || res.OverflowKeywords != nil {
		t.Errorf("next flush: overflow %d %v", res.Overflow, res.OverflowKeywords)
	}
}

func TestLabelNamesSorted(t *testing.T) {
	fl := New(Options{Labels: kubeLabels()[1:], TagRegex: kubeTag})
	if got := strings.Join(fl.LabelNames(), ","); got != "app,container,level,namespace,pod" {
		t.Errorf("names %s", got)
	}
}

// Reading labels costs no allocation per record: a chunk of 1000 labelled
// records costs the allocations of 10 plus its extra entries.
func TestLabelAllocationsDoNotGrowWithRecords(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items)")
	}
	m := compile(t, sub("ERROR"), sub("WARN"))
	fl := New(Options{Keys: []string{"log"}, Hostname: "h", Samples: 1, Identity: "id", Labels: kubeLabels(),
		HostnameKey: accessor.MustParse("$kubernetes['host']"), TagRegex: kubeTag})
	mk := func(n int) []byte {
		var evs []ev
		for i := 0; i < n; i++ {
			evs = append(evs, ev{time.Duration(i%60) * time.Second,
				k8s(fmt.Sprintf("line %d ERROR WARN", i), "ns-"+fmt.Sprint(i%3), "app-"+fmt.Sprint(i%2), "error")})
		}
		return build(t, chunk.FormatV2, chunk.EventTime, evs...)
	}
	tag := "kube.var.log.containers.web-1_shop_nginx-" + strings.Repeat("0f", 32) + ".log"
	small, large := mk(10), mk(1000)
	fl.Process(m, small, tag)
	fl.Process(m, large, tag)
	a := testing.AllocsPerRun(20, func() { fl.Process(m, small, tag) })
	b := testing.AllocsPerRun(20, func() { fl.Process(m, large, tag) })
	// 6 label sets × 2 keywords: the large chunk has at most 12 entries, the
	// small one 12 too; allow a little for map growth, nothing per record.
	if b > a+20 {
		t.Errorf("allocations: %v for 10 records, %v for 1000", a, b)
	}
}

func labelValues(e stream.Entry) []string {
	var out []string
	for _, l := range e.Labels {
		out = append(out, l.Value)
	}
	return out
}

func valuesMap(kv []any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestSanitizeIsSanitizeValue(t *testing.T) {
	for _, v := range []string{"", "web-1", "a\x00b", "\x7f", "é", "\xff", strings.Repeat("a", 256), strings.Repeat("a", 257), strings.Repeat("é", 200)} {
		if got, want := string(sanitize([]byte("x"), []byte(v))), string(stream.SanitizeValue([]byte("x"), []byte(v))); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", v, got, want)
		}
	}
}

// A matching record with the same host and label values as the last one
// reuses its series; one value that differs, the host included, is a new
// series, and nothing carries over to the next chunk, even one written over
// the same buffer at the same offsets.
func TestLabelsOfConsecutiveRecords(t *testing.T) {
	host := func(h, ns string) map[string]any {
		r := k8s("ERROR "+h+" "+ns, ns, "web", "error")
		r["kubernetes"].(map[string]any)["host"] = h
		return r
	}
	fl := New(Options{Keys: []string{"log"}, Hostname: "agent", Samples: 1, Identity: "id", Labels: kubeLabels(),
		HostnameKey: accessor.MustParse("$kubernetes['host']")})
	m := compile(t, sub("ERROR"))
	data := build(t, chunk.FormatV2, chunk.EventTime,
		ev{0, host("n1", "a")}, ev{1, host("n1", "a")}, ev{2, map[string]any{"log": "quiet"}}, ev{3, host("n1", "a")},
		ev{4, host("n1", "b")}, ev{5, host("n2", "b")}, ev{6, host("n1", "a")},
		ev{7, map[string]any{"log": "ERROR bare"}}, ev{8, host("n1", "a")})
	got := strings.Join(labelSummary(fl.Process(m, data, "t").Entries), "\n")
	want := strings.Join([]string{
		"substring:ERROR agent t {} +0 1 [ERROR bare]",
		"substring:ERROR n1 t {app=web,level=error,namespace=a} +0 5 [ERROR n1 a]",
		"substring:ERROR n1 t {app=web,level=error,namespace=b} +0 1 [ERROR n1 b]",
		"substring:ERROR n2 t {app=web,level=error,namespace=b} +0 1 [ERROR n2 b]",
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	buf := build(t, chunk.FormatV2, chunk.EventTime, ev{0, host("n1", "zz8")})
	fl.Process(m, buf, "t")
	copy(buf, bytes.ReplaceAll(buf, []byte("zz8"), []byte("zz9"))) // same offsets, other values
	got = strings.Join(labelSummary(fl.Process(m, buf, "t").Entries), "\n")
	if want := "substring:ERROR n1 t {app=web,level=error,namespace=zz9} +0 1 [ERROR n1 zz9]"; got != want {
		t.Errorf("chunk over the same buffer: got\n%s\nwant\n%s", got, want)
	}
}

// The pooled state keeps no reference into the last chunk (Fluent Bit
// frees it after the flush) and no remembered ids: a chunk written over the
// same buffer must not meet the last one's values.
func TestPooledStateForgetsTheChunk(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	fl := New(Options{Keys: []string{"log"}, Hostname: "agent", Samples: 1, Identity: "id", Labels: kubeLabels(),
		HostnameKey: accessor.MustParse("$kubernetes['host']")})
	data := build(t, chunk.FormatV2, chunk.EventTime, ev{0, k8s("ERROR", "a", "web", "error")})
	if res := fl.Process(compile(t, sub("ERROR")), data, "t"); len(res.Entries) != 1 {
		t.Fatalf("%d entries", len(res.Entries))
	}
	s := fl.pool.Get().(*state)
	defer fl.pool.Put(s)
	for name, vals := range map[string][][]byte{"topVals": s.topVals, "raw": s.raw, "seen": s.seen, "like": s.like, "hashed": s.hashed} {
		for i, v := range vals {
			if v != nil {
				t.Errorf("%s[%d] = %q after the flush", name, i, v)
			}
		}
	}
	for i, id := range s.seenIDs {
		if id.ok {
			t.Errorf("seenIDs[%d] kept after the flush", i)
		}
	}
	for _, h := range s.hits[:cap(s.hits)] {
		if h.line != nil {
			t.Errorf("hit line %q kept after the flush", h.line)
		}
	}
}

// Kubernetes maps that differ only between their first 64 and last 32
// bytes share a slot of the remembered values and take turns in it: each
// record still gets its own labels.
func TestLabelsOfMapsThatDifferInTheMiddle(t *testing.T) {
	pad := strings.Repeat("p", 80)
	var data []byte
	for i, ns := range []string{"a", "b", "a", "b", "b", "a"} {
		rec := ordered{{"log", "ERROR " + ns}, {"kubernetes", ordered{
			{"pod_name", pad}, {"namespace_name", ns}, {"container_image", pad},
		}}}
		head, err := chunk.AppendEvent(nil, chunk.FormatV2, t0.Add(time.Duration(i)*time.Second), chunk.EventTime, map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		data = rec.append(append(data, head[:len(head)-1]...))
	}
	fl := New(Options{Keys: []string{"log"}, Hostname: "agent", Samples: 1, Identity: "id", Labels: kubeLabels()[:1]})
	got := strings.Join(labelSummary(fl.Process(compile(t, sub("ERROR")), data, "t").Entries), "\n")
	want := "substring:ERROR agent t {namespace=a} +0 3 [ERROR a]\nsubstring:ERROR agent t {namespace=b} +0 3 [ERROR b]"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A label whose path is the zero Accessor reads nothing: an empty value,
// as an absent key gives.
func TestZeroPathLabelIsEmpty(t *testing.T) {
	fl := New(Options{Keys: []string{"log"}, Hostname: "agent", Identity: "id",
		Labels: []Label{{Name: "none"}, {Name: "level", Path: accessor.MustParse("$level")}}})
	data := build(t, chunk.FormatV2, chunk.EventTime, ev{0, map[string]any{"log": "ERROR", "level": "warn"}})
	got := strings.Join(labelSummary(fl.Process(compile(t, sub("ERROR")), data, "t").Entries), "\n")
	if want := "substring:ERROR agent t {level=warn} +0 1"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestKeysTheWalkLooksFor: a key that is both scanned and a label's top,
// keys listed twice, keys past 63 bytes (their length shares a bit of the
// length filter), keys of lengths no wanted key has, and a record with a
// non-string key.
func TestKeysTheWalkLooksFor(t *testing.T) {
	long := strings.Repeat("k", 70)
	longer := strings.Repeat("k", 71)
	rec := func(pairs ...any) []byte {
		var o ordered
		for i := 0; i+1 < len(pairs); i += 2 {
			o = append(o, struct {
				k string
				v any
			}{pairs[i].(string), pairs[i+1]})
		}
		head, err := chunk.AppendEvent(nil, chunk.FormatV2, t0, chunk.EventTime, map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		return o.append(head[:len(head)-1])
	}
	tests := []struct {
		name   string
		keys   []string
		labels []Label
		data   []byte
		want   string
	}{
		{"scanned key is a label too", []string{"log"}, []Label{{Name: "l", Path: accessor.MustParse("$log")}},
			rec("log", "ERROR x"),
			"substring:ERROR agent t {l=ERROR x} +0 1 [ERROR x]"},
		{"key listed twice counts once", []string{"log", "log"}, nil,
			rec("log", "ERROR x"),
			"substring:ERROR agent t {} +0 1 [ERROR x]"},
		{"keys past 63 bytes", []string{long}, []Label{{Name: "l", Path: accessor.MustParse("$" + long)}},
			rec(longer, "ERROR no", long, "ERROR yes"),
			"substring:ERROR agent t {l=ERROR yes} +0 1 [ERROR yes]"},
		{"same length, other key", []string{"msg"}, []Label{{Name: "l", Path: accessor.MustParse("$lvl")}},
			rec("log", "ERROR no", "lvl", "warn", "msg", "ERROR yes", "mst", "ERROR no"),
			"substring:ERROR agent t {l=warn} +0 1 [ERROR yes]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fl := New(Options{Keys: tc.keys, Hostname: "agent", Samples: 1, Identity: "id", Labels: tc.labels})
			got := strings.Join(labelSummary(fl.Process(compile(t, sub("ERROR")), tc.data, "t").Entries), "\n")
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
