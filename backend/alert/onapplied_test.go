package alert

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// onAppliedEach is what OnApplied noted before it noted each keyword minute
// of a batch once: every entry's keyword, minute and lateness.
func onAppliedEach(entries []stream.Entry, horizon int64) (kws map[string]struct{}, mins marker, past int, oldest int64) {
	kws, mins = map[string]struct{}{}, marker{}
	for _, en := range entries {
		kw, m := en.Keyword.ID(), en.Minute
		kws[kw] = struct{}{}
		if !slices.Contains(mins[kw], m) {
			mins[kw] = append(mins[kw], m)
		}
		if m+60 < horizon {
			if past == 0 || m < oldest {
				oldest = m
			}
			past++
		}
	}
	return kws, mins, past, oldest
}

func TestOnAppliedNotesWhatEachEntryNoted(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	horizon := now.Add(-DefaultLatenessHorizon).Unix()
	minute := now.Unix() / 60 * 60
	specs := []keyword.Spec{{Text: "Error"}, {Text: "error", IgnoreCase: true}, {Text: "err(or)?", Match: keyword.Regex}, {Text: "timeout", Match: keyword.Word}}
	cases := []struct {
		name    string
		entries func() []stream.Entry
	}{
		{"one entry", func() []stream.Entry { return []stream.Entry{{Keyword: specs[0], Minute: minute}} }},
		{"chunks repeating keywords and minutes", func() []stream.Entry {
			var es []stream.Entry
			for i := 0; i < 400; i++ {
				es = append(es, stream.Entry{Keyword: specs[i%len(specs)], Minute: minute - int64(i/50)*60, Host: fmt.Sprint(i % 3)})
			}
			return es
		}},
		{"specs whose ids are equal", func() []stream.Entry {
			return []stream.Entry{{Keyword: keyword.Spec{Text: "Error", IgnoreCase: true}, Minute: minute}, {Keyword: keyword.Spec{Text: "error", IgnoreCase: true}, Minute: minute - 60},
				{Keyword: keyword.Spec{Text: "ERROR", IgnoreCase: true}, Minute: minute}}
		}},
		{"one text in several modes, interleaved", func() []stream.Entry {
			var es []stream.Entry
			for i := 0; i < 24; i++ {
				spec := []keyword.Spec{{Text: "err"}, {Text: "err", Match: keyword.Regex}, {Text: "err", IgnoreCase: true}, {Text: "err", Match: keyword.Word}}[i%4]
				es = append(es, stream.Entry{Keyword: spec, Minute: minute - int64(i%3)*60})
			}
			return es
		}},
		{"late entries, past the horizon", func() []stream.Entry {
			var es []stream.Entry
			for i := 0; i < 30; i++ {
				es = append(es, stream.Entry{Keyword: specs[i%2], Minute: horizon - 60 - int64(i%7)*60})
			}
			return es
		}},
		{"no entries", func() []stream.Entry { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := New(Config{Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			e.past.loggedAt = now // not logged and reset in this call: compared below
			es := tc.entries()
			e.OnApplied(context.Background(), es)
			kws, mins, past, oldest := onAppliedEach(es, horizon)
			if !reflect.DeepEqual(e.localKW, kws) {
				t.Errorf("keywords %v, want %v", e.localKW, kws)
			}
			if !reflect.DeepEqual(e.localMin, mins) {
				t.Errorf("minutes %v, want %v", e.localMin, mins)
			}
			if got := e.past.n; got != past || (past > 0 && e.past.oldest != oldest) {
				t.Errorf("past the horizon: %d (oldest %d), want %d (oldest %d)", got, e.past.oldest, past, oldest)
			}
		})
	}
}
