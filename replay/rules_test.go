package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestReplayAcceptsTheLiveRulesExport(t *testing.T) {
	exported := `{"rules":[{"id":"r_7","name":"burst","keywords":["Exception"],"ignore_case":false,"match":"substring",
		"condition":{"type":"threshold","count":5,"window":"5m"},"group_by":"none","filters":{},"severity":"critical",
		"pagerduty":{"routing_key":"****************************ABCD"},"repeat_interval":"0s","resolve_after":"5m","enabled":true,
		"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-02T00:00:00Z"}]}`
	single := `{"name":"burst","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
		"pagerduty":{"routing_key":"R0123456789abcdef0123456789ABCDE"}}`
	for name, doc := range map[string]string{"GET /api/v1/rules answer": exported, "one rule object": single} {
		t.Run(name, func(t *testing.T) {
			rulesPath := replayTemp(t, "rules.json", doc)
			logPath := replayTemp(t, "app.log", replayBurstLog().String())
			cfg := testConfig(rulesPath, logPath)
			cfg.JSON = true
			out, _, err := runReplay(t, "", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "ABCDE") || strings.Contains(out, "routing") {
				t.Fatalf("output mentions the routing key:\n%s", out)
			}
			var rep replayJSONReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Events) != 2 {
				t.Fatalf("events %+v (%v)", rep.Events, err)
			}
		})
	}
}

// TestReplayBadInputNamesTheFileRuleAndField covers the rules file, the log
// file and the Config; bad flags are the command's tests.
func TestReplayBadInputNamesTheFileRuleAndField(t *testing.T) {
	logPath := replayTemp(t, "app.log", replayBurstLog().String())
	badRules := `[
		{"name":"ok","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"}},
		{"name":"bad window","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5x"}},
		{"name":"bad key","keywords":["x"],"condition":{"type":"absence","window":"5m"},"pagerduty":{"routing_key":"secret-typo-key"}}
	]`
	tests := []struct {
		name    string
		rules   string
		cfg     func(*Config) // nil: the rules and logPath
		want    []string
		notWant string
	}{
		{"invalid field", badRules, nil, []string{`rules.json: rules[1] "bad window": condition.window: "5x" is not a duration`,
			`rules[2] "bad key": pagerduty.routing_key: want 32 letters or digits`}, "secret-typo-key"},
		{"unknown field", `[{"name":"x","keywords":["x"],"colour":"red","condition":{"type":"absence","window":"5m"}}]`, nil,
			[]string{`rules[0] "x": colour: unknown field`}, ""},
		{"JSON syntax", "[\n  {\"name\": \"x\",,}\n]", nil, []string{"rules.json: line 2, column", "invalid JSON"}, ""},
		{"not rules", `"hello"`, nil, []string{"want a JSON array of rules"}, ""},
		{"empty array", `[]`, nil, []string{"no rules in the file"}, ""},
		{"missing rules file", burstRule, func(c *Config) { c.RulesPath = "nope.json" }, []string{"rules file: open nope.json"}, ""},
		{"missing log file", burstRule, func(c *Config) { c.Files = []string{"nope.log"} }, []string{"log file: open nope.log"}, ""},
		{"no log file", burstRule, func(c *Config) { c.Files = nil }, []string{"no log file given"}, ""},
		{"stdin twice", burstRule, func(c *Config) { c.Files = []string{"-", logPath, "-"} }, []string{"stdin (-) given 2 times"}, ""},
		{"samples out of range", burstRule, func(c *Config) { c.Samples = MaxSamples + 1 }, []string{"samples 51"}, ""},
		{"empty host", burstRule, func(c *Config) { c.Host = "" }, []string{"host is empty"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(replayTemp(t, "rules.json", tt.rules), logPath)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			_, _, err := runReplay(t, "", cfg)
			var ie *inputError
			if !errors.As(err, &ie) {
				t.Fatalf("err %v (%T), want bad input", err, err)
			}
			if !errors.Is(err, ErrBadInput) {
				t.Errorf("err %v is not ErrBadInput", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q echoes %q", err, tt.notWant)
			}
		})
	}
}

// jsonPosition is the position jsonError puts at the start of a message.
var jsonPosition = regexp.MustCompile(`^rules\.json: line (\d+), column (\d+): `)

func FuzzReplayRulesFile(f *testing.F) {
	f.Add([]byte(burstRule))
	f.Add([]byte(`{"rules":[{"name":"x","keywords":["a"],"condition":{"type":"spike","window":"1m","factor":2},"pagerduty":{"routing_key":"****x"}}]}`))
	f.Add([]byte(`{"name":"x"}`))
	f.Add([]byte("[\n{,}]"))
	f.Add([]byte(`{"rules": 7}`))
	f.Add([]byte("[{\"name\":\"x\",\n\"keywords\":[1]}]"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The decoding steps: every rule accepted is complete and keeps no key.
		if items, err := splitRulesDoc(b); err == nil {
			for _, raw := range items {
				r, errs := decodeRule(raw)
				if len(errs) == 0 && (r.Name == "" || len(r.Keywords) == 0 || r.PagerDuty.RoutingKey != "") {
					t.Fatalf("accepted rule %+v", r)
				}
			}
		}

		// The whole loader: bad input, placed inside the file.
		rs, err := parseRules("rules.json", b)
		if err == nil {
			if len(rs) == 0 {
				t.Fatal("no rules and no error")
			}
			return
		}
		if !errors.Is(err, ErrBadInput) || !strings.HasPrefix(err.Error(), "rules.json: ") {
			t.Fatalf("error %q (%T): want bad input naming the file", err, err)
		}
		if m := jsonPosition.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			col, _ := strconv.Atoi(m[2])
			lines := bytes.Split(b, []byte("\n"))
			if line < 1 || line > len(lines) || col < 1 || col > len(lines[line-1])+1 {
				t.Fatalf("error %q: position outside the %d-line file", err, len(lines))
			}
		}
	})
}
