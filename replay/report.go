package replay

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
)

// report is what a replay found: the JSON output, and what the table shows.
type report struct {
	Files   []string `json:"files"`
	Lines   int      `json:"lines"`
	Records int      `json:"records"`
	// TimedRecords had a timestamp of their own; the others took the time
	// of the record before them (the first: --start).
	TimedRecords int        `json:"timed_records"`
	From         time.Time  `json:"from,omitzero"`
	To           time.Time  `json:"to,omitzero"`
	Host         string     `json:"host"`
	Tag          string     `json:"tag"`
	Rules        []ruleOut  `json:"rules"`
	Events       []eventOut `json:"events"`
	// Open are the alerts still firing when the replay ended.
	Open   []openAlert    `json:"open"`
	Totals []keywordTotal `json:"totals"`
}

type ruleOut struct {
	Index   int    `json:"index"`
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

type eventOut struct {
	alert.ReplayEvent
	Samples []string `json:"samples,omitempty"`
}

type openAlert struct {
	Rule      int           `json:"rule"`
	RuleName  string        `json:"rule_name"`
	GroupBy   rules.GroupBy `json:"group_by"`
	Group     string        `json:"group"`
	StartedAt time.Time     `json:"started_at"`
}

type keywordTotal struct {
	Keyword keyword.Spec `json:"keyword"`
	ID      string       `json:"id"`
	Records int64        `json:"records"`
}

func buildReport(cfg *Config, rs []rules.Rule, specs []keyword.Spec, ctr *counter, rd *recordReader, events []alert.ReplayEvent) *report {
	rep := &report{Files: cfg.Files, Lines: rd.lines, Records: ctr.records, TimedRecords: rd.timed,
		Host: cfg.Host, Tag: cfg.Tag, Events: []eventOut{}, Open: []openAlert{}, Totals: []keywordTotal{}}
	if ctr.records > 0 {
		rep.From, rep.To = ctr.first.In(cfg.Location), ctr.last.In(cfg.Location)
	}
	for i, r := range rs {
		rep.Rules = append(rep.Rules, ruleOut{Index: i, ID: r.ID, Name: r.Name, Enabled: r.Enabled})
	}
	type akey struct {
		rule  int
		group string
	}
	open := map[akey]alert.ReplayEvent{}
	for _, ev := range events {
		ev.At, ev.StartedAt = ev.At.In(cfg.Location), ev.StartedAt.In(cfg.Location)
		out := eventOut{ReplayEvent: ev}
		if ev.Kind != alert.ReplayResolve && cfg.Samples > 0 {
			out.Samples = pickSamples(&rs[ev.Rule], ev, ctr.samples, cfg.Samples)
		}
		rep.Events = append(rep.Events, out)
		k := akey{ev.Rule, ev.Group}
		if ev.Kind == alert.ReplayResolve {
			delete(open, k)
		} else {
			open[k] = ev
		}
	}
	for _, ev := range open {
		rep.Open = append(rep.Open, openAlert{Rule: ev.Rule, RuleName: ev.RuleName, GroupBy: ev.GroupBy, Group: ev.Group, StartedAt: ev.StartedAt})
	}
	slices.SortFunc(rep.Open, func(a, b openAlert) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Group, b.Group))
	})
	for _, s := range specs {
		rep.Totals = append(rep.Totals, keywordTotal{Keyword: s, ID: s.ID(), Records: ctr.total(s.ID())})
	}
	return rep
}

