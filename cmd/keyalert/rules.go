package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/cmd/keyalert/internal/rulesfile"
	"github.com/keyalert/keyalert/pkg/client"
)

const rulesUsage = `usage: keyalert rules apply -f rules.yaml [-dry-run] [-prune]
       keyalert rules export [-o yaml|json] [-ids] > rules.yaml

apply makes keyalertd's rules match the file (YAML or JSON: a list of rules,
or {rules: [...]}, each the API's rule document). A rule is identified by
its id when it has one, else by its name. Rules the file lacks are kept
unless -prune. It prints what changes; -dry-run only prints it.

Routing keys: a routing_key "${NAME}" is read from the environment variable
NAME. export writes keys as such references (${KEYALERT_ROUTING_KEY_<last 4
characters>}), never in clear; applied with the variable unset, an existing
rule keeps its stored key (a new rule then needs the variable, or keyalertd's
default routing key).`

func rulesCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("want: keyalert rules apply|export (-h for help)")
	}
	switch args[0] {
	case "apply":
		return rulesApply(args[1:], stdout, stderr)
	case "export":
		return rulesExport(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, rulesUsage)
		return nil
	}
	return fmt.Errorf("unknown rules command %q: want apply or export", args[0])
}

// change is one rule's part of an apply.
type change struct {
	op     string // create, update, delete, keep, same
	name   string
	id     string
	item   *rulesfile.Item
	doc    []byte   // what is sent
	fields []string // "condition.count: 5 → 7"
}

func rulesApply(args []string, stdout, stderr io.Writer) error {
	a, err := parseApply(args, "rules apply", rulesUsage, "rules", "rule", "delete the rules the file does not have", stderr)
	if err != nil {
		return err
	}
	c, file, dry, prune, items := a.c, &a.file, &a.dry, &a.prune, a.items
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	ctx := context.Background()
	raws, err := cl.Rules(ctx)
	if err != nil {
		return err
	}
	plan, err := planApply(*file, items, raws, *prune)
	if err != nil {
		return err
	}
	n := printPlan(stdout, plan)
	if n == 0 {
		fmt.Fprintf(stdout, "no changes: keyalertd's rules match %s\n", *file)
		return nil
	}
	if *dry {
		fmt.Fprintf(stdout, "dry run: %s; nothing changed\n", summary(plan, true))
		return nil
	}
	for _, ch := range plan {
		var err error
		switch ch.op {
		case "create":
			_, err = cl.CreateRule(ctx, ch.doc)
		case "update":
			_, err = cl.UpdateRule(ctx, ch.id, ch.doc)
		case "delete":
			err = cl.DeleteRule(ctx, ch.id)
		default:
			continue
		}
		if err != nil {
			return applyError(*file, ch, err, summaryDone(plan, ch))
		}
	}
	fmt.Fprintln(stdout, summary(plan, false))
	return nil
}

// applyError names the file, rule and field of a change keyalertd refused.
func applyError(path string, ch change, err error, done string) error {
	var ae *client.Error
	if ch.item != nil && errors.As(err, &ae) && len(ae.Fields) > 0 {
		var msgs []string
		for _, f := range ae.Fields {
			msgs = append(msgs, ch.item.Errorf(path, f.Field, "%s", f.Message).Error())
		}
		return fmt.Errorf("keyalertd refused to %s %q (%d):\n%s\n%s", ch.op, ch.name, ae.Status, strings.Join(msgs, "\n"), done)
	}
	return fmt.Errorf("%s rule %q: %w\n%s", ch.op, ch.name, err, done)
}

