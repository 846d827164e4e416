package template_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/template"
)

func TestCompileRejectsBadTemplatesNamingThePart(t *testing.T) {
	cases := []struct {
		name string
		t    template.Templates
		want string
	}{
		{"syntax", template.Templates{Title: "{{.Summary"}, "title:"},
		{"unknown field", template.Templates{Body: "{{.Nope}}"}, "body:"},
		{"unknown function", template.Templates{Body: "{{shout .Summary}}"}, "body:"},
		{"missing map key", template.Templates{Title: "{{.Labels.region}}"}, "title:"},
		{"too large", template.Templates{Body: strings.Repeat("x", 5000)}, "over the limit of 4096"},
		{"output too large", template.Templates{Title: `{{range .Samples}}{{printf "%600s" .}}{{end}}`}, "output over 512 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := template.Compile(tc.t, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := template.Compile(template.Templates{Body: strings.Repeat("x", 5000)}, 0); !errors.Is(err, template.ErrTooLarge) {
		t.Errorf("size error %v is not ErrTooLarge", err)
	}
}

func TestDefaultsRenderEveryAction(t *testing.T) {
	s, err := template.Compile(template.Templates{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for action, want := range map[notify.Action]string{
		notify.Trigger:     "Exception seen 37 times in 5m on web-12 (rule java exceptions)",
		notify.Acknowledge: "Acknowledged: Exception seen 37 times",
		notify.Resolve:     "Resolved: Exception seen 37 times",
	} {
		n := template.Sample()
		n.Action = action
		title, body, err := s.Render(n)
		if err != nil || !strings.HasPrefix(title, want) || body != "java exceptions (error): count >= 5 over 5m, 37 in 5m on web-12." {
			t.Errorf("%s: %q / %q / %v", action, title, body, err)
		}
	}
}

// Every documented field renders.
func TestEveryDocumentedFieldRenders(t *testing.T) {
	body := `{{.Action}}|{{.AlertID}}|{{.DedupKey}}|{{.Rule.ID}}|{{.Rule.Name}}|{{.Rule.Severity}}|{{.Rule.Condition}}|` +
		`{{.Group}}|{{.Host}}|{{.Tag}}|{{.Labels.host}}|{{join .Keywords ","}}|{{.Summary}}|{{.Count}}|{{.Window}}|` +
		`{{range .Minutes}}{{.Minute}}={{.Count}};{{end}}|{{range .Samples}}{{.}}{{end}}|{{.AlertURL}}|{{.Runbook}}|{{.At.Format "15:04"}}|{{upper .Tag}}`
	s, err := template.Compile(template.Templates{Body: body}, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := s.Render(template.Sample())
	if err != nil {
		t.Fatal(err)
	}
	want := "trigger|a-sample|keyalert-a-sample|r-sample|java exceptions|error|count >= 5 over 5m|web-12|web-12|app.web|web-12|Exception|" +
		"Exception seen 37 times in 5m on web-12 (rule java exceptions)|37|5m|2026-01-02T03:03:00Z=30;2026-01-02T03:04:00Z=7;|" +
		"java.lang.NullPointerException at Foo.bar(Foo.java:42)|https://keyalert.example/api/v1/alerts/a-sample|https://runbooks.example/java|03:04|APP.WEB"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestOverlongOutputIsCutAtSendTime(t *testing.T) {
	s, err := template.Compile(template.Templates{Body: "{{.Summary}}"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := template.Sample()
	n.Summary = strings.Repeat("é", template.MaxBodyBytes)
	_, body, err := s.Render(n)
	if err != nil || len(body) > template.MaxBodyBytes || !strings.HasPrefix(body, "éé") {
		t.Fatalf("len %d, err %v", len(body), err)
	}
}
