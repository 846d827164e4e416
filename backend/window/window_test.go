package window

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
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
	for _, c := range [][2]string{{"web-1", "app"}, {"", ""}, {"h", "t\x00x"}} {
		h, tag := SplitField(Field(c[0], c[1]))
		if h != c[0] || tag != c[1] {
			t.Errorf("SplitField(Field(%q, %q)) = %q, %q", c[0], c[1], h, tag)
		}
	}
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
	want := []Cell{{base, "h1", "t", 1}, {base, "h2", "t", 3}, {base + 60, "h1", "u", 5}}
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
	rdb.LPush(ctx, key, EncodeSample(Sample{60, "h", "t", "old"}), "not json", EncodeSample(Sample{120, "h", "t", "new"}))
	got, err := s.Samples(ctx, []Series{{"substring:a", "h", "t"}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{{120, "h", "t", "new"}, {60, "h", "t", "old"}}
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
	push("a", "t", Sample{60, "a", "t", "a1"}, Sample{180, "a", "t", "a3"})
	push("b", "t", Sample{120, "b", "t", "b2"}, Sample{240, "b", "t", "b4"})
	push("c", "t", Sample{300, "c", "t", "c5"})
	tests := []struct {
		name   string
		series []Series
		n      int
		want   []string
	}{
		{"one series", []Series{{"substring:a", "a", "t"}}, 10, []string{"a3", "a1"}},
		{"two series merged by minute", []Series{{"substring:a", "a", "t"}, {"substring:a", "b", "t"}}, 10, []string{"b4", "a3", "b2", "a1"}},
		{"cut to n", []Series{{"substring:a", "a", "t"}, {"substring:a", "b", "t"}}, 3, []string{"b4", "a3", "b2"}},
		{"a series without samples", []Series{{"substring:a", "z", "t"}}, 10, nil},
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
	if got != want {
		t.Errorf("EncodeSample(%+v) decodes to %+v, json.Marshal's to %+v", in, got, want)
	}
}

func FuzzEncodeSample(f *testing.F) {
	f.Add(int64(60), "h", "t", "line")
	f.Add(int64(-1), "\xff", "\x00", "\"\\\u2028")
	f.Fuzz(func(t *testing.T, minute int64, host, tag, line string) {
		checkEncodeSample(t, Sample{minute, host, tag, line})
		if !utf8.ValidString(EncodeSample(Sample{minute, host, tag, line})) {
			t.Errorf("EncodeSample output is not valid UTF-8")
		}
	})
}

func ExampleKeys_Window() {
	fmt.Println(NewKeys("keyalert:events").Window("substring:Exception", 1714557600))
	// Output: ka:{keyalert:events}:w:substring:Exception:1714557600
}
