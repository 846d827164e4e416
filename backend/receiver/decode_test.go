package receiver_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/backend/receiver"
)

// FuzzDecode: any body decodes without panicking, and a receiver that
// passes validation marshals with its secrets redacted.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","type":"slack","url":"https://hooks.example/T/B/tok"}`,
		`{"name":"h","type":"webhook","url":"http://x","secret":"0123456789abcdefXYZ","template":{"title":"{{.Summary}}","body":"{{range .Samples}}{{.}}{{end}}"}}`,
		`{"name":"p","type":"pagerduty","routing_key":"R0123456789abcdef0123456789ABCDE","severities":["critical"]}`,
		`{"name":"am","type":"alertmanager","url":"http://u:p@am:9093"}`,
		`{"name":1}`, `[]`, `{"template":{"title":"{{"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, errs := receiver.Decode(body, nil, 0)
		if errs.Err() != nil {
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{r.RoutingKey.Reveal(), r.Secret.Reveal()} {
			if len(s) > 8 && strings.Contains(string(out), s) {
				t.Fatalf("secret in %s", out)
			}
		}
		if r.Type != "alertmanager" && len(r.URL) > 8 && strings.Contains(string(out), r.URL.Reveal()) {
			t.Fatalf("url in %s", out)
		}
	})
}
