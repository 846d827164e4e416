package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/redistest"
)

type receiverFixture struct {
	*fixture
	logs *logbuf.Buffer
}

func newReceiverFixture(t *testing.T, max int) *receiverFixture {
	logs := &logbuf.Buffer{}
	rdb := redistest.Start(t).Client()
	o := storeOptions(rdb, func() time.Time { return now }, slog.New(slog.NewTextHandler(logs, nil)))
	o.Tokens = []string{"tok-a"}
	o.Retention = 7 * 24 * time.Hour
	o.Receivers = receiver.NewStore(rdb, receiver.Options{MaxReceivers: max}, o.Now)
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(checked(t, h))
	t.Cleanup(srv.Close)
	return &receiverFixture{fixture: &fixture{srv: srv, rdb: rdb}, logs: logs}
}

func (f *receiverFixture) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+"/api/v1"+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer tok-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const (
	hookSecret = "whsec-0123456789abcdef-SECRET"
	slackURL   = "https://hooks.slack.example/services/T0/B0/SLACKTOKEN123"
	pdKey      = "R0123456789abcdef0123456789ABCDE"
)

func TestReceiversCRUDRedactsSecretsInAnswersAndLogs(t *testing.T) {
	f := newReceiverFixture(t, 0)
	for _, body := range []string{
		`{"name":"hook","type":"webhook","url":"https://hooks.example/in","secret":"` + hookSecret + `"}`,
		`{"name":"team-slack","type":"slack","url":"` + slackURL + `","severities":["critical"]}`,
		`{"name":"oncall-pd","type":"pagerduty","routing_key":"` + pdKey + `"}`,
		`{"name":"am","type":"alertmanager","url":"http://user:pw@am.example:9093"}`,
	} {
		if code, b := f.do(t, "POST", "/receivers", body); code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, b)
		}
	}
	code, list := f.do(t, "GET", "/receivers", "")
	if code != 200 {
		t.Fatal(code, list)
	}
	for _, secret := range []string{hookSecret, "SLACKTOKEN123", pdKey, ":pw@"} {
		if strings.Contains(list, secret) || strings.Contains(f.logs.String(), secret) {
			t.Errorf("secret %q shown:\n%s\n%s", secret, list, f.logs.String())
		}
	}
	if !strings.Contains(list, "http://user:xxxxx@am.example:9093") {
		t.Errorf("alertmanager url not shown: %s", list)
	}
	// Sending back the redacted secret keeps it; a new template is saved.
	var got struct{ Receivers []map[string]any }
	json.Unmarshal([]byte(list), &got)
	var hook map[string]any
	for _, r := range got.Receivers {
		if r["name"] == "hook" {
			hook = r
		}
	}
	hook["template"] = map[string]string{"title": "{{.Rule.Name}}"}
	b, _ := json.Marshal(hook)
	if code, body := f.do(t, "PUT", "/receivers/hook", string(b)); code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	if code, body := f.do(t, "GET", "/receivers/hook", ""); code != 200 || strings.Contains(body, hookSecret) || !strings.Contains(body, "{{.Rule.Name}}") {
		t.Fatalf("get: %d %s, want the new template and the secret redacted", code, body)
	}
	r, err := f.rdb.HGet(t.Context(), receiver.Key, "hook").Result()
	if err != nil || !strings.Contains(r, hookSecret) || !strings.Contains(r, "{{.Rule.Name}}") {
		t.Fatalf("stored %s %v", r, err)
	}
	if code, _ := f.do(t, "DELETE", "/receivers/hook", ""); code != http.StatusNoContent {
		t.Fatal(code)
	}
	if code, _ := f.do(t, "GET", "/receivers/hook", ""); code != http.StatusNotFound {
		t.Fatal(code)
	}
}

