package flush

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/plugin/accessor"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// FuzzProcess: any chunk bytes go through decode, match (with `Keys *` and a
// hostname key, so every nested value is walked) and aggregation without
// panicking, and the counts are consistent.
func FuzzProcess(f *testing.F) {
	for _, kind := range []chunk.TimeKind{chunk.EventTime, chunk.IntTime, chunk.FloatTime} {
		b, _ := chunk.AppendEvent(nil, chunk.FormatV2, t0, kind, map[string]any{
			"log": "ERROR disk full", "host": "web-1", "nested": map[string]any{"a": []any{"WARN", []byte("timeout")}}})
		f.Add(b)
		f.Add(b[:len(b)-4])
		f.Add(chunk.Lines(chunk.FormatV1, kind, t0.Add(time.Hour), []string{"WARN x", "ok"}))
	}
	// Records that repeat and vary their host and nested values, so that
	// remembered values are met again, and meet look-alikes.
	var rep []byte
	for i, h := range []string{"web-1", "web-1", "web-2", "web-1", "web-2", "web-2"} {
		var err error
		rep, err = chunk.AppendEvent(rep, chunk.FormatV2, t0.Add(time.Duration(i)*time.Second), chunk.EventTime, map[string]any{
			"log": "ERROR " + h, "host": h, "nested": map[string]any{"a": []any{"x", fmt.Sprint("v", i%2)}}})
		if err != nil {
			f.Fatal(err)
		}
	}
	f.Add(rep)
	m := compile(f, sub("ERROR"), sub("WARN"), keyword.Spec{Text: "timeout", IgnoreCase: true},
		keyword.Spec{Text: "disk", Match: keyword.Word}, keyword.Spec{Text: `f[a-z]+l`, Match: keyword.Regex})
	opt := Options{AllKeys: true, HostnameKey: accessor.MustParse("host"), Hostname: "h", Samples: 2, Identity: "id",
		Labels: []Label{{Name: "a", Path: accessor.MustParse("$nested['a'][1]")}, {Name: "l", Path: accessor.MustParse("$log")}}}
	fl, one, eager := New(opt), New(opt), New(opt)
	one.oneSlot = true
	eager.eager, eager.forget = true, true
	f.Fuzz(func(t *testing.T, b []byte) {
		res := fl.Process(m, b, "t")
		// Walking each record to find its end gives what framing it first
		// gives, and remembered hosts and labels what reading them afresh
		// gives, also when all of them take turns in one slot.
		ref := eager.Process(m, b, "t")
		for _, got := range []Result{res, one.Process(m, b, "t")} {
			if fmt.Sprint(labelSummary(got.Entries)) != fmt.Sprint(labelSummary(ref.Entries)) || got.Events != ref.Events ||
				got.Matched != ref.Matched || got.Skipped != ref.Skipped || got.Markers != ref.Markers || fmt.Sprint(got.Err) != fmt.Sprint(ref.Err) {
				t.Fatalf("lazy, remembering %+v\neager, afresh %+v", got, ref)
			}
		}
		var total int64
		for _, e := range res.Entries {
			if e.Count <= 0 || e.Minute%60 != 0 || e.Minute < 0 || len(e.Samples) > 2 {
				t.Fatalf("bad entry %+v", e)
			}
			total += e.Count
		}
		if total > int64(res.Matched)*int64(m.Len()) || res.Matched > res.Events {
			t.Fatalf("total %d matched %d events %d", total, res.Matched, res.Events)
		}
	})
}
