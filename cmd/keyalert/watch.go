package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keyalert/keyalert/pkg/client"
)

const watchUsage = `usage: keyalert watch [flags] [keyword...]
       keyalert watch -rule RULE_ID

Prints the last minutes' counts of each keyword's series whenever they
change, and each alert whose state changes (silenced ones marked so). A
keyword is taken as the rules state it (their match and ignore_case); with
none named, every enabled rule's series is watched.`

// watchCmd prints the counts line when it changes (checking every -every)
// and each alert state change, from keyalertd's API, until interrupted.
func watchCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch", watchUsage, stderr)
	c := apiFlags(fs, false)
	every := fs.Duration("every", 5*time.Second, "how often to look")
	minutes := fs.Int("minutes", 5, "minutes of history per line")
	ruleID := fs.String("rule", "", "watch this rule's keywords")
	kws, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *minutes < 1 || *minutes > 60 {
		return fmt.Errorf("-minutes %d: want 1 to 60", *minutes)
	}
	if *every <= 0 {
		return fmt.Errorf("-every %v: want a positive interval", *every)
	}
	cl, err := c.client(stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := &watcher{cl: cl, out: stdout, minutes: *minutes, seen: map[string]string{}}
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		list, err := w.series(ctx, kws, *ruleID)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(stdout, "%s  %v\n", time.Now().Format("15:04:05"), err)
		}
		w.countsLine(ctx, list)
		w.alerts(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type watcher struct {
	cl       *client.Client
	out      io.Writer
	minutes  int
	lastLine string
	seen     map[string]string // alert id -> state text last printed
}

// series resolves the keywords anew each round: rules come and go.
func (w *watcher) series(ctx context.Context, kws []string, ruleID string) ([]series, error) {
	if ruleID != "" {
		return resolveSeries(ctx, w.cl, "", ruleID, nil)
	}
	if len(kws) > 0 {
		var out []series
		for _, kw := range kws {
			l, err := resolveSeries(ctx, w.cl, kw, "", nil)
			if err != nil {
				return nil, err
			}
			out = append(out, l...)
		}
		return out, nil
	}
	raws, err := w.cl.Rules(ctx)
	if err != nil {
		return nil, err
	}
	var out []series
	for _, raw := range raws {
		var r ruleKeywords
		if json.Unmarshal(raw, &r) != nil || !r.Enabled {
			continue
		}
		for _, k := range r.Keywords {
			s := series{Text: k, Match: r.Match, IgnoreCase: r.IgnoreCase}
			dup := false
			for _, o := range out {
				dup = dup || o.Text == s.Text && o.Match == s.Match && o.IgnoreCase == s.IgnoreCase
			}
			if !dup {
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no enabled rules, so no series to watch")
	}
	return out, nil
}

// countsLine prints the per-minute counts of every series when they differ
// from the last line printed.
func (w *watcher) countsLine(ctx context.Context, list []series) {
	now := time.Now().UTC().Truncate(time.Minute)
	from := now.Add(-time.Duration(w.minutes-1) * time.Minute)
	var parts []string
	for _, s := range list {
		q := s.query()
		q.Set("from", from.Format(time.RFC3339))
		q.Set("to", now.Add(time.Minute).Format(time.RFC3339))
		var res struct {
			Counted *bool `json:"counted"`
			Points  []struct {
				Minute time.Time `json:"minute"`
				Count  int64     `json:"count"`
			} `json:"points"`
			Total int64 `json:"total"`
		}
		if _, err := w.cl.Get(ctx, "/api/v1/counts?"+q.Encode(), &res); err != nil {
			if ctx.Err() != nil {
				return
			}
			parts = append(parts, fmt.Sprintf("%s: %v", s, err))
			continue
		}
		if res.Counted != nil && !*res.Counted && res.Total == 0 {
			parts = append(parts, fmt.Sprintf("%s: not counted (no enabled rule has it)", s))
			continue
		}
		per := map[time.Time]int64{}
		for _, p := range res.Points {
			per[p.Minute.UTC()] = p.Count
		}
		var cells []string
		for m := from; !m.After(now); m = m.Add(time.Minute) {
			cells = append(cells, strconv.FormatInt(per[m], 10))
		}
		parts = append(parts, fmt.Sprintf("%s [%s] total %d", s, strings.Join(cells, " "), res.Total))
	}
	line := "per minute (oldest→now): " + strings.Join(parts, " | ")
	if line != w.lastLine {
		w.lastLine = line
		fmt.Fprintf(w.out, "%s  %s\n", time.Now().Format("15:04:05"), line)
	}
}

// alerts prints each alert whose state (silenced or not included) changed.
func (w *watcher) alerts(ctx context.Context) {
	var res struct {
		Alerts []alertRow `json:"alerts"`
	}
	if _, err := w.cl.Get(ctx, "/api/v1/alerts", &res); err != nil {
		return
	}
	for _, a := range res.Alerts {
		st := a.stateText()
		if w.seen[a.ID] == st {
			continue
		}
		w.seen[a.ID] = st
		group := ""
		if a.Group != "" {
			group = fmt.Sprintf(", group %q", a.Group)
		}
		fmt.Fprintf(w.out, "%s  ALERT %s %s: rule %q%s, count %d\n", time.Now().Format("15:04:05"), a.ID, st, a.RuleName, group, a.Count)
	}
}
