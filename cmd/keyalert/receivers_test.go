package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

const (
	testSlackURL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXabcd"
	testSecret   = "0123456789abcdef0123456789abWXYZ"
)

func TestCLIReceiversApplyAndExport(t *testing.T) {
	startServer(t)
	t.Setenv("ONCALL_KEY", testKey)
	t.Setenv("SLACK_URL", testSlackURL)
	t.Setenv("HOOK_SECRET", testSecret)
	file := writeFile(t, "receivers.yaml", `receivers:
  - name: oncall
    type: pagerduty
    routing_key: ${ONCALL_KEY}
  - name: chat
    type: slack
    url: ${SLACK_URL}
    severities: [critical, error]
  - name: hook
    type: webhook
    url: https://hooks.example/keyalert
    secret: ${HOOK_SECRET}
`)
	out := mustRun(t, "receivers", "apply", "-f", file)
	if strings.Count(out, "+ create") != 3 || !strings.Contains(out, "3 changes applied") {
		t.Fatalf("first apply:\n%s", out)
	}
	if out = mustRun(t, "receivers", "apply", "-f", file); !strings.Contains(out, "no changes") {
		t.Errorf("second apply:\n%s", out)
	}
	if out = mustRun(t, "receivers"); !strings.Contains(out, "chat") || !strings.Contains(out, "critical,error") || strings.Contains(out, testSlackURL) {
		t.Errorf("list (secrets must stay redacted):\n%s", out)
	}

	exported := mustRun(t, "receivers", "export")
	for _, leak := range []string{testKey, testSlackURL, testSecret} {
		if strings.Contains(exported, leak) {
			t.Fatalf("export shows a secret in clear:\n%s", exported)
		}
	}
	if !strings.Contains(exported, "${KEYALERT_RECEIVER_ONCALL_ROUTING_KEY}") || !strings.Contains(exported, "${KEYALERT_RECEIVER_HOOK_SECRET}") {
		t.Errorf("export's references:\n%s", exported)
	}
	// The references are unset here: apply keeps what keyalertd has.
	if out = mustRun(t, "receivers", "apply", "-f", writeFile(t, "exported.yaml", exported)); !strings.Contains(out, "no changes") {
		t.Errorf("apply of the export:\n%s\nexport:\n%s", out, exported)
	}

	data, _ := os.ReadFile(file)
	edited := strings.Replace(string(data), "severities: [critical, error]", "severities: [critical]", 1)
	os.WriteFile(file, []byte(edited), 0o644)
	if out = mustRun(t, "receivers", "apply", "-f", file, "-dry-run"); !strings.Contains(out, `~ update "chat": severities`) || !strings.Contains(out, "nothing changed") {
		t.Errorf("dry run of an edit:\n%s", out)
	}
	if out = mustRun(t, "receivers", "apply", "-f", file); !strings.Contains(out, "1 changes applied") {
		t.Errorf("apply of an edit:\n%s", out)
	}
	// A new secret is a change.
	t.Setenv("HOOK_SECRET", "another-secret-of-32-bytes-0000Q")
	if out = mustRun(t, "receivers", "apply", "-f", file, "-dry-run"); !strings.Contains(out, `~ update "hook": secret`) {
		t.Errorf("dry run of a new secret:\n%s", out)
	}
	os.WriteFile(file, []byte(strings.SplitAfter(edited, "severities: [critical]\n")[0]), 0o644)
	if out = mustRun(t, "receivers", "apply", "-f", file, "-prune"); !strings.Contains(out, `- delete "hook"`) {
		t.Errorf("-prune:\n%s", out)
	}
	var res struct {
		Receivers []struct {
			Name       string   `json:"name"`
			Severities []string `json:"severities"`
		} `json:"receivers"`
	}
	json.Unmarshal([]byte(mustRun(t, "receivers", "-o", "json")), &res)
	if len(res.Receivers) != 2 {
		t.Errorf("receivers after -prune: %+v", res)
	}

	for _, tc := range []struct{ name, body, want string }{
		{"unset reference for a new receiver", "- name: new\n  type: pagerduty\n  routing_key: ${NOT_SET_ANYWHERE}\n",
			"bad.yaml:3: receiver \"new\": routing_key: $NOT_SET_ANYWHERE is not set"},
		{"bad type", "- name: x\n  type: pager\n", `bad.yaml:2: receiver "x": type: "pager": want one of`},
		{"duplicate name", "- name: chat\n  type: slack\n  url: https://hooks.slack.com/a\n- name: chat\n  type: slack\n  url: https://hooks.slack.com/b\n",
			`bad.yaml:4: receiver "chat": name: also the name of the receiver on line 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run("receivers", "apply", "-f", writeFile(t, "bad.yaml", tc.body))
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %s; want it to contain %s", code, errOut, tc.want)
			}
		})
	}
}
