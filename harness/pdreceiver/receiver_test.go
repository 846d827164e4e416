package pdreceiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const key = "R0123456789abcdef0123456789ABCDE"

func trigger() map[string]any {
	return map[string]any{
		"routing_key": key, "event_action": "trigger", "dedup_key": "a1",
		"payload": map[string]any{
			"summary": "Exception seen 37 times in 5m on web-12 (rule java exceptions)", "source": "web-12",
			"severity": "critical", "timestamp": "2025-03-01T12:00:00.123Z", "component": "app.web",
			"group": "web-12", "class": "Exception", "custom_details": map[string]any{"rule": "java exceptions"},
		},
		"links":  []any{map[string]any{"href": "https://runbooks.example/java", "text": "runbook"}},
		"client": "keyalert", "client_url": "http://keyalert.example/api/v1/alerts/a1",
	}
}

func TestValidateAcceptsCompleteEvents(t *testing.T) {
	for _, m := range []map[string]any{
		trigger(),
		{"routing_key": key, "event_action": "resolve", "dedup_key": "a1"},
		{"routing_key": key, "event_action": "acknowledge", "dedup_key": "a1"},
		{"routing_key": key, "event_action": "trigger", "payload": map[string]any{"summary": "s", "source": "x", "severity": "info", "timestamp": "2015-07-17T08:42:58.315+0000"}},
	} {
		b, _ := json.Marshal(m)
		if _, errs := Validate(b); len(errs) > 0 {
			t.Errorf("%s: %v", b, errs)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"short routing key", func(m map[string]any) { m["routing_key"] = "abc" }, "routing_key must be 32"},
		{"missing routing key", func(m map[string]any) { delete(m, "routing_key") }, "routing_key is required"},
		{"bad action", func(m map[string]any) { m["event_action"] = "open" }, "event_action"},
		{"missing payload", func(m map[string]any) { delete(m, "payload") }, "payload is required"},
		{"missing summary", func(m map[string]any) { delete(m["payload"].(map[string]any), "summary") }, "payload.summary is required"},
		{"long summary", func(m map[string]any) { m["payload"].(map[string]any)["summary"] = strings.Repeat("é", 1025) }, "over the limit of 1024"},
		{"missing source", func(m map[string]any) { delete(m["payload"].(map[string]any), "source") }, "payload.source is required"},
		{"bad severity", func(m map[string]any) { m["payload"].(map[string]any)["severity"] = "fatal" }, "payload.severity"},
		{"bad timestamp", func(m map[string]any) { m["payload"].(map[string]any)["timestamp"] = "yesterday" }, "ISO 8601"},
		{"details not an object", func(m map[string]any) { m["payload"].(map[string]any)["custom_details"] = []int{1} }, "custom_details must be an object"},
		{"unknown field", func(m map[string]any) { m["dedupkey"] = "x" }, `unknown field "dedupkey"`},
		{"unknown payload field", func(m map[string]any) { m["payload"].(map[string]any)["host"] = "x" }, `payload: unknown field "host"`},
		{"long dedup key", func(m map[string]any) { m["dedup_key"] = strings.Repeat("k", 256) }, "dedup_key is 256"},
		{"resolve without dedup key", func(m map[string]any) { m["event_action"] = "resolve"; delete(m, "dedup_key") }, "dedup_key is required"},
		{"link without href", func(m map[string]any) { m["links"] = []any{map[string]any{"text": "x"}} }, "links[0].href is required"},
		{"severity of wrong type", func(m map[string]any) { m["payload"].(map[string]any)["severity"] = 3 }, "payload.severity must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := trigger()
			tt.mutate(m)
			b, _ := json.Marshal(m)
			_, errs := Validate(b)
			if !strings.Contains(strings.Join(errs, "\n"), tt.want) {
				t.Fatalf("errors %q, want one containing %q", errs, tt.want)
			}
		})
	}
	big := trigger()
	big["payload"].(map[string]any)["custom_details"] = map[string]any{"x": strings.Repeat("y", MaxEventBytes)}
	b, _ := json.Marshal(big)
	if _, errs := Validate(b); len(errs) == 0 || !strings.Contains(errs[0], "over the limit") {
		t.Fatalf("oversized event: %v", errs)
	}
}

