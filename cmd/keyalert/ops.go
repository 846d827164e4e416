package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/client"
	"github.com/keyalert/keyalert/pkg/duration"
)

// The everyday commands: alerts, ack, resolve, silence add, silences, counts.

// alertRow is what the alerts table shows of an alert.
type alertRow struct {
	ID         string    `json:"id"`
	RuleName   string    `json:"rule_name"`
	Group      string    `json:"group"`
	State      string    `json:"state"`
	Count      int64     `json:"count"`
	StartedAt  time.Time `json:"started_at"`
	AckedBy    string    `json:"acked_by"`
	SilencedBy string    `json:"silenced_by"`
}

// stateText is the state as people read it: a silenced alert is recorded
// but not paged, which its state alone does not say.
func (a alertRow) stateText() string {
	s := strings.ToUpper(a.State)
	if a.SilencedBy != "" && (a.State == "firing" || a.State == "pending" || a.State == "acknowledged") {
		s += " (silenced by " + a.SilencedBy + ")"
	}
	return s
}

func alertsCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("alerts", "usage: keyalert alerts [-state firing] [-o json]\n\nLists alerts, newest first.", stderr)
	c := apiFlags(fs, true)
	state := fs.String("state", "", "only alerts in this state: pending, firing, acknowledged or resolved")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	raw, err := cl.Alerts(context.Background(), *state)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(stdout, raw)
	}
	var res struct {
		Alerts []alertRow `json:"alerts"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("decode alerts: %w", err)
	}
	if len(res.Alerts) == 0 {
		fmt.Fprintln(stdout, "no alerts")
		return nil
	}
	rows := make([][]string, len(res.Alerts))
	for i, a := range res.Alerts {
		group := a.Group
		if group == "" {
			group = "-"
		}
		rows[i] = []string{a.ID, a.stateText(), a.RuleName, group, strconv.FormatInt(a.Count, 10), a.StartedAt.Local().Format("2006-01-02 15:04")}
	}
	return table(stdout, []string{"ID", "STATE", "RULE", "GROUP", "COUNT", "STARTED"}, rows)
}

// transitionCmd is ack or resolve.
func transitionCmd(what string) func(args []string, stdout, stderr io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(what, "usage: keyalert "+what+" [-by NAME] ALERT_ID...", stderr)
		c := apiFlags(fs, true)
		by := fs.String("by", os.Getenv("USER"), "who does it (shown in the alert's history)")
		ids, err := parse(fs, args)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return errors.New("name at least one alert id (keyalert alerts lists them)")
		}
		cl, err := c.client(stderr)
		if err != nil {
			return err
		}
		var errs []error
		for _, id := range ids {
			if strings.TrimSpace(id) == "" {
				errs = append(errs, errors.New("an empty alert id"))
				continue
			}
			var raw json.RawMessage
			if what == "ack" {
				raw, err = cl.Ack(context.Background(), id, *by)
			} else {
				raw, err = cl.Resolve(context.Background(), id, *by)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if c.json() {
				printJSON(stdout, raw)
				continue
			}
			var a alertRow
			json.Unmarshal(raw, &a)
			fmt.Fprintf(stdout, "%s: %s (rule %q)\n", a.ID, a.stateText(), a.RuleName)
		}
		return errors.Join(errs...)
	}
}

// matchers collects repeated -match key=value flags.
type matchers map[string]string

func (m matchers) String() string { return fmt.Sprint(map[string]string(m)) }

// silenceKeys maps -match keys to the silence's fields.
var silenceKeys = map[string]string{"host": "host", "tag": "tag", "keyword": "keyword", "rule": "rule_id", "rule_id": "rule_id"}

func (m matchers) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	field, known := silenceKeys[k]
	if !ok || !known || v == "" {
		return fmt.Errorf("%q: want host=GLOB, tag=GLOB, keyword=TEXT or rule=ID", s)
	}
	m[field] = v
	return nil
}

type silenceRow struct {
	ID        string            `json:"id"`
	RuleID    string            `json:"rule_id"`
	Host      string            `json:"host"`
	Tag       string            `json:"tag"`
	Labels    map[string]string `json:"labels"`
	Keyword   string            `json:"keyword"`
	Intervals []string          `json:"time_intervals"`
	Start     time.Time         `json:"start"`
	End       time.Time         `json:"end"`
	Author    string            `json:"author"`
	Comment   string            `json:"comment"`
	Active    bool              `json:"active"`
}

func (s silenceRow) matchText() string {
	var parts []string
	for _, kv := range [][2]string{{"rule", s.RuleID}, {"host", s.Host}, {"tag", s.Tag}, {"keyword", s.Keyword}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		parts = append(parts, k+"="+s.Labels[k])
	}
	if len(s.Intervals) > 0 {
		parts = append(parts, "during "+strings.Join(s.Intervals, ","))
	}
	if len(parts) == 0 {
		return "(everything)"
	}
	return strings.Join(parts, " ")
}

func silenceCmd(args []string, stdout, stderr io.Writer) error {
	const usage = `usage: keyalert silence add -match host=web-12 [-match ...] -for 2h -comment "..."

Mutes the alerts every matcher matches (host and tag are globs, keyword the
rule's keyword text, rule a rule id): they are still recorded, not paged.`
	if len(args) == 0 || args[0] != "add" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintln(stdout, usage)
			return nil
		}
		return fmt.Errorf("want: keyalert silence add ... (keyalert silences lists them)")
	}
	fs := newFlagSet("silence add", usage, stderr)
	c := apiFlags(fs, true)
	m := matchers{}
	fs.Var(m, "match", "host=GLOB, tag=GLOB, keyword=TEXT or rule=ID (repeatable; all must match)")
	forD := fs.String("for", "2h", "how long, from now: 30m, 2h, 1d")
	comment := fs.String("comment", "", "why (required)")
	author := fs.String("author", os.Getenv("USER"), "who")
	var intervals stringList
	fs.Var(&intervals, "time-interval", "mute only inside this named time interval (repeatable)")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	d, err := duration.Parse(*forD)
	if err != nil || d <= 0 {
		return fmt.Errorf("-for %q: want a positive duration like 30m, 2h or 1d", *forD)
	}
	if len(m) == 0 {
		return errors.New("-match: name at least one matcher (host=web-12); a silence of everything is not made by accident")
	}
	if *comment == "" {
		return errors.New("-comment: say why, for whoever wonders later")
	}
	if *author == "" {
		*author = "keyalert"
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	body := map[string]any{"end": time.Now().Add(d).UTC().Format(time.RFC3339), "author": *author, "comment": *comment}
	for k, v := range m {
		body[k] = v
	}
	if len(intervals) > 0 {
		body["time_intervals"] = []string(intervals)
	}
	raw, err := cl.CreateSilence(context.Background(), body)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(stdout, raw)
	}
	var s silenceRow
	json.Unmarshal(raw, &s)
	fmt.Fprintf(stdout, "silence %s: %s until %s\n", s.ID, s.matchText(), s.End.Local().Format("2006-01-02 15:04"))
	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func silencesCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "apply":
			return silencesApply(args[1:], stdout, stderr)
		case "export":
			return silencesExport(args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet("silences", "usage: keyalert silences [-all] [-o json]\n       keyalert silences apply|export (-h for their flags)\n\nLists the active silences (-all: expired ones too).", stderr)
	c := apiFlags(fs, true)
	all := fs.Bool("all", false, "expired and future silences too")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	raw, err := cl.Silences(context.Background(), !*all)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(stdout, raw)
	}
	var res struct {
		Silences []silenceRow `json:"silences"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("decode silences: %w", err)
	}
	if len(res.Silences) == 0 {
		fmt.Fprintln(stdout, "no silences")
		return nil
	}
	rows := make([][]string, len(res.Silences))
	for i, s := range res.Silences {
		active := "no"
		if s.Active {
			active = "yes"
		}
		rows[i] = []string{s.ID, s.matchText(), active, s.End.Local().Format("2006-01-02 15:04"), s.Author, s.Comment}
	}
	return table(stdout, []string{"ID", "MATCHES", "ACTIVE", "ENDS", "AUTHOR", "COMMENT"}, rows)
}

// series is one keyword with its match options, as a rule counts it.
type series struct {
	Text       string `json:"keyword"`
	Match      string `json:"match"`
	IgnoreCase bool   `json:"ignore_case"`
	Rules      []string
}

func (s series) query() url.Values {
	q := url.Values{"keyword": {s.Text}}
	if s.Match != "" {
		q.Set("match", s.Match)
	}
	q.Set("ignore_case", strconv.FormatBool(s.IgnoreCase))
	return q
}

func (s series) String() string {
	opts := s.Match
	if opts == "" {
		opts = "substring"
	}
	if s.IgnoreCase {
		opts += ", ignore case"
	}
	return fmt.Sprintf("%q (%s)", s.Text, opts)
}

type ruleKeywords struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Keywords   []string `json:"keywords"`
	Match      string   `json:"match"`
	IgnoreCase bool     `json:"ignore_case"`
	Enabled    bool     `json:"enabled"`
}

// resolveSeries finds the series behind a keyword as rules state it: the
// series identity includes the match options, so "Disk Full" of an
// ignore-case rule is not the case-sensitive series of that text. With
// ruleID, the rule's keywords; with explicit options, exactly those; else
// every option set the rules count kw with (none: kw as a plain substring).
func resolveSeries(ctx context.Context, cl *client.Client, kw, ruleID string, explicit *series) ([]series, error) {
	if explicit != nil {
		return []series{*explicit}, nil
	}
	raws, err := cl.Rules(ctx)
	if err != nil {
		return nil, err
	}
	var out []series
	found := false
	for _, raw := range raws {
		var r ruleKeywords
		if json.Unmarshal(raw, &r) != nil {
			continue
		}
		if ruleID != "" && r.ID != ruleID {
			continue
		}
		found = found || ruleID != ""
		for _, k := range r.Keywords {
			if ruleID == "" && k != kw {
				continue
			}
			i := 0
			for i < len(out) && !(out[i].Text == k && out[i].Match == r.Match && out[i].IgnoreCase == r.IgnoreCase) {
				i++
			}
			if i == len(out) {
				out = append(out, series{Text: k, Match: r.Match, IgnoreCase: r.IgnoreCase})
			}
			out[i].Rules = append(out[i].Rules, r.Name)
		}
	}
	if ruleID != "" && !found {
		return nil, fmt.Errorf("-rule %s: no such rule (keyalert rules export lists them)", ruleID)
	}
	if len(out) == 0 {
		out = []series{{Text: kw, Match: "substring"}}
	}
	return out, nil
}

func countsCmd(args []string, stdout, stderr io.Writer) error {
	const usage = `usage: keyalert counts KEYWORD [-since 1h] [-by host|tag] [-o json]
       keyalert counts -rule RULE_ID [-since 1h] [-by host|tag]

Counts of a keyword's series over the last -since. The keyword is taken as
the rules state it (their match and ignore_case), so it shows what a rule
counts; -match and -ignore-case ask for one series explicitly.`
	fs := newFlagSet("counts", usage, stderr)
	c := apiFlags(fs, true)
	since := fs.String("since", "1h", "how far back, up to the retention: 15m, 1h, 1d")
	by := fs.String("by", "", "split by host or tag (the top 100)")
	ruleID := fs.String("rule", "", "the keywords of this rule id, with its match options")
	match := fs.String("match", "", "explicit match mode: substring, word or regex")
	ic := fs.String("ignore-case", "", "explicit ignore_case: true or false")
	host := fs.String("host", "", "only this host (not with -by)")
	tag := fs.String("tag", "", "only this tag (not with -by)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return fmt.Errorf("one keyword at a time (quote a keyword with spaces): got %q", pos)
	case len(pos) == 0 && *ruleID == "":
		return errors.New("name a keyword or -rule RULE_ID")
	case len(pos) == 1 && *ruleID != "":
		return errors.New("a keyword or -rule, not both")
	case *by != "" && *by != "host" && *by != "tag":
		return fmt.Errorf("-by %q: want host or tag", *by)
	case *by != "" && (*host != "" || *tag != ""):
		return errors.New("-host and -tag narrow a plain count; with -by, every host or tag is listed")
	}
	d, err := duration.Parse(*since)
	if err != nil || d < time.Minute {
		return fmt.Errorf("-since %q: want a duration of at least 1m, like 15m, 1h or 1d", *since)
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var explicit *series
	if *match != "" || *ic != "" {
		b, _ := strconv.ParseBool(*ic)
		if *ic != "" && *ic != "true" && *ic != "false" {
			return fmt.Errorf("-ignore-case %q: want true or false", *ic)
		}
		explicit = &series{Text: first(pos), Match: *match, IgnoreCase: b}
	}
	list, err := resolveSeries(ctx, cl, first(pos), *ruleID, explicit)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	type answer struct {
		series
		raw     json.RawMessage
		Counted *bool `json:"counted"`
		Total   int64 `json:"total"`
		Items   []struct {
			Value string `json:"value"`
			Count int64  `json:"count"`
		} `json:"items"`
		Points []struct {
			Minute time.Time `json:"minute"`
			Count  int64     `json:"count"`
		} `json:"points"`
	}
	var answers []answer
	for _, s := range list {
		q := s.query()
		var raw json.RawMessage
		if *by != "" {
			q.Set("by", *by)
			q.Set("window", *since)
			q.Set("limit", "100")
			raw, err = cl.Top(ctx, q)
		} else {
			q.Set("from", now.Add(-d).Format(time.RFC3339))
			q.Set("to", now.Add(time.Minute).Truncate(time.Minute).Format(time.RFC3339))
			if *host != "" {
				q.Set("host", *host)
			}
			if *tag != "" {
				q.Set("tag", *tag)
			}
			raw, err = cl.Counts(ctx, q)
		}
		if err != nil {
			return err
		}
		a := answer{series: s, raw: raw}
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("decode counts: %w", err)
		}
		answers = append(answers, a)
	}
	if c.json() {
		if len(answers) == 1 {
			return printJSON(stdout, answers[0].raw)
		}
		all := make([]json.RawMessage, len(answers))
		for i, a := range answers {
			all[i] = a.raw
		}
		b, _ := json.Marshal(map[string]any{"series": all})
		return printJSON(stdout, b)
	}
	for i, a := range answers {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		head := fmt.Sprintf("%s over the last %s", a.series, *since)
		if len(a.Rules) > 0 {
			head += ", counted for rule " + strings.Join(a.Rules, ", ")
		}
		if a.Counted != nil && !*a.Counted && a.Total == 0 {
			fmt.Fprintf(stdout, "%s: no such series is counted (no enabled rule has this keyword with these options), so there is no count, not a count of 0\n", head)
			continue
		}
		if a.Counted != nil && !*a.Counted {
			head += " (no enabled rule counts it now; these are older counts)"
		}
		fmt.Fprintf(stdout, "%s: %d\n", head, a.Total)
		if *by != "" {
			rows := make([][]string, len(a.Items))
			for j, it := range a.Items {
				rows[j] = []string{it.Value, strconv.FormatInt(it.Count, 10)}
			}
			if len(rows) > 0 {
				table(stdout, []string{strings.ToUpper(*by), "COUNT"}, rows)
			}
			continue
		}
		rows := make([][]string, len(a.Points))
		for j, p := range a.Points {
			rows[j] = []string{p.Minute.Local().Format("2006-01-02 15:04"), strconv.FormatInt(p.Count, 10)}
		}
		if len(rows) > 0 {
			table(stdout, []string{"MINUTE", "COUNT"}, rows)
		}
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