func TestBadReceiversAre400NamingTheField(t *testing.T) {
	f := newReceiverFixture(t, 2)
	cases := []struct{ body, field, msg string }{
		{`{"type":"slack","url":"https://x.example/a"}`, "name", "required"},
		{`{"name":"a b","type":"slack","url":"https://x.example/a"}`, "name", "want 1 to 63"},
		{`{"name":"x","type":"email"}`, "type", "want one of"},
		{`{"name":"x","type":"slack"}`, "url", "required"},
		{`{"name":"x","type":"slack","url":"ftp://x"}`, "url", "absolute http"},
		{`{"name":"x","type":"webhook","url":"https://x.example","secret":"short"}`, "secret", "16 to 256"},
		{`{"name":"x","type":"pagerduty","routing_key":"nope"}`, "routing_key", "32 letters"},
		{`{"name":"x","type":"slack","url":"https://x.example/a","routing_key":"` + pdKey + `"}`, "routing_key", "not a field"},
		{`{"name":"x","type":"slack","url":"https://x.example/a","severities":["loud"]}`, "severities[0]", "want critical"},
		{`{"name":"x","type":"slack","url":"https://x.example/a","template":{"title":"{{.Nope}}"}}`, "template.title", "can't evaluate field Nope"},
		{`{"name":"x","type":"slack","url":"https://x.example/a","template":{"body":"` + strings.Repeat("x", 5000) + `"}}`, "template.body", "over the limit"},
	}
	for _, tc := range cases {
		code, body := f.do(t, "POST", "/receivers", tc.body)
		var e Error
		json.Unmarshal([]byte(body), &e)
		if code != 400 || len(e.Fields) == 0 || e.Fields[0].Field != tc.field || !strings.Contains(e.Fields[0].Message, tc.msg) {
			t.Errorf("%s: %d %s, want 400 on %s (%s)", tc.body, code, body, tc.field, tc.msg)
		}
	}
	for _, n := range []string{"a", "b"} {
		if code, b := f.do(t, "POST", "/receivers", `{"name":"`+n+`","type":"slack","url":"https://x.example/a"}`); code != 201 {
			t.Fatal(code, b)
		}
	}
	if code, b := f.do(t, "POST", "/receivers", `{"name":"a","type":"slack","url":"https://x.example/a"}`); code != 409 {
		t.Errorf("duplicate: %d %s", code, b)
	}
	if code, b := f.do(t, "POST", "/receivers", `{"name":"c","type":"slack","url":"https://x.example/a"}`); code != 400 || !strings.Contains(b, "KEYALERT_MAX_RECEIVERS") {
		t.Errorf("over the cap: %d %s", code, b)
	}
	// A rule naming an unknown receiver is refused; a named one in use
	// cannot be deleted.
	rule := `{"name":"r","keywords":["Exception"],"condition":{"type":"threshold","count":1,"window":"1m"},"receivers":["%s"]}`
	if code, b := f.do(t, "POST", "/rules", strings.Replace(rule, "%s", "nope", 1)); code != 400 || !strings.Contains(b, "receivers[0]") {
		t.Errorf("unknown receiver: %d %s", code, b)
	}
	if code, b := f.do(t, "POST", "/rules", strings.Replace(rule, "%s", "a", 1)); code != 201 {
		t.Fatalf("rule: %d %s", code, b)
	}
	if code, b := f.do(t, "DELETE", "/receivers/a", ""); code != 409 {
		t.Errorf("delete in use: %d %s", code, b)
	}
}

func TestRuleWithReceiversCannotAlsoHaveARoutingKey(t *testing.T) {
	f := newReceiverFixture(t, 0)
	if code, b := f.do(t, "POST", "/receivers", `{"name":"a","type":"slack","url":"https://x.example/a"}`); code != 201 {
		t.Fatal(code, b)
	}
	code, b := f.do(t, "POST", "/rules", `{"name":"r","keywords":["Exception"],"condition":{"type":"threshold","count":1,"window":"1m"},
		"receivers":["a"],"pagerduty":{"routing_key":"`+pdKey+`"}}`)
	if code != 400 || !strings.Contains(b, "pagerduty.routing_key") || strings.Contains(b, pdKey) {
		t.Errorf("%d %s", code, b)
	}
}
