package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/backend/rules"
)

const rulesYAML = `# the team's rules
rules:
  - name: java exceptions
    keywords: [Exception]
    condition: {type: threshold, count: 5, window: 5m}
    group_by: host
    severity: critical
    pagerduty:
      routing_key: ${KA_TEST_ROUTING_KEY}
  - name: disk full
    keywords: ["Disk Full"]
    ignore_case: true
    condition:
      type: threshold
      count: 1
      window: 5m
    pagerduty:
      routing_key: ${KA_TEST_ROUTING_KEY}
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func storedRules(t *testing.T, s *testServer) map[string]rules.Rule {
	t.Helper()
	snap, err := rules.NewStore(s.rdb, rules.Options{}, nil, nil).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]rules.Rule{}
	for _, r := range snap.Rules {
		m[r.Name] = r
	}
	return m
}

func TestRulesApplyMakesTheServerMatchTheFile(t *testing.T) {
	s := startServer(t)
	t.Setenv("KA_TEST_ROUTING_KEY", testKey)
	file := writeFile(t, "rules.yaml", rulesYAML)

	steps := []struct {
		name    string
		file    string // content; "" keeps the last one
		args    []string
		want    []string // substrings of stdout
		after   func(t *testing.T, m map[string]rules.Rule)
		noMatch string
	}{
		{name: "creates from the file", file: rulesYAML, args: nil,
			want: []string{`+ create "java exceptions"`, `+ create "disk full"`, "2 created"},
			after: func(t *testing.T, m map[string]rules.Rule) {
				if len(m) != 2 || m["java exceptions"].PagerDuty.RoutingKey.Reveal() != testKey || !m["disk full"].IgnoreCase {
					t.Errorf("stored rules %v: want both, the key from $KA_TEST_ROUTING_KEY", m)
				}
			}},
		{name: "re-applying changes nothing and says so", want: []string{"no changes: keyalertd's rules match"}},
		{name: "a dry run shows the edit and changes nothing",
			file: strings.Replace(rulesYAML, "count: 5", "count: 7", 1), args: []string{"-dry-run"},
			want: []string{`~ update "java exceptions"`, "condition.count: 5 → 7", "dry run: 0 to create, 1 to update", "nothing changed"},
			after: func(t *testing.T, m map[string]rules.Rule) {
				if m["java exceptions"].Condition.Count != 5 {
					t.Errorf("count after a dry run: %d, want 5", m["java exceptions"].Condition.Count)
				}
			}},
		{name: "applying the edit updates the rule", want: []string{"condition.count: 5 → 7", "1 updated"},
			after: func(t *testing.T, m map[string]rules.Rule) {
				if m["java exceptions"].Condition.Count != 7 {
					t.Errorf("count after apply: %d, want 7", m["java exceptions"].Condition.Count)
				}
			}},
		{name: "a rule dropped from the file is kept without -prune",
			file: strings.SplitAfter(rulesYAML, "routing_key: ${KA_TEST_ROUTING_KEY}\n")[0],
			want: []string{`keep "disk full"`, "-prune deletes it"}, noMatch: "- delete"},
		{name: "-prune deletes it", args: []string{"-prune"}, want: []string{`- delete "disk full"`, "1 deleted"},
			after: func(t *testing.T, m map[string]rules.Rule) {
				if _, ok := m["disk full"]; ok || len(m) != 1 {
					t.Errorf("rules after -prune: %v, want java exceptions only", m)
				}
			}},
	}
	content := ""
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.file != "" {
				content = st.file
			}
			if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			out := mustRun(t, append([]string{"rules", "apply", "-f", file}, st.args...)...)
			for _, w := range st.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if st.noMatch != "" && strings.Contains(out, st.noMatch) {
				t.Errorf("output has %q:\n%s", st.noMatch, out)
			}
			if st.after != nil {
				st.after(t, storedRules(t, s))
			}
		})
	}
}

func TestRulesExportThenApplyIsANoOp(t *testing.T) {
	s := startServer(t)
	t.Setenv("KA_TEST_ROUTING_KEY", testKey)
	mustRun(t, "rules", "apply", "-f", writeFile(t, "rules.yaml", rulesYAML))
	before := storedRules(t, s)
	for _, format := range []string{"yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			out := mustRun(t, "rules", "export", "-o", format)
			if strings.Contains(out, testKey) {
				t.Fatalf("export shows the routing key in clear:\n%s", out)
			}
			if !strings.Contains(out, "${KEYALERT_ROUTING_KEY_BCDE}") {
				t.Errorf("export lacks the routing key reference:\n%s", out)
			}
			// The reference is unset here: the stored keys are kept.
			got := mustRun(t, "rules", "apply", "-f", writeFile(t, "exported."+format, out))
			if !strings.Contains(got, "no changes") {
				t.Errorf("applying the export:\n%s\nexport:\n%s", got, out)
			}
		})
	}
	after := storedRules(t, s)
	for name, r := range before {
		if a := after[name]; a.UpdatedAt != r.UpdatedAt || a.PagerDuty.RoutingKey != r.PagerDuty.RoutingKey {
			t.Errorf("rule %q changed by export and apply: %+v -> %+v", name, r, a)
		}
	}
}

func TestRulesApplyErrorsNameFileRuleAndField(t *testing.T) {
	startServer(t)
	t.Setenv("KA_TEST_ROUTING_KEY", testKey)
	tests := []struct {
		name, file string
		want       []string
	}{
		{"bad window in YAML, with its line",
			strings.Replace(rulesYAML, "      window: 5m", "      window: 5 minutes", 1),
			[]string{"rules.yaml:16: ", `rule "disk full": `, "condition.window: "}},
		{"unknown field",
			strings.Replace(rulesYAML, "    severity: critical", "    severity: critical\n    colour: red", 1),
			[]string{"rules.yaml:8: ", `rule "java exceptions": `, "colour: unknown field"}},
		{"duplicate names",
			strings.Replace(rulesYAML, "name: disk full", "name: java exceptions", 1),
			[]string{"rules.yaml:10: ", "name: also the name of the rule on line 3"}},
		{"unset routing key reference for a new rule",
			strings.ReplaceAll(rulesYAML, "KA_TEST_ROUTING_KEY", "KA_TEST_UNSET"),
			[]string{"rules.yaml:9: ", "pagerduty.routing_key: $KA_TEST_UNSET is not set"}},
		{"refused by keyalertd: an unknown time interval",
			strings.Replace(rulesYAML, "    severity: critical", "    severity: critical\n    mute_time_intervals: [nope]", 1),
			[]string{"keyalertd refused to create \"java exceptions\"", "rules.yaml:8: ", `rule "java exceptions": `, "mute_time_intervals[0]: ", "nothing was changed"}},
		{"not YAML", "rules: [\n  {name: x,\n", []string{"rules.yaml:"}},
		{"JSON has lines too", `{"rules": [
  {"name": "j", "keywords": ["x"],
   "condition": {"type": "threshold", "count": -1, "window": "5m"}}]}`,
			[]string{"rules.yaml:3: ", `rule "j": `, "condition.count: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run("rules", "apply", "-f", writeFile(t, "rules.yaml", tt.file))
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
	// Nothing was applied by any of them.
	code, out, _ := run("rules", "export", "-o", "json")
	var res struct{ Rules []json.RawMessage }
	if json.Unmarshal([]byte(out), &res); code != 0 || len(res.Rules) != 0 {
		t.Errorf("rules after refused files: %s", out)
	}
}
