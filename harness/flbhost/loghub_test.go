package flbhost

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/harness/loghub"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

// TestLoghubCountsMatchPublishedTable runs every loghub sample through two
// instances — three case-sensitive keywords, and "error" ignoring case — in
// 500-line chunks, and checks the counts in Redis against the README's table
// and, per minute, against a naive reference count.
func TestLoghubCountsMatchPublishedTable(t *testing.T) {
	files := loghub.Files(t)
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)

	cs := specs(false, "Exception", "ERROR", "WARN")
	ci := specs(true, "error")
	const samples = 3
	mustInit(t, h, "cs", instanceConfig(rs, "ka:cs", "Exception,ERROR,WARN", "Samples", "3"))
	mustInit(t, h, "ci", instanceConfig(rs, "ka:ci", "error", "Ignore_Case", "on", "Samples", "3"))

	type fileRun struct {
		name  string
		tag   string
		lines []string
	}
	var runs []fileRun
	for _, f := range files {
		name := filepath.Base(f)
		r := fileRun{name: name, tag: "loghub." + strings.TrimSuffix(name, ".log"), lines: loghub.Read(t, name)}
		chunks, _ := split(r.lines, 500)
		for _, c := range chunks {
			mustFlush(t, h, "cs", r.tag, c, OK)
			mustFlush(t, h, "ci", r.tag, c, OK)
		}
		runs = append(runs, r)
	}

	csEntries := readEntries(t, rc, "ka:cs")
	ciEntries := readEntries(t, rc, "ka:ci")
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			want, known := loghub.Counts[r.name]
			if len(r.lines) != 2000 {
				t.Errorf("%s has %d lines, the README says 2000", r.name, len(r.lines))
			}
			gotCS := tally(t, csEntries, r.tag)
			gotCI := tally(t, ciEntries, r.tag)
			equalTallies(t, "case-sensitive", gotCS, truth(cs, base, r.lines))
			equalTallies(t, "ignore-case", gotCI, truth(ci, base, r.lines))
			if known {
				kwCS, kwCI := byKeyword(gotCS), byKeyword(gotCI)
				for i, s := range cs {
					if kwCS[s.ID()] != want[i] {
						t.Errorf("%q: %d lines counted, README says %d", s.Text, kwCS[s.ID()], want[i])
					}
				}
				if kwCI[ci[0].ID()] != want[3] {
					t.Errorf("%q ignoring case: %d lines counted, README says %d", ci[0].Text, kwCI[ci[0].ID()], want[3])
				}
			} else {
				t.Logf("%s is not in the README table; checked against the reference count only", r.name)
			}
			checkSamples(t, csEntries, r.tag, r.lines, samples)
			checkSamples(t, ciEntries, r.tag, r.lines, samples)
		})
	}
}

// checkSamples checks that every entry carries at most max samples, each a
// (cut) matching input line from the entry's minute, and the configured
// hostname. Lines are timed as split lays them out.
func checkSamples(t *testing.T, entries []stream.Entry, tag string, lines []string, maxSamples int) {
	t.Helper()
	for _, e := range entries {
		if e.Tag != tag {
			continue
		}
		if e.Host != testHost {
			t.Errorf("entry host %q, want %q", e.Host, testHost)
		}
		if len(e.Samples) > maxSamples || len(e.Samples) > int(e.Count) {
			t.Errorf("%s minute %d: %d samples for count %d (Samples=%d)", e.Keyword.ID(), e.Minute, len(e.Samples), e.Count, maxSamples)
		}
		for _, s := range e.Samples {
			from := max(0, int(e.Minute-base.Unix()))
			to := min(len(lines), from+60)
			ok := from < to && slices.ContainsFunc(lines[from:to], func(l string) bool {
				return contains(e.Keyword, l) && stream.CutSample([]byte(l)) == s
			})
			if !ok {
				t.Errorf("%s minute %d: sample %.80q is not a matching input line", e.Keyword.ID(), e.Minute, s)
			}
		}
	}
}
