package window

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

func TestKeysShareTheStreamsHashTag(t *testing.T) {
	tests := []struct {
		stream string
		tag    string
	}{
		{stream.DefaultStream, "{keyalert:events}"},
		{"{ka}:events", "{ka}"},
	}
	for _, tt := range tests {
		k := NewKeys(tt.stream)
		for _, key := range []string{k.Window("substring:a{b}", 60), k.Samples("regex:}{", "h", "t"), k.Seen(7200), k.Producer("0123456789abcdef")} {
			if !strings.HasPrefix(key, "ka:"+tt.tag+":") {
				t.Errorf("key %q for stream %q: want prefix ka:%s:", key, tt.stream, tt.tag)
			}
		}
	}
}

func TestKeySchema(t *testing.T) {
	k := NewKeys("keyalert:events")
	if got := k.Window("word/i:error", 1714557600); got != "ka:{keyalert:events}:w:word/i:error:1714557600" {
		t.Errorf("Window = %q", got)
	}
	if got := k.Samples("substring:x", "web-1", "app"); got != "ka:{keyalert:events}:s:substring:x\x00web-1\x00app" {
		t.Errorf("Samples = %q", got)
	}
	if got := k.Seen(1714557660); got != "ka:{keyalert:events}:seen:476266" {
		t.Errorf("Seen = %q", got)
	}
	if got := k.Producer("0123456789abcdef"); got != "ka:{keyalert:events}:p:0123456789abcdef" {
		t.Errorf("Producer = %q", got)
	}
}

func TestFieldRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name      string
		host, tag string
		labels    []stream.Label
		field     string
	}{
		{"label-free keeps the old encoding", "web-1", "app", nil, "web-1\x00app"},
		{"empty parts", "", "", nil, "\x00"},
		{"labels follow the tag", "node-1", "kube.x", []stream.Label{{Name: "app", Value: "web"}, {Name: "namespace", Value: "shop"}}, "node-1\x00kube.x\x00app=web\x00namespace=shop"},
		{"label values may hold =", "h", "t", []stream.Label{{Name: "q", Value: "a=b="}}, "h\x00t\x00q=a=b="},
		{"empty label value", "h", "", []stream.Label{{Name: "app", Value: ""}}, "h\x00\x00app="},
		{"overflow series", stream.OverflowValue, stream.OverflowValue, []stream.Label{{Name: "app", Value: stream.OverflowValue}}, "__other__\x00__other__\x00app=__other__"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := Field(c.host, c.tag, c.labels...)
			if f != c.field {
				t.Errorf("Field = %q, want %q", f, c.field)
			}
			h, tag, labels := SplitField(f)
			if h != c.host || tag != c.tag || !slices.Equal(labels, c.labels) {
				t.Errorf("SplitField(%q) = %q, %q, %v", f, h, tag, labels)
			}
		})
	}
}

func TestSplitFieldReadsATagHoldingNULAsBeforeLabels(t *testing.T) {
	for _, f := range []string{"h\x00t\x00x", "h\x00t\x00", "h\x00t\x00app=web\x00junk", "h\x00t\x009x=1"} {
		h, tag, labels := SplitField(f)
		if h != "h" || tag != f[2:] || labels != nil {
			t.Errorf("SplitField(%q) = %q, %q, %v; want the tag %q and no labels", f, h, tag, labels, f[2:])
		}
	}
}

func FuzzSplitField(f *testing.F) {
	f.Add("web-1\x00app")
	f.Add("n\x00t\x00app=web\x00namespace=shop")
	f.Add("h\x00t\x00=x")
	f.Add("\x00\x00\x00")
	f.Fuzz(func(t *testing.T, field string) {
		host, tag, labels := SplitField(field)
		// Whatever the field, putting the parts back gives it again.
		if got := Field(host, tag, labels...); got != field && strings.Contains(field, "\x00") {
			t.Fatalf("Field(SplitField(%q)) = %q", field, got)
		}
		for _, l := range labels {
			if err := stream.ValidLabelName(l.Name); err != nil {
				t.Fatalf("SplitField(%q) gave label name %q: %v", field, l.Name, err)
			}
		}
		// Parts as ingest writes them (sanitized values) always come back.
		san := func(s string) string { return string(stream.SanitizeValue(nil, []byte(s))) }
		want := []stream.Label{{Name: "app", Value: san(field)}, {Name: "ns", Value: san(host)}}
		h, tg, ls := SplitField(Field(san(host), san(tag), want...))
		if h != san(host) || tg != san(tag) || !slices.Equal(ls, want) {
			t.Fatalf("sanitized round trip of %q: %q, %q, %v", field, h, tg, ls)
		}
	})
}

