package replay

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReplayTablePrintsOneLinePerEventThenTotals(t *testing.T) {
	rulesPath := replayTemp(t, "rules.json", burstRule)
	// The log on stdin.
	cfg := testConfig(rulesPath, "-")
	cfg.Location = time.UTC
	out, _, err := runReplay(t, replayBurstLog().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"2025-03-01 10:06  TRIGGER  burst  fleet  Exception seen 6 times in 5m across the fleet (rule burst)",
		"2025-03-01 10:17  RESOLVE  burst  fleet  condition false for 5m, after firing for 11m (rule burst)",
		"",
		"Exception: 6 records",
		"",
		"48 records from 48 lines, 2025-03-01 10:00:05 to 2025-03-01 10:20:10; 1 rule, 2 events.",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("output\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
}

func TestReplayShowsSampleLinesOfTheAlertsGroup(t *testing.T) {
	rulesPath := replayTemp(t, "rules.json", burstRule)
	logPath := replayTemp(t, "app.log", replayBurstLog().String())
	cfg := testConfig(rulesPath, logPath)
	cfg.Samples = 2
	rep, _ := replayJSON(t, "", cfg)
	if len(rep.Events) != 2 || len(rep.Events[0].Samples) != 2 ||
		!strings.HasSuffix(rep.Events[0].Samples[0], "java.lang.IllegalStateException: stock went negative") || rep.Events[1].Samples != nil {
		t.Fatalf("events %+v", rep.Events)
	}
}