// planApply compares the file with the stored rules.
func planApply(path string, items []*rulesfile.Item, raws []json.RawMessage, prune bool) ([]change, error) {
	stored := make([]rules.Rule, 0, len(raws))
	byID, byName := map[string]int{}, map[string]int{}
	for _, raw := range raws {
		var r rules.Rule
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("decode a stored rule: %w", err)
		}
		byID[r.ID], byName[r.Name] = len(stored), len(stored)
		stored = append(stored, r)
	}
	var errs []error
	seenName, seenID := map[string]*rulesfile.Item{}, map[string]*rulesfile.Item{}
	matched := map[int]bool{}
	var plan []change
	for _, it := range items {
		if prev := seenName[it.Name]; it.Name != "" && prev != nil {
			errs = append(errs, it.Errorf(path, "name", "also the name of the rule on line %d: names identify rules", prev.Line))
			continue
		}
		seenName[it.Name] = it
		if prev := seenID[it.ID]; it.ID != "" && prev != nil {
			errs = append(errs, it.Errorf(path, "id", "also the id of the rule on line %d", prev.Line))
			continue
		}
		seenID[it.ID] = it
		doc, unresolved, err := expandRef(it.Doc, it.RoutingKeyRef)
		if err != nil {
			errs = append(errs, it.Errorf(path, "pagerduty.routing_key", "%v", err))
			continue
		}
		idx, found := -1, false
		if it.ID != "" {
			idx, found = byID[it.ID]
			if !found {
				errs = append(errs, it.Errorf(path, "id", "no rule %s on keyalertd: remove the id to create the rule anew", it.ID))
				continue
			}
		} else if it.Name != "" {
			idx, found = byName[it.Name]
		}
		var existing *rules.Rule
		if found {
			existing = &stored[idx]
			if matched[idx] {
				errs = append(errs, it.Errorf(path, "id", "rule %s is named twice in the file", existing.ID))
				continue
			}
			matched[idx] = true
			if unresolved {
				// The variable is unset: send the stored key back in its
				// redacted form, which keyalertd reads as "keep it".
				doc = setRoutingKey(doc, string(existing.PagerDuty.RoutingKey))
			}
		} else if unresolved {
			errs = append(errs, it.Errorf(path, "pagerduty.routing_key", "$%s is not set, and a new rule needs its key (or remove routing_key to use keyalertd's default)", it.RoutingKeyRef))
			continue
		}
		want, verrs := rules.Decode(doc, rules.DecodeOptions{DefaultRoutingKey: true, Existing: existing})
		if verrs.Err() != nil {
			for _, fe := range verrs {
				errs = append(errs, it.Errorf(path, fe.Field, "%s", fe.Message))
			}
			continue
		}
		if existing == nil {
			plan = append(plan, change{op: "create", name: it.Name, item: it, doc: doc})
			continue
		}
		diff := ruleDiff(*existing, want)
		op := "same"
		if len(diff) > 0 {
			op = "update"
		}
		plan = append(plan, change{op: op, name: existing.Name, id: existing.ID, item: it, doc: doc, fields: diff})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, r := range stored {
		if matched[i] {
			continue
		}
		op := "keep"
		if prune {
			op = "delete"
		}
		plan = append(plan, change{op: op, name: r.Name, id: r.ID})
	}
	return plan, nil
}

// expandRef replaces a "${NAME}" routing key with the variable's value;
// unresolved says the variable is unset.
func expandRef(doc []byte, ref string) ([]byte, bool, error) {
	if ref == "" {
		return doc, false, nil
	}
	v, ok := os.LookupEnv(ref)
	if !ok || v == "" {
		return doc, true, nil
	}
	if !rules.ValidRoutingKey(v) {
		return nil, false, fmt.Errorf("$%s is not a routing key (%d characters; want %d letters and digits)", ref, len(v), rules.RoutingKeyLen)
	}
	return setRoutingKey(doc, v), false, nil
}

func setRoutingKey(doc []byte, key string) []byte {
	var m map[string]any
	if json.Unmarshal(doc, &m) != nil {
		return doc
	}
	pd, _ := m["pagerduty"].(map[string]any)
	if pd == nil {
		pd = map[string]any{}
	}
	pd["routing_key"] = key
	m["pagerduty"] = pd
	b, _ := json.Marshal(m)
	return b
}

