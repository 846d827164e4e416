package pagerduty

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/pdreceiver"
)

const key = rules.Secret("R0123456789abcdef0123456789ABCDE")

func sample() Trigger {
	return Trigger{
		RoutingKey: key, DedupKey: "keyalert-a1", Summary: "Exception seen 37 times in 5m on web-12 (rule java exceptions)",
		Source: "web-12", Severity: "critical", Timestamp: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Component: "app.web", Group: "web-12", Class: "Exception",
		Details: map[string]any{"rule": "java exceptions", "counts_per_minute": map[string]int{"12:00": 37}},
		Links:   []Link{{Href: "https://runbooks.example/java", Text: "Runbook"}}, ClientURL: "http://keyalert.example/api/v1/alerts/a1",
	}
}

func TestEncodedEventsPassTheReceiverSchema(t *testing.T) {
	long := sample()
	long.Summary = strings.Repeat("é", 3000)
	huge := sample()
	huge.Details = map[string]any{"rule": "r", "samples": []string{strings.Repeat("x", MaxEventBytes)}}
	for name, tr := range map[string]Trigger{"full": sample(), "long summary": long, "huge details": huge} {
		b, err := tr.Encode()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ev, errs := pdreceiver.Validate(b)
		if len(errs) > 0 {
			t.Fatalf("%s: receiver rejects: %v", name, errs)
		}
		if n := len([]rune(ev.Payload.Summary)); n > MaxSummaryChars {
			t.Fatalf("%s: summary of %d characters", name, n)
		}
	}
	for _, enc := range []func(rules.Secret, string) ([]byte, error){Acknowledge, Resolve} {
		b, _ := enc(key, "keyalert-a1")
		if _, errs := pdreceiver.Validate(b); len(errs) > 0 {
			t.Fatalf("%s: %v", b, errs)
		}
	}
	b, _ := sample().Encode()
	var m map[string]any
	json.Unmarshal(b, &m)
	if m["routing_key"] != key.Reveal() || m["payload"].(map[string]any)["timestamp"] != "2025-03-01T12:00:00Z" {
		t.Fatalf("encoded %s", b)
	}
}

func TestSendClassifiesAnswers(t *testing.T) {
	recv := pdreceiver.Start(t)
	c := NewClient(Settings{URL: recv.URL, Timeout: 2 * time.Second}, nil)
	ctx := context.Background()
	good, _ := sample().Encode()
	tests := []struct {
		name    string
		fail    int
		body    []byte
		outcome outbox.Outcome
		status  int
	}{
		{"accepted", 0, good, outbox.Delivered, 202},
		{"invalid is rejected", 0, []byte(`{"event_action":"trigger"}`), outbox.Reject, 400},
		{"server error is retried", 500, good, outbox.Retry, 500},
		{"rate limit is retried", 429, good, outbox.Retry, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fail != 0 {
				recv.FailNext(1, tt.fail)
			}
			d := c.Send(ctx, tt.body)
			if d.Outcome != tt.outcome || d.Status != tt.status {
				t.Fatalf("got %+v", d)
			}
			if d.Outcome != outbox.Delivered && d.Reason == "" {
				t.Fatal("no reason for a failed delivery")
			}
		})
	}
	recv.Close()
	if d := c.Send(ctx, good); d.Outcome != outbox.Retry || d.Status != 0 {
		t.Fatalf("network error: %+v", d)
	}
}

func TestSendHonoursRetryAfter(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	})}
	l := listen(t)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	d := NewClient(Settings{URL: "http://" + l.Addr().String() + "/v2/enqueue", Timeout: time.Second}, nil).Send(context.Background(), []byte(`{}`))
	if d.Outcome != outbox.Retry || d.RetryAfter != 7*time.Second {
		t.Fatalf("got %+v", d)
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		s    Settings
		want string
	}{
		{Settings{URL: "events.pagerduty.com", Timeout: time.Second}, "KEYALERT_PAGERDUTY_URL"},
		{Settings{URL: DefaultURL, Timeout: 0}, "KEYALERT_PAGERDUTY_TIMEOUT"},
		{Settings{URL: DefaultURL, Timeout: time.Second, DefaultRoutingKey: "secret-but-too-short"}, "KEYALERT_PAGERDUTY_ROUTING_KEY"},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v", tt.s, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret-but") {
			t.Errorf("error echoes the routing key: %v", err)
		}
	}
	ok := DefaultSettings()
	ok.DefaultRoutingKey = key
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("héllo", 5); got != "héllo" {
		t.Fatal(got)
	}
	if got := Truncate("héllo world", 5); got != "héll…" {
		t.Fatal(got)
	}
}