// pickSamples chooses the newest sample lines of the rule's lookback ending
// with the event's minute that the rule's alert would show: its keywords,
// its filters, its group — newest first across all its keywords, as the
// engine's page has them (an absence whose group went quiet has none).
func pickSamples(r *rules.Rule, ev alert.ReplayEvent, samples map[string][]window.Sample, n int) []string {
	evMin := ev.At.Unix() - ev.At.Unix()%60
	from := evMin - int64(r.Condition.Lookback()/time.Second) + 60
	var picked []window.Sample
	for _, kw := range r.KeywordIDs() {
		list := samples[kw]
		taken := 0
		for i := len(list) - 1; i >= 0 && taken < n; i-- {
			s := list[i]
			if s.Minute > evMin || s.Minute < from || !r.Filters.Match(s.Host, s.Tag) {
				continue
			}
			if (r.GroupBy == rules.GroupHost && s.Host != ev.Group) || (r.GroupBy == rules.GroupTag && s.Tag != ev.Group) {
				continue
			}
			picked = append(picked, s)
			taken++
		}
	}
	// Each keyword's list is newest last; merged by minute, newest first.
	slices.SortStableFunc(picked, func(a, b window.Sample) int { return cmp.Compare(b.Minute, a.Minute) })
	out := make([]string, 0, min(n, len(picked)))
	for _, s := range picked[:min(n, len(picked))] {
		out = append(out, s.Line)
	}
	return out
}

func groupLabel(by rules.GroupBy, group string) string {
	switch by {
	case rules.GroupHost:
		return "host=" + group
	case rules.GroupTag:
		return "tag=" + group
	}
	return "fleet"
}

// keywordLabel writes a keyword as the rule has it, with its match options
// when they are not the default.
func keywordLabel(s keyword.Spec) string {
	if s.Match == keyword.Substring && !s.IgnoreCase {
		return s.Text
	}
	return s.ID()
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

const minuteLayout = "2006-01-02 15:04"

// maxTableSample is where the table cuts a sample line (--json keeps it whole).
const maxTableSample = 160

// shorten cuts s to at most n bytes at a UTF-8 boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func writeTable(w io.Writer, cfg *Config, rep *report) error {
	bw := bufio.NewWriter(w)
	clean := strings.NewReplacer("\n", " ", "\t", " ", "\r", " ").Replace
	var nameW, groupW, kindW int
	for _, ev := range rep.Events {
		nameW = max(nameW, len(clean(ev.RuleName)))
		groupW = max(groupW, len(groupLabel(ev.GroupBy, ev.Group)))
		kindW = max(kindW, len(ev.Kind))
	}
	for _, ev := range rep.Events {
		fmt.Fprintf(bw, "%s  %-*s  %-*s  %-*s  %s\n", ev.At.Format(minuteLayout), kindW, strings.ToUpper(ev.Kind),
			nameW, clean(ev.RuleName), groupW, groupLabel(ev.GroupBy, ev.Group), ev.Summary)
		for _, s := range ev.Samples {
			fmt.Fprintf(bw, "    | %s\n", shorten(strings.TrimRight(clean(s), " "), maxTableSample))
		}
	}
	if len(rep.Events) == 0 {
		fmt.Fprintln(bw, "no alert would have fired")
	}
	for _, o := range rep.Open {
		fmt.Fprintf(bw, "still firing at the end: %s (%s) since %s\n", clean(o.RuleName), groupLabel(o.GroupBy, o.Group), o.StartedAt.In(cfg.Location).Format(minuteLayout))
	}
	fmt.Fprintln(bw)
	for _, t := range rep.Totals {
		fmt.Fprintf(bw, "%s: %s\n", keywordLabel(t.Keyword), plural(t.Records, "record", "records"))
	}
	span := ""
	if rep.Records > 0 {
		span = fmt.Sprintf(", %s to %s", rep.From.Format("2006-01-02 15:04:05"), rep.To.Format("2006-01-02 15:04:05"))
	}
	fmt.Fprintf(bw, "\n%s from %s%s; %s, %s.\n", plural(int64(rep.Records), "record", "records"), plural(int64(rep.Lines), "line", "lines"),
		span, plural(int64(len(rep.Rules)), "rule", "rules"), plural(int64(len(rep.Events)), "event", "events"))
	if untimed := rep.Records - rep.TimedRecords; untimed > 0 && rep.TimedRecords > 0 {
		fmt.Fprintf(bw, "%s without a timestamp took the time of the record before.\n", plural(int64(untimed), "record", "records"))
	}
	return bw.Flush()
}
