package notifyreceiver

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify/webhook"
)

func TestChecksRejectPayloadsOutsideTheFormat(t *testing.T) {
	cases := []struct {
		name  string
		check func(*http.Request, []byte) []string
		body  string
		want  string // "" : valid
	}{
		{"slack valid", CheckSlack, `{"text":"t","blocks":[{"type":"header","text":{"type":"plain_text","text":"t"}}]}`, ""},
		{"slack no text", CheckSlack, `{"blocks":[{"type":"header","text":{"type":"plain_text","text":"t"}}]}`, "text: required"},
		{"slack long header", CheckSlack, `{"text":"t","blocks":[{"type":"header","text":{"type":"plain_text","text":"` + strings.Repeat("x", 151) + `"}}]}`, "want 1 to 150"},
		{"slack mrkdwn header", CheckSlack, `{"text":"t","blocks":[{"type":"header","text":{"type":"mrkdwn","text":"t"}}]}`, "want [plain_text]"},
		{"slack unknown field", CheckSlack, `{"text":"t","attachments":[]}`, "unknown field"},
		{"teams valid", CheckTeams, `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"type":"AdaptiveCard","$schema":"http://adaptivecards.io/schemas/adaptive-card.json","version":"1.4","body":[{"type":"TextBlock","text":"t"}]}}]}`, ""},
		{"teams old version", CheckTeams, `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"type":"AdaptiveCard","$schema":"http://adaptivecards.io/schemas/adaptive-card.json","version":"1.2","body":[{"type":"TextBlock","text":"t"}]}}]}`, "want AdaptiveCard"},
		{"teams empty body", CheckTeams, `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":{"type":"AdaptiveCard","$schema":"http://adaptivecards.io/schemas/adaptive-card.json","version":"1.4","body":[]}}]}`, "card body: empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.check(nil, []byte(tc.body))
			got := strings.Join(errs, "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("errors %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWebhookNeedsAFreshValidSignature(t *testing.T) {
	s := Start(t, "whsec-0123456789abcdef")
	body := []byte(`{"schema":"keyalert.notification/v1"}`)
	post := func(ts string, secret []byte) int {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/webhook", bytes.NewReader(body))
		req.Header.Set(webhook.HeaderTimestamp, ts)
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, ts, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	if c := post(now, []byte("another-secret-xyz")); c != 400 {
		t.Errorf("wrong secret: %d", c)
	}
	if c := post(old, s.Secret); c != 400 {
		t.Errorf("replayed: %d", c)
	}
	// Signed and fresh, but not the schema's required fields: 400 too.
	if c := post(now, s.Secret); c != 400 || !strings.Contains(strings.Join(s.Messages("webhook")[2].Errors, ";"), "required") {
		t.Errorf("incomplete payload: %d %v", c, s.Messages("webhook"))
	}
}