func post(t *testing.T, url string, body []byte) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestServerAnswersLikePagerDuty(t *testing.T) {
	s := Start(t)
	b, _ := json.Marshal(trigger())
	status, m := post(t, s.URL, b)
	if status != http.StatusAccepted || m["status"] != "success" || m["message"] != "Event processed" || m["dedup_key"] != "a1" {
		t.Fatalf("202 answer: %d %v", status, m)
	}
	status, m = post(t, s.URL, []byte(`{"event_action":"trigger"}`))
	if status != http.StatusBadRequest || len(m["errors"].([]any)) < 2 {
		t.Fatalf("400 answer: %d %v", status, m)
	}
	noDedup := trigger()
	delete(noDedup, "dedup_key")
	b, _ = json.Marshal(noDedup)
	if status, m = post(t, s.URL, b); status != http.StatusAccepted || len(m["dedup_key"].(string)) != 32 {
		t.Fatalf("trigger without dedup key gets one made up: %d %v", status, m)
	}
	if len(s.Events()) != 2 || len(s.Rejections()) != 1 || s.Attempts() != 3 {
		t.Fatalf("recorded %d events, %d rejections, %d attempts", len(s.Events()), len(s.Rejections()), s.Attempts())
	}
}

func TestFailNextThenAccept(t *testing.T) {
	s := Start(t)
	b, _ := json.Marshal(trigger())
	s.FailNext(2, http.StatusInternalServerError)
	for i, want := range []int{500, 500, 202} {
		if status, _ := post(t, s.URL, b); status != want {
			t.Fatalf("request %d: status %d, want %d", i, status, want)
		}
	}
	resp, err := http.Post("http://"+s.Addr+"/fail?n=1&status=429", "", nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("program failure over HTTP: %v %v", resp, err)
	}
	if status, m := post(t, s.URL, b); status != 429 || m["status"] != "throttle event" {
		t.Fatalf("429 answer: %d %v", status, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	evs, err := s.WaitForN(ctx, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("wait: %d %v", len(evs), err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := s.WaitForN(ctx2, 2); err == nil {
		t.Fatal("WaitFor must fail when its context ends first")
	}
}

func FuzzValidate(f *testing.F) {
	b, _ := json.Marshal(trigger())
	f.Add(b)
	f.Add([]byte(`{"routing_key":"x","event_action":"resolve","links":[1,{}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, errs := Validate(body)
		if len(errs) == 0 {
			if len([]rune(ev.RoutingKey)) != RoutingKeyLen || (ev.Action == "trigger" && ev.Payload == nil) {
				t.Fatalf("accepted invalid event %s", body)
			}
		}
	})
}

func TestRateLimitAnswers429WithRetryAfterPerRoutingKey(t *testing.T) {
	s := Start(t)
	s.RateLimit(2, time.Hour)
	body, _ := json.Marshal(trigger())
	var codes []int
	for range 3 {
		code, _ := post(t, s.URL, body)
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[202 202 429]" || s.Throttled() != 1 || len(s.Events()) != 2 {
		t.Fatalf("codes %v, throttled %d, events %d", codes, s.Throttled(), len(s.Events()))
	}
	other := trigger()
	other["routing_key"] = "S0123456789abcdef0123456789ABCDE"
	body, _ = json.Marshal(other)
	if code, _ := post(t, s.URL, body); code != 202 {
		t.Fatalf("another routing key: %d", code)
	}
}

func TestProcessLateRecordsTheEventAfterTheClientGaveUp(t *testing.T) {
	s := Start(t)
	s.ProcessLate(1, 300*time.Millisecond)
	body, _ := json.Marshal(trigger())
	c := &http.Client{Timeout: 50 * time.Millisecond}
	if _, err := c.Post(s.URL, "application/json", bytes.NewReader(body)); err == nil {
		t.Fatal("the client did not time out")
	}
	if n := len(s.Events()); n != 0 {
		t.Fatalf("%d events before the hold ended", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.WaitForN(ctx, 1); err != nil {
		t.Fatal(err)
	}
}