// ruleDiff lists the fields that differ, flattened ("condition.count: 5 →
// 7"); routing keys compare in their redacted form, the only one the API
// gives out.
func ruleDiff(have, want rules.Rule) []string {
	flat := func(r rules.Rule) map[string]string {
		r.ID, r.CreatedAt, r.UpdatedAt = "", time.Time{}, time.Time{}
		b, _ := json.Marshal(r)
		var m map[string]any
		json.Unmarshal(b, &m)
		out := map[string]string{}
		flatten("", m, out)
		return out
	}
	a, b := flat(have), flat(want)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diff []string
	for k := range keys {
		if a[k] != b[k] {
			diff = append(diff, fmt.Sprintf("%s: %s → %s", k, orNone(a[k]), orNone(b[k])))
		}
	}
	sort.Strings(diff)
	return diff
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok && len(m) > 0 {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
		return
	}
	if v == nil || v == "" || reflect.ValueOf(v).Kind() == reflect.Slice && reflect.ValueOf(v).Len() == 0 ||
		reflect.ValueOf(v).Kind() == reflect.Map {
		return // absent and empty read the same
	}
	b, _ := json.Marshal(v)
	out[prefix] = string(b)
}

// printPlan prints the plan and returns the number of changes in it.
func printPlan(w io.Writer, plan []change) int {
	n := 0
	for _, ch := range plan {
		switch ch.op {
		case "create":
			n++
			fmt.Fprintf(w, "+ create %q\n", ch.name)
		case "update":
			n++
			fmt.Fprintf(w, "~ update %q (%s)\n", ch.name, ch.id)
			for _, f := range ch.fields {
				fmt.Fprintf(w, "    %s\n", f)
			}
		case "delete":
			n++
			fmt.Fprintf(w, "- delete %q (%s)\n", ch.name, ch.id)
		case "keep":
			fmt.Fprintf(w, "  keep %q (%s): not in the file; -prune deletes it\n", ch.name, ch.id)
		}
	}
	return n
}

func summary(plan []change, dry bool) string {
	count := map[string]int{}
	for _, ch := range plan {
		count[ch.op]++
	}
	verb := map[string]string{"create": "created", "update": "updated", "delete": "deleted", "same": "unchanged"}
	if dry {
		verb = map[string]string{"create": "to create", "update": "to update", "delete": "to delete", "same": "unchanged"}
	}
	var parts []string
	for _, op := range []string{"create", "update", "delete", "same"} {
		parts = append(parts, fmt.Sprintf("%d %s", count[op], verb[op]))
	}
	return strings.Join(parts, ", ")
}

// summaryDone says what an apply stopped part way had done.
func summaryDone(plan []change, failed change) string {
	var done []string
	for _, ch := range plan {
		if ch.item == failed.item && ch.id == failed.id && ch.op == failed.op {
			break
		}
		if ch.op == "create" || ch.op == "update" || ch.op == "delete" {
			done = append(done, ch.op+" "+ch.name)
		}
	}
	if len(done) == 0 {
		return "nothing was changed"
	}
	return "done before it: " + strings.Join(done, ", ")
}

func rulesExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rules export", rulesUsage, stderr)
	c := apiFlags(fs, false)
	format := fs.String("o", "yaml", "yaml or json")
	ids := fs.Bool("ids", false, "write each rule's id (the file then names these very rules, not rules of that name)")
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
	raws, err := cl.Rules(context.Background())
	if err != nil {
		return err
	}
	header := fmt.Sprintf("keyalert rules export of %s, %s.\n"+
		"Routing keys are references, never in clear: set KEYALERT_ROUTING_KEY_<last 4>\n"+
		"to apply this file to a keyalertd that lacks the rules; unset, existing rules keep theirs.",
		c.url, time.Now().UTC().Format(time.RFC3339))
	out, err := rulesfile.Export(raws, *ids, *format == "json", header)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
