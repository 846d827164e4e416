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
	var res struct {
		List []intervalDoc `json:"time_intervals"`
	}
	return namedCmd(args, "time intervals", intervalsUsage, stdout, stderr, intervalsApply, intervalsExport,
		"/api/v1/time_intervals", &res, func() ([]string, [][]string) {
			rows := make([][]string, len(res.List))
			for i, ti := range res.List {
				var parts []string
				for _, iv := range ti.Intervals {
					b, _ := json.Marshal(iv)
					parts = append(parts, string(b))
				}
				rows[i] = []string{ti.Name, strings.Join(parts, " or ")}
			}
			return []string{"NAME", "INTERVALS"}, rows
		})
}

func listIntervals(ctx context.Context, c *common, stderr io.Writer) ([]json.RawMessage, error) {
	return listNamed(ctx, c, stderr, "/api/v1/time_intervals", "time_intervals")
}

func intervalsApply(args []string, stdout, stderr io.Writer) error {
	a, err := parseApply(args, "intervals apply", intervalsUsage, "intervals", "interval", "delete the intervals the file does not have", stderr)
	if err != nil {
		return err
	}
	c, file, dry, prune, items := a.c, &a.file, &a.dry, &a.prune, a.items
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
	steps := make([]namedStep, len(plan))
	for i, st := range plan {
		steps[i] = namedStep{op: st.op, name: st.name, detail: fmt.Sprintf("\n    time_intervals: %s → %s", st.from, st.to)}
	}
	n, apply := printSteps(stdout, steps, *file, "time intervals", *dry)
	if !apply {
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
	return exportNamed(args, "intervals export", intervalsUsage, "", stdout, stderr, listIntervals, rulesfile.ExportIntervals)
}
