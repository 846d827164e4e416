package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/cmd/keyalert/internal/rulesfile"
)

const silencesFileUsage = `usage: keyalert silences apply -f silences.yaml [-dry-run] [-prune]
       keyalert silences export [-o yaml|json] [-ids] > silences.yaml

apply makes keyalertd's unexpired silences match the file (YAML or JSON: a
list of silences, or {silences: [...]}, each the API's silence document with
an RFC 3339 end). A silence is identified by its id when it has one, else by
what it matches (rule_id, host, tag, labels, keyword, time_intervals). A matched
silence whose start, end, author or comment differ is replaced (a new one is
created, then the old one deleted: silences are not edited in place).
Silences whose end has passed are skipped; unexpired ones the file lacks are
kept unless -prune.`

// silenceKey is what a silence matches, its identity without an id.
func silenceKey(s silence.Silence) string {
	ivs := slices.Clone(s.TimeIntervals)
	slices.Sort(ivs)
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		labels = append(labels, k+"="+s.Labels[k])
	}
	return strings.Join([]string{s.RuleID, s.Host, s.Tag, s.Keyword, strings.Join(ivs, ","), strings.Join(labels, ",")}, "\x00")
}

func silencesApply(args []string, stdout, stderr io.Writer) error {
	a, err := parseApply(args, "silences apply", silencesFileUsage, "silences", "silence", "delete the unexpired silences the file does not have", stderr)
	if err != nil {
		return err
	}
	c, file, dry, prune, items := a.c, &a.file, &a.dry, &a.prune, a.items
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	ctx := context.Background()
	raw, err := cl.Silences(ctx, false)
	if err != nil {
		return err
	}
	var res struct {
		Silences []silence.Silence `json:"silences"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("decode silences: %w", err)
	}
	now := time.Now()
	byID, byKey := map[string]int{}, map[string]int{}
	for i, s := range res.Silences {
		if now.Before(s.End) {
			byID[s.ID] = i
			byKey[silenceKey(s)] = i
		}
	}
	type step struct {
		op, label, oldID string
		doc              []byte
		item             *rulesfile.Item
		fields           []string
	}
	var plan []step
	var errs []error
	matched := map[int]bool{}
	for _, it := range items {
		var probe struct {
			End string `json:"end"`
		}
		json.Unmarshal(it.Doc, &probe)
		if end, err := time.Parse(time.RFC3339Nano, probe.End); err == nil && !end.After(now) {
			plan = append(plan, step{op: "ended", label: it.Label(), item: it})
			continue
		}
		want, verrs := silence.Decode(it.Doc, now)
		if verrs.Err() != nil {
			for _, fe := range verrs {
				errs = append(errs, it.Errorf(*file, fe.Field, "%s", fe.Message))
			}
			continue
		}
		label := fmt.Sprintf("silence of %s", silenceRow{RuleID: want.RuleID, Host: want.Host, Tag: want.Tag, Labels: want.Labels, Keyword: want.Keyword, Intervals: want.TimeIntervals}.matchText())
		idx, found := -1, false
		if it.ID != "" {
			if idx, found = byID[it.ID]; !found {
				errs = append(errs, it.Errorf(*file, "id", "no unexpired silence %s on keyalertd: remove the id to create it anew", it.ID))
				continue
			}
		} else {
			idx, found = byKey[silenceKey(want)]
		}
		if !found {
			plan = append(plan, step{op: "create", label: label, doc: it.Doc, item: it})
			continue
		}
		if matched[idx] {
			errs = append(errs, it.Errorf(*file, "", "matches the same silence as another one in the file"))
			continue
		}
		matched[idx] = true
		have := res.Silences[idx]
		var diff []string
		if _, set := jsonField(it.Doc, "start"); set && !have.Start.Equal(want.Start) {
			diff = append(diff, fmt.Sprintf("start: %s → %s", have.Start.Format(time.RFC3339), want.Start.Format(time.RFC3339)))
		}
		for _, d := range [][3]string{{"end", have.End.Format(time.RFC3339Nano), want.End.Format(time.RFC3339Nano)},
			{"author", have.Author, want.Author}, {"comment", have.Comment, want.Comment}} {
			if d[1] != d[2] {
				diff = append(diff, fmt.Sprintf("%s: %q → %q", d[0], d[1], d[2]))
			}
		}
		op := "same"
		if len(diff) > 0 {
			op = "replace"
		}
		plan = append(plan, step{op: op, label: label, oldID: have.ID, doc: it.Doc, item: it, fields: diff})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, s := range res.Silences {
		if !now.Before(s.End) || matched[i] {
			continue
		}
		op := "keep"
		if *prune {
			op = "delete"
		}
		label := "silence of " + silenceRow{RuleID: s.RuleID, Host: s.Host, Tag: s.Tag, Labels: s.Labels, Keyword: s.Keyword, Intervals: s.TimeIntervals}.matchText()
		plan = append(plan, step{op: op, label: label, oldID: s.ID})
	}
	counts := map[string]int{}
	for _, st := range plan {
		counts[st.op]++
		switch st.op {
		case "create":
			fmt.Fprintf(stdout, "+ create %s\n", st.label)
		case "replace":
			fmt.Fprintf(stdout, "~ replace %s (%s)\n", st.label, st.oldID)
			for _, f := range st.fields {
				fmt.Fprintf(stdout, "    %s\n", f)
			}
		case "delete":
			fmt.Fprintf(stdout, "- delete %s (%s)\n", st.label, st.oldID)
		case "keep":
			fmt.Fprintf(stdout, "  keep %s (%s): not in the file; -prune deletes it\n", st.label, st.oldID)
		case "ended":
			fmt.Fprintf(stdout, "  skip %s: its end has passed\n", st.label)
		}
	}
	if counts["create"]+counts["replace"]+counts["delete"] == 0 {
		fmt.Fprintf(stdout, "no changes: keyalertd's silences match %s\n", *file)
		return nil
	}
	summary := fmt.Sprintf("%d created, %d replaced, %d deleted, %d unchanged", counts["create"], counts["replace"], counts["delete"], counts["same"])
	if *dry {
		fmt.Fprintf(stdout, "dry run: would be %s; nothing changed\n", summary)
		return nil
	}
	for _, st := range plan {
		var err error
		switch st.op {
		case "create":
			_, err = cl.CreateSilence(ctx, json.RawMessage(st.doc))
		case "replace":
			// The new one first: the alerts stay muted throughout.
			if _, err = cl.CreateSilence(ctx, json.RawMessage(st.doc)); err == nil {
				_, err = cl.Do(ctx, "DELETE", "/api/v1/silences/"+st.oldID, nil)
			}
		case "delete":
			_, err = cl.Do(ctx, "DELETE", "/api/v1/silences/"+st.oldID, nil)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", st.op, st.label, err)
		}
	}
	fmt.Fprintln(stdout, summary)
	return nil
}

// jsonField returns a top-level field of a JSON object and whether it is set.
func jsonField(doc []byte, name string) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) != nil {
		return nil, false
	}
	v, ok := m[name]
	return v, ok && string(v) != "null"
}

func silencesExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("silences export", silencesFileUsage, stderr)
	c := apiFlags(fs, false)
	format := fs.String("o", "yaml", "yaml or json")
	ids := fs.Bool("ids", false, "write each silence's id")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *format != "yaml" && *format != "json" {
		return fmt.Errorf("-o %q: want yaml or json", *format)
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	raw, err := cl.Silences(context.Background(), false)
	if err != nil {
		return err
	}
	var res struct {
		Silences []json.RawMessage `json:"silences"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("decode silences: %w", err)
	}
	now := time.Now()
	var live []json.RawMessage
	for _, d := range res.Silences {
		var s silence.Silence
		if json.Unmarshal(d, &s) == nil && now.Before(s.End) {
			live = append(live, d)
		}
	}
	header := fmt.Sprintf("keyalert silences export of %s, %s: the unexpired silences.", c.url, now.UTC().Format(time.RFC3339))
	out, err := rulesfile.ExportSilences(live, *ids, *format == "json", header)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
