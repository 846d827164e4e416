package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
)

func TestCLIHelpExitsZeroOnEverySubcommand(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"help"}, {"alerts", "-h"}, {"ack", "-h"}, {"resolve", "-h"}, {"silence", "-h"}, {"silence", "add", "-h"},
		{"silences", "-h"}, {"silences", "apply", "-h"}, {"silences", "export", "-h"}, {"counts", "-h"}, {"intervals", "-h"}, {"intervals", "apply", "-h"}, {"intervals", "export", "-h"}, {"rules", "-h"}, {"rules", "apply", "-h"}, {"rules", "export", "-h"},
		{"watch", "-h"}, {"replay", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := run(args...)
			if code != 0 {
				t.Errorf("exit %d, want 0\n%s%s", code, out, errOut)
			}
			if args[0] != "replay" && !strings.Contains(out+errOut, "usage") { // replay prints to the process's stderr
				t.Errorf("no usage text:\n%s%s", out, errOut)
			}
		})
	}
	for _, args := range [][]string{{"nosuch"}, {"alerts", "-nosuchflag"}} {
		if code, _, _ := run(args...); code == 0 {
			t.Errorf("keyalert %s: exit 0, want an error status", strings.Join(args, " "))
		}
	}
}

func TestCLIEverydayCommands(t *testing.T) {
	s := startServer(t)
	t.Setenv("KA_TEST_ROUTING_KEY", testKey)
	mustRun(t, "rules", "apply", "-f", writeFile(t, "rules.yaml", rulesYAML))
	s.count(keyword.Spec{Text: "Exception"}, "web-12", "app", 9)
	s.count(keyword.Spec{Text: "Disk Full", IgnoreCase: true}, "web-12", "app", 2)
	s.count(keyword.Spec{Text: "Disk Full", IgnoreCase: true}, "web-13", "app", 1)
	s.tick()

	out := mustRun(t, "alerts", "-state", "firing")
	if !strings.Contains(out, "FIRING") || !strings.Contains(out, "java exceptions") || !strings.Contains(out, "web-12") {
		t.Fatalf("alerts table:\n%s", out)
	}
	var list struct {
		Alerts []struct {
			ID       string `json:"id"`
			RuleName string `json:"rule_name"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "alerts", "-o", "json")), &list); err != nil || len(list.Alerts) != 2 {
		t.Fatalf("alerts -o json: %v, %+v", err, list)
	}
	var javaID string
	for _, a := range list.Alerts {
		if a.RuleName == "java exceptions" {
			javaID = a.ID
		}
	}

	t.Run("counts take the keyword as the rule states it", func(t *testing.T) {
		out := mustRun(t, "counts", "Disk Full", "-since", "15m")
		if !strings.Contains(out, `"Disk Full" (substring, ignore case)`) || !strings.Contains(out, ": 3") {
			t.Errorf("counts Disk Full:\n%s", out)
		}
		out = mustRun(t, "counts", "Disk Full", "-since", "15m", "-by", "host")
		if !regexp.MustCompile(`web-12\s+2`).MatchString(out) || !regexp.MustCompile(`web-13\s+1`).MatchString(out) {
			t.Errorf("counts -by host:\n%s", out)
		}
	})
	t.Run("a series nobody counts is not a zero", func(t *testing.T) {
		out := mustRun(t, "counts", "Disk Full", "-ignore-case", "false")
		if !strings.Contains(out, "no such series is counted") {
			t.Errorf("counts of an uncounted series:\n%s", out)
		}
		var res struct{ Counted bool }
		if err := json.Unmarshal([]byte(mustRun(t, "counts", "nothing", "-o", "json")), &res); err != nil || res.Counted {
			t.Errorf("counts -o json of an uncounted keyword: %+v %v", res, err)
		}
	})
	t.Run("ack", func(t *testing.T) {
		out := mustRun(t, "ack", javaID)
		if !strings.Contains(out, "ACKNOWLEDGED") {
			t.Errorf("ack:\n%s", out)
		}
	})
	t.Run("silence add, silences, and a silenced alert marked so", func(t *testing.T) {
		out := mustRun(t, "silence", "add", "-match", "host=web-1*", "-for", "2h", "-comment", "disk swap")
		if !strings.Contains(out, "host=web-1*") {
			t.Errorf("silence add:\n%s", out)
		}
		out = mustRun(t, "silences")
		if !strings.Contains(out, "host=web-1*") || !strings.Contains(out, "disk swap") {
			t.Errorf("silences:\n%s", out)
		}
		s.tick()
		out = mustRun(t, "alerts")
		if !strings.Contains(out, "(silenced by") {
			t.Errorf("alerts after the silence:\n%s", out)
		}
		if code, _, errOut := run("silence", "add", "-match", "colour=red", "-comment", "x"); code == 0 || !strings.Contains(errOut, "colour=red") {
			t.Errorf("bad matcher: exit %d, %s", code, errOut)
		}
	})
	t.Run("resolve", func(t *testing.T) {
		out := mustRun(t, "resolve", javaID)
		if !strings.Contains(out, "RESOLVED") {
			t.Errorf("resolve:\n%s", out)
		}
		code, _, errOut := run("resolve", "a0000000000000000")
		if code != 1 || !strings.Contains(errOut, "404") {
			t.Errorf("resolve of an unknown alert: exit %d, %s", code, errOut)
		}
	})
}

func TestCLIWatchPrintsTheCountsLineOnlyWhenItChanges(t *testing.T) {
	s := startServer(t)
	t.Setenv("KA_TEST_ROUTING_KEY", testKey)
	mustRun(t, "rules", "apply", "-f", writeFile(t, "rules.yaml", rulesYAML))
	var out strings.Builder
	c := apiFlags(newFlagSet("watch", "", &out), false)
	cl, err := c.client(&out)
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{cl: cl, out: &out, minutes: 3, seen: map[string]string{}}
	ctx := t.Context()
	round := func() {
		list, err := w.series(ctx, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		w.countsLine(ctx, list)
		w.alerts(ctx)
	}
	round()
	round()
	if n := strings.Count(out.String(), "per minute"); n != 1 || !strings.Contains(out.String(), `"Disk Full" (substring, ignore case) [0 0 0]`) {
		t.Fatalf("two quiet rounds printed %d counts lines, want 1:\n%s", n, out.String())
	}
	s.count(keyword.Spec{Text: "Exception"}, "web-12", "app", 6)
	s.tick()
	round()
	round()
	// 2, or 3 when a minute ends between the last two rounds (the cells shift).
	if n := strings.Count(out.String(), "per minute"); n < 2 || n > 3 || !strings.Contains(out.String(), `] total 6`) {
		t.Errorf("after a count: %d counts lines, want 2:\n%s", n, out.String())
	}
	if n := strings.Count(out.String(), "ALERT "); n != 1 || !strings.Contains(out.String(), `FIRING: rule "java exceptions"`) {
		t.Errorf("alert lines: %d, want 1 FIRING:\n%s", n, out.String())
	}
}
