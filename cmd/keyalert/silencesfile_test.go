package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestCLISilencesApplyAndExport(t *testing.T) {
	startServer(t)
	end := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	file := writeFile(t, "silences.yaml", `silences:
  - host: web-12
    end: `+end+`
    author: ana
    comment: disk swap
  - keyword: Exception
    tag: "app.*"
    end: `+end+`
    author: bo
`)
	out := mustRun(t, "silences", "apply", "-f", file)
	if strings.Count(out, "+ create") != 2 || !strings.Contains(out, "2 created") {
		t.Fatalf("first apply:\n%s", out)
	}
	if out = mustRun(t, "silences", "apply", "-f", file); !strings.Contains(out, "no changes") {
		t.Errorf("second apply:\n%s", out)
	}
	exported := mustRun(t, "silences", "export")
	if out = mustRun(t, "silences", "apply", "-f", writeFile(t, "exported.yaml", exported)); !strings.Contains(out, "no changes") {
		t.Errorf("apply of the export:\n%s\nexport:\n%s", out, exported)
	}
	data, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(data), "disk swap", "disk swap, 2nd try", 1)), 0o644)
	if out = mustRun(t, "silences", "apply", "-f", file, "-dry-run"); !strings.Contains(out, `~ replace silence of host=web-12`) ||
		!strings.Contains(out, `comment: "disk swap" → "disk swap, 2nd try"`) || !strings.Contains(out, "nothing changed") {
		t.Errorf("dry run of an edit:\n%s", out)
	}
	if out = mustRun(t, "silences", "apply", "-f", file); !strings.Contains(out, "1 replaced") {
		t.Errorf("apply of an edit:\n%s", out)
	}
	os.WriteFile(file, []byte(strings.SplitAfter(string(data), "comment: disk swap\n")[0]), 0o644)
	if out = mustRun(t, "silences", "apply", "-f", file, "-prune"); !strings.Contains(out, "- delete silence of tag=app.* keyword=Exception") {
		t.Errorf("-prune:\n%s", out)
	}
	var res struct {
		Silences []struct {
			Comment string `json:"comment"`
		} `json:"silences"`
	}
	json.Unmarshal([]byte(mustRun(t, "silences", "-o", "json")), &res)
	if len(res.Silences) != 1 || res.Silences[0].Comment != "disk swap" {
		t.Errorf("silences after -prune: %+v", res)
	}

	code, _, errOut := run("silences", "apply", "-f", writeFile(t, "bad.yaml", "- host: web-1\n  end: tomorrow\n  author: a\n"))
	if code != 1 || !strings.Contains(errOut, "bad.yaml:2: silence #1: end: ") {
		t.Errorf("bad end: exit %d, %s", code, errOut)
	}
}
