package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/cmd/keyalert/internal/rulesfile"
)

const intervalsUsage = `usage: keyalert intervals [-o json]
       keyalert intervals apply -f intervals.yaml [-dry-run] [-prune]
       keyalert intervals export [-o yaml|json] > intervals.yaml

Named time intervals (mute windows) that silences (time_intervals) and rules
(mute_time_intervals) refer to. apply makes keyalertd's intervals match the
file (a list of {name, time_intervals: [...]}, or {intervals: [...]}),
identified by name; -prune deletes the ones the file lacks (keyalertd
refuses while a rule or silence names one).`

type intervalDoc struct {
	Name      string                  `json:"name"`
	Intervals []timeinterval.Interval `json:"time_intervals"`
}

func intervalsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "apply":
			return intervalsApply(args[1:], stdout, stderr)
		case "export":
			return intervalsExport(args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet("intervals", intervalsUsage, stderr)
	c := apiFlags(fs, true)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	var res struct {
		List []intervalDoc `json:"time_intervals"`
	}
	raw, err := cl.Get(context.Background(), "/api/v1/time_intervals", &res)
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(stdout, raw)
	}
	if len(res.List) == 0 {
		fmt.Fprintln(stdout, "no time intervals")
		return nil
	}
	rows := make([][]string, len(res.List))
	for i, ti := range res.List {
		var parts []string
		for _, iv := range ti.Intervals {
			b, _ := json.Marshal(iv)
			parts = append(parts, string(b))
		}
		rows[i] = []string{ti.Name, strings.Join(parts, " or ")}
	}
	return table(stdout, []string{"NAME", "INTERVALS"}, rows)
}

func listIntervals(ctx context.Context, c *common, stderr io.Writer) ([]json.RawMessage, error) {
	cl, err := c.client(stderr)
	if err != nil {
		return nil, err
	}
	var res struct {
		List []json.RawMessage `json:"time_intervals"`
	}
	_, err = cl.Get(ctx, "/api/v1/time_intervals", &res)
	return res.List, err
}

func intervalsApply(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("intervals apply", intervalsUsage, stderr)
	c := apiFlags(fs, false)
	file := fs.String("f", "", "the intervals file, YAML or JSON (- for stdin)")
	dry := fs.Bool("dry-run", false, "print what would change, change nothing")
	prune := fs.Bool("prune", false, "delete the intervals the file does not have")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("-f: name the intervals file")
	}
	items, err := rulesfile.ReadList(*file, "intervals", "interval")
	if err != nil {
		return err
	}
	ctx := context.Background()
	raws, err := listIntervals(ctx, c, stderr)
	if err != nil {
		return err
	}
	have := map[string]string{} // name -> canonical intervals JSON
	for _, raw := range raws {
		var d intervalDoc
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("decode a stored interval: %w", err)
		}
		b, _ := json.Marshal(d.Intervals)
		have[d.Name] = string(b)
	}
	type step struct{ op, name, from, to string }
	var plan []step
	var errs []error
	inFile := map[string]int{}
	for _, it := range items {
		ti, verrs := timeinterval.Decode(it.Doc, "")
		if verrs.Err() != nil {
			for _, fe := range verrs {
				errs = append(errs, it.Errorf(*file, fe.Field, "%s", fe.Message))
			}
			continue
		}
		if line, dup := inFile[ti.Name]; dup {
			errs = append(errs, it.Errorf(*file, "name", "also the name of the interval on line %d", line))
			continue
		}
		inFile[ti.Name] = it.Line
		b, _ := json.Marshal(ti.Intervals)
		old, ok := have[ti.Name]
		switch {
		case !ok:
			plan = append(plan, step{"create", ti.Name, "", string(b)})
		case old != string(b):
			plan = append(plan, step{"update", ti.Name, old, string(b)})
		default:
			plan = append(plan, step{"same", ti.Name, old, old})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for name, old := range have {
		if _, ok := inFile[name]; !ok {
			op := "keep"
			if *prune {
				op = "delete"
			}
			plan = append(plan, step{op, name, old, ""})
		}
	}
	n := 0
	for _, st := range plan {
		switch st.op {
		case "create":
			n++
			fmt.Fprintf(stdout, "+ create %q\n", st.name)
		case "update":
			n++
			fmt.Fprintf(stdout, "~ update %q\n    time_intervals: %s → %s\n", st.name, st.from, st.to)
		case "delete":
			n++
			fmt.Fprintf(stdout, "- delete %q\n", st.name)
		case "keep":
			fmt.Fprintf(stdout, "  keep %q: not in the file; -prune deletes it\n", st.name)
		}
	}
	if n == 0 {
		fmt.Fprintf(stdout, "no changes: keyalertd's time intervals match %s\n", *file)
		return nil
	}
	if *dry {
		fmt.Fprintf(stdout, "dry run: %d changes; nothing changed\n", n)
		return nil
	}
	cl, _ := c.client(stderr)
	for _, st := range plan {
		path := "/api/v1/time_intervals/" + url.PathEscape(st.name)
		var err error
		switch st.op {
		case "create", "update":
			_, err = cl.Do(ctx, http.MethodPut, path, []byte(`{"time_intervals":`+st.to+`}`))
		case "delete":
			_, err = cl.Do(ctx, http.MethodDelete, path, nil)
		}
		if err != nil {
			return fmt.Errorf("%s interval %q: %w", st.op, st.name, err)
		}
	}
	fmt.Fprintf(stdout, "%d changes applied\n", n)
	return nil
}

func intervalsExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("intervals export", intervalsUsage, stderr)
	c := apiFlags(fs, false)
	format := fs.String("o", "yaml", "yaml or json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *format != "yaml" && *format != "json" {
		return fmt.Errorf("-o %q: want yaml or json", *format)
	}
	raws, err := listIntervals(context.Background(), c, stderr)
	if err != nil {
		return err
	}
	header := fmt.Sprintf("keyalert intervals export of %s, %s.", c.url, time.Now().UTC().Format(time.RFC3339))
	out, err := rulesfile.ExportIntervals(raws, *format == "json", header)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