func TestCellsReadsMinutesInRangeSorted(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	k := s.Keys()
	base := int64(1714557600)
	write := func(kw string, minute int64, host, tag string, n int64) {
		if err := rdb.HIncrBy(ctx, k.Window(kw, minute), Field(host, tag), n).Err(); err != nil {
			t.Fatal(err)
		}
	}
	write("substring:a", base, "h2", "t", 3)
	write("substring:a", base, "h1", "t", 1)
	write("substring:a", base+60, "h1", "u", 5)
	write("substring:a", base+120, "h1", "t", 7) // outside [base, base+120)
	write("substring:b", base, "h1", "t", 2)

	got, err := s.Cells(ctx, "substring:a", base, base+120)
	if err != nil {
		t.Fatal(err)
	}
	want := []Cell{{base, "h1", "t", nil, 1}, {base, "h2", "t", nil, 3}, {base + 60, "h1", "u", nil, 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Cells = %v, want %v", got, want)
	}
	// A from inside a minute starts at the next minute.
	got, _ = s.Cells(ctx, "substring:a", base+1, base+120)
	if len(got) != 1 || got[0].Minute != base+60 {
		t.Errorf("Cells from base+1 = %v, want only minute base+60", got)
	}
	many, err := s.CellsMany(ctx, []string{"substring:a", "substring:b", "substring:none"}, base, base+60)
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 2 || len(many["substring:a"]) != 2 || many["substring:b"][0].Count != 2 {
		t.Errorf("CellsMany = %v", many)
	}
	if _, err := s.Cells(ctx, "substring:a", 0, (MaxMinutes+1)*60); err == nil {
		t.Error("Cells over MaxMinutes: want an error")
	}
	if got, err := s.Cells(ctx, "substring:a", base+60, base); err != nil || len(got) != 0 {
		t.Errorf("empty range: %v, %v", got, err)
	}
}

func TestSamplesNewestFirstSkipsUndecodable(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	key := s.Keys().Samples("substring:a", "h", "t")
	rdb.LPush(ctx, key, EncodeSample(Sample{60, "h", "t", nil, "old"}), "not json", EncodeSample(Sample{120, "h", "t", nil, "new"}))
	got, err := s.Samples(ctx, []Series{{"substring:a", "h", "t", nil}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{{120, "h", "t", nil, "new"}, {60, "h", "t", nil, "old"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Samples = %v, want %v", got, want)
	}
}

func TestSamplesReadOnlyTheGivenSeriesMergedNewestFirst(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	push := func(host, tag string, samples ...Sample) {
		for _, sm := range samples {
			rdb.LPush(ctx, s.Keys().Samples("substring:a", host, tag), EncodeSample(sm))
		}
	}
	push("a", "t", Sample{60, "a", "t", nil, "a1"}, Sample{180, "a", "t", nil, "a3"})
	push("b", "t", Sample{120, "b", "t", nil, "b2"}, Sample{240, "b", "t", nil, "b4"})
	push("c", "t", Sample{300, "c", "t", nil, "c5"})
	tests := []struct {
		name   string
		series []Series
		n      int
		want   []string
	}{
		{"one series", []Series{{"substring:a", "a", "t", nil}}, 10, []string{"a3", "a1"}},
		{"two series merged by minute", []Series{{"substring:a", "a", "t", nil}, {"substring:a", "b", "t", nil}}, 10, []string{"b4", "a3", "b2", "a1"}},
		{"cut to n", []Series{{"substring:a", "a", "t", nil}, {"substring:a", "b", "t", nil}}, 3, []string{"b4", "a3", "b2"}},
		{"a series without samples", []Series{{"substring:a", "z", "t", nil}}, 10, nil},
		{"none asked", nil, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Samples(ctx, tt.series, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, sm := range got {
				lines = append(lines, sm.Line)
			}
			if !reflect.DeepEqual(lines, tt.want) {
				t.Errorf("lines %q, want %q", lines, tt.want)
			}
		})
	}
	if _, err := s.Samples(ctx, make([]Series, MaxSampleSeries+1), 1); err == nil {
		t.Error("no error for more than MaxSampleSeries series")
	}
}

func TestEncodeSampleDecodesLikeEncodingJSON(t *testing.T) {
	for _, line := range []string{"plain", `q"uote\back`, "tab\tnl\n\r\x01\x1f", "ünï ✓ \u2028", "bad \xff utf8", "<html>&"} {
		in := Sample{Minute: 60, Host: "h", Tag: "t", Line: line}
		checkEncodeSample(t, in)
		in.Labels = map[string]string{"namespace": "shop", "app": line, "z": ""}
		checkEncodeSample(t, in)
	}
}

func checkEncodeSample(t *testing.T, in Sample) {
	t.Helper()
	enc := EncodeSample(in)
	var got Sample
	if err := json.Unmarshal([]byte(enc), &got); err != nil {
		t.Fatalf("EncodeSample(%q) = %s: not JSON: %v", in.Line, enc, err)
	}
	std, _ := json.Marshal(in)
	var want Sample
	json.Unmarshal(std, &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EncodeSample(%+v) decodes to %+v, json.Marshal's to %+v", in, got, want)
	}
}

func FuzzEncodeSample(f *testing.F) {
	f.Add(int64(60), "h", "t", "line")
	f.Add(int64(-1), "\xff", "\x00", "\"\\\u2028")
	f.Fuzz(func(t *testing.T, minute int64, host, tag, line string) {
		checkEncodeSample(t, Sample{minute, host, tag, nil, line})
		checkEncodeSample(t, Sample{minute, host, tag, map[string]string{tag: host}, line})
		if !utf8.ValidString(EncodeSample(Sample{minute, host, tag, nil, line})) {
			t.Errorf("EncodeSample output is not valid UTF-8")
		}
	})
}

// AppendSample of an entry's sorted labels is EncodeSample of the same
// sample with the labels as a map.
func FuzzAppendSampleIsEncodeSample(f *testing.F) {
	f.Add(int64(60), "h", "t", "app", "web", "ns", "\x00\xff", "line")
	f.Add(int64(-1), "\xff", "\x00", "", "", "", "", "\"\\\u2028")
	f.Fuzz(func(t *testing.T, minute int64, host, tag, n1, v1, n2, v2, line string) {
		var labels []stream.Label
		m := map[string]string{}
		for _, l := range []stream.Label{{Name: n1, Value: v1}, {Name: n2, Value: v2}} {
			if _, dup := m[l.Name]; l.Name == "" || dup {
				continue
			}
			m[l.Name] = l.Value
			labels = append(labels, l)
		}
		slices.SortFunc(labels, func(a, b stream.Label) int { return strings.Compare(a.Name, b.Name) })
		if len(m) == 0 {
			m = nil
		}
		want := EncodeSample(Sample{minute, host, tag, m, line})
		prefix := []byte("kept")
		got := AppendSample(prefix, minute, host, tag, labels, line)
		if string(got) != "kept"+want {
			t.Errorf("AppendSample = %q, want %q after the prefix", got, want)
		}
	})
}

func ExampleKeys_Window() {
	fmt.Println(NewKeys("keyalert:events").Window("substring:Exception", 1714557600))
	// Output: ka:{keyalert:events}:w:substring:Exception:1714557600
}

// PieceOf is the hash the ingest script computes in Lua (apply.lua's djb2
// mod 2^32, in Lua 5.1's doubles): both must put a host's cells in the
// same piece.
func TestPieceOfMatchesTheIngestScriptsHash(t *testing.T) {
	rdb := redistest.Start(t).Client()
	const lua = `
local h = 5381
for j = 1, #ARGV[1] do
  h = (h * 33 + string.byte(ARGV[1], j)) % 4294967296
end
return h % tonumber(ARGV[2])`
	for _, host := range []string{"", "a", "host-0042.example.internal", "web-00001", "ünïcödé-host", "\xff\xfe\xfd\xfc" + strings.Repeat("z", 300)} {
		for _, pieces := range []int{1, 16, 25, 256} {
			got, err := rdb.Eval(context.Background(), lua, nil, host, pieces).Int()
			if err != nil {
				t.Fatal(err)
			}
			if want := PieceOf(host, pieces); got != want {
				t.Errorf("host %q, %d pieces: Lua %d, Go %d", host, pieces, got, want)
			}
		}
	}
}
