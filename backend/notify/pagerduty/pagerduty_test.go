package pagerduty

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/pdreceiver"
)

const key = rules.Secret("R0123456789abcdef0123456789ABCDE")

func sample() notify.Notification {
	return notify.Notification{
		Action: notify.Trigger, AlertID: "a1", DedupKey: "keyalert-a1", Target: key,
		Rule: notify.Rule{ID: "r1", Name: "java exceptions", Severity: rules.Critical, Condition: "count >= 5 over 5m",
			GroupBy: rules.GroupHost, Filters: rules.Filters{Host: "web-*"}},
		Summary: "Exception seen 37 times in 5m on web-12 (rule java exceptions)",
		Group:   "web-12", Host: "web-12", Tag: "app.web", Keywords: []string{"Exception"},
		Count: 37, Window: "5m", CountsPerMinute: map[string]int64{"2025-03-01T12:00:00Z": 37},
		Samples: []string{"Exception on web-12"},
		At:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Links:   []notify.Link{{Href: "https://runbooks.example/java", Text: "Runbook"}}, AlertURL: "http://keyalert.example/api/v1/alerts/a1",
	}
}

// The wire bytes are exactly what keyalert sent with go-pagerduty's types:
// field order, omitted empty fields and all.
func TestEncodeIsByteForByteTheEventsAPIv2Format(t *testing.T) {
	ack := sample()
	ack.Action = notify.Acknowledge
	fleet := sample()
	fleet.Host, fleet.Group, fleet.Tag, fleet.Links, fleet.AlertURL, fleet.Samples = "", "", "", nil, "", nil
	late := fleet
	late.Summary, late.Late = "[late] "+late.Summary, true
	late.At = time.Date(2025, 3, 1, 12, 3, 20, 0, time.UTC)
	late.EventWindow = &notify.EventWindow{From: time.Date(2025, 3, 1, 11, 56, 0, 0, time.UTC), To: time.Date(2025, 3, 1, 12, 1, 0, 0, time.UTC)}
	tests := []struct {
		name string
		n    notify.Notification
		want string
	}{
		{"trigger", sample(), `{"routing_key":"R0123456789abcdef0123456789ABCDE","event_action":"trigger","dedup_key":"keyalert-a1",` +
			`"links":[{"href":"https://runbooks.example/java","text":"Runbook"}],"client":"keyalert","client_url":"http://keyalert.example/api/v1/alerts/a1",` +
			`"payload":{"summary":"Exception seen 37 times in 5m on web-12 (rule java exceptions)","source":"web-12","severity":"critical",` +
			`"timestamp":"2025-03-01T12:00:00Z","component":"app.web","class":"Exception","custom_details":` +
			`{"count":37,"counts_per_minute":{"2025-03-01T12:00:00Z":37},"labels":{"host":"web-12","tag":"app.web"},"rule":{"condition":"count \u003e= 5 over 5m","filters":{"host":"web-*"},` +
			`"group_by":"host","id":"r1","name":"java exceptions"},"sample_lines":["Exception on web-12"],"window":"5m"}}}`},
		{"fleet trigger without links", fleet, `{"routing_key":"R0123456789abcdef0123456789ABCDE","event_action":"trigger","dedup_key":"keyalert-a1",` +
			`"client":"keyalert","payload":{"summary":"Exception seen 37 times in 5m on web-12 (rule java exceptions)","source":"keyalert","severity":"critical",` +
			`"timestamp":"2025-03-01T12:00:00Z","class":"Exception","custom_details":` +
			`{"count":37,"counts_per_minute":{"2025-03-01T12:00:00Z":37},"labels":{},"rule":{"condition":"count \u003e= 5 over 5m","filters":{"host":"web-*"},` +
			`"group_by":"host","id":"r1","name":"java exceptions"},"window":"5m"}}}`},
		// Dated at the end of the event window, not when the entries came.
		{"late trigger", late, `{"routing_key":"R0123456789abcdef0123456789ABCDE","event_action":"trigger","dedup_key":"keyalert-a1",` +
			`"client":"keyalert","payload":{"summary":"[late] Exception seen 37 times in 5m on web-12 (rule java exceptions)","source":"keyalert","severity":"critical",` +
			`"timestamp":"2025-03-01T12:01:00Z","class":"Exception","custom_details":` +
			`{"count":37,"counts_per_minute":{"2025-03-01T12:00:00Z":37},"event_window":{"from":"2025-03-01T11:56:00Z","to":"2025-03-01T12:01:00Z"},` +
			`"labels":{},"late":true,"rule":{"condition":"count \u003e= 5 over 5m","filters":{"host":"web-*"},` +
			`"group_by":"host","id":"r1","name":"java exceptions"},"window":"5m"}}}`},
		{"acknowledge", ack, `{"routing_key":"R0123456789abcdef0123456789ABCDE","event_action":"acknowledge","dedup_key":"keyalert-a1","client":"keyalert"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("encoded\n%s\nwant\n%s", b, tt.want)
			}
		})
	}
}

func TestEncodedEventsPassTheReceiverSchema(t *testing.T) {
	long := sample()
	long.Summary = strings.Repeat("é", 3000)
	huge := sample()
	huge.Samples = []string{strings.Repeat("x", MaxEventBytes)}
	ack, resolve := sample(), sample()
	ack.Action, resolve.Action = notify.Acknowledge, notify.Resolve
	late := sample()
	late.Late, late.EventWindow = true, &notify.EventWindow{From: late.At.Add(-5 * time.Minute), To: late.At}
	for name, n := range map[string]notify.Notification{"full": sample(), "long summary": long, "huge details": huge, "late": late,
		"acknowledge": ack, "resolve": resolve} {
		b, err := Encode(n)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ev, errs := pdreceiver.Validate(b)
		if len(errs) > 0 {
			t.Fatalf("%s: receiver rejects: %v", name, errs)
		}
		if ev.Payload != nil {
			if n := len([]rune(ev.Payload.Summary)); n > MaxSummaryChars {
				t.Fatalf("%s: summary of %d characters", name, n)
			}
		}
	}
}

func TestEncodeWithoutRoutingKeyFails(t *testing.T) {
	n := sample()
	n.Target = ""
	if _, err := Encode(n); !errors.Is(err, ErrNoRoutingKey) {
		t.Fatalf("err %v, want ErrNoRoutingKey", err)
	}
}

func TestSendClassifiesAnswers(t *testing.T) {
	recv := pdreceiver.Start(t)
	c := NewClient(Options{URL: recv.URL, Timeout: 2 * time.Second}, nil)
	ctx := context.Background()
	good, _ := Encode(sample())
	tests := []struct {
		name    string
		fail    int
		body    []byte
		outcome notify.Outcome
		status  int
	}{
		{"accepted", 0, good, notify.Delivered, 202},
		{"invalid is rejected", 0, []byte(`{"event_action":"trigger"}`), notify.Reject, 400},
		{"server error is retried", 500, good, notify.Retry, 500},
		{"rate limit is retried", 429, good, notify.Retry, 429},
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
			if d.Outcome != notify.Delivered && d.Reason == "" {
				t.Fatal("no reason for a failed delivery")
			}
		})
	}
	recv.Close()
	if d := c.Send(ctx, good); d.Outcome != notify.Retry || d.Status != 0 {
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
	d := NewClient(Options{URL: "http://" + l.Addr().String() + "/v2/enqueue", Timeout: time.Second}, nil).Send(context.Background(), []byte(`{}`))
	if d.Outcome != notify.Retry || d.RetryAfter != 7*time.Second {
		t.Fatalf("got %+v", d)
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

// Source, component and group come from the group's labels as documented:
// the group's host, else the only host counted, else the group, else
// keyalert; component from app-like labels, else the tag; group from the
// namespace, else none.
func TestTriggerFieldsFromLabels(t *testing.T) {
	for _, tt := range []struct {
		name                     string
		edit                     func(n *notify.Notification)
		source, component, group string
	}{
		{"group by namespace and app, one node counted", func(n *notify.Notification) {
			n.Host, n.Tag, n.Group, n.SeriesHost = "", "", "namespace=shop,app=web", "node-1"
			n.Labels = map[string]string{"namespace": "shop", "app": "web"}
		}, "node-1", "web", "shop"},
		{"group by namespace_name and container_name, several nodes", func(n *notify.Notification) {
			n.Host, n.Tag, n.Group = "", "kube.x", "namespace_name=prod,container_name=api"
			n.Labels = map[string]string{"namespace_name": "prod", "container_name": "api"}
		}, "namespace_name=prod,container_name=api", "api", "prod"},
		{"group by host and namespace", func(n *notify.Notification) {
			n.Host, n.Group = "node-2", "host=node-2,namespace=shop"
			n.Labels = map[string]string{"namespace": "shop"}
		}, "node-2", "app.web", "shop"},
		{"fleet-wide, nothing known", func(n *notify.Notification) { n.Host, n.Tag, n.Group = "", "", "" }, "keyalert", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := sample()
			tt.edit(&n)
			b, err := Encode(n)
			if err != nil {
				t.Fatal(err)
			}
			var ev struct {
				Payload struct {
					Source, Component, Group string
					Details                  struct {
						Labels map[string]string `json:"labels"`
					} `json:"custom_details"`
				}
			}
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatal(err)
			}
			p := ev.Payload
			if p.Source != tt.source || p.Component != tt.component || p.Group != tt.group {
				t.Errorf("source %q component %q group %q, want %q %q %q", p.Source, p.Component, p.Group, tt.source, tt.component, tt.group)
			}
			for k, v := range n.Labels {
				if p.Details.Labels[k] != v {
					t.Errorf("custom_details.labels = %v, want %s=%s in it", p.Details.Labels, k, v)
				}
			}
		})
	}
}
