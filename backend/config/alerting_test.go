package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestAlertingDefaults(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"KEYALERT_API_TOKENS": "t1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PagerDuty.URL != "https://events.pagerduty.com/v2/enqueue" || c.PagerDuty.Timeout != 10*time.Second ||
		c.Rules.KeywordsKey != "keyalert:keywords" || c.Lease.TTL != 5*time.Second || c.Lease.Shards != 16 ||
		c.Alert.EvalInterval != 3*time.Second || c.Alert.SampleLines != 5 || c.Alert.NoSampleLines ||
		c.Outbox.BackoffMin != time.Second || c.Outbox.BackoffMax != 5*time.Minute || c.Outbox.Concurrency != 4 ||
		c.API.MaxBodyBytes != 65536 || c.API.RequestTimeout != 5*time.Second || c.DefaultRoutingKey != "" || c.API.DefaultRoutingKey {
		t.Errorf("alerting defaults: %+v", c)
	}
}

func TestEvalDelayAndMaxGroups(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"KEYALERT_API_TOKENS": "t1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Alert.EvalDelay != time.Minute || c.Alert.NoEvalDelay || c.Alert.MaxGroups != 10000 {
		t.Errorf("defaults: %+v", c.Alert)
	}
	c, err = Load([]string{"--max-rule-groups=50"}, env(map[string]string{"KEYALERT_API_TOKENS": "t1", "KEYALERT_EVAL_DELAY": "0s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Alert.EvalDelay != 0 || !c.Alert.NoEvalDelay || c.Alert.MaxGroups != 50 {
		t.Errorf("set: %+v", c.Alert)
	}
}

func TestAlertingFromFlagsAndEnv(t *testing.T) {
	const key = "R0123456789abcdef0123456789ABCDE"
	e := env(map[string]string{
		"KEYALERT_API_TOKENS": "t", "KEYALERT_PAGERDUTY_ROUTING_KEY": key, "KEYALERT_LEASE_TTL": "1s",
		"KEYALERT_PUBLIC_URL": "https://keyalert.example.com", "KEYALERT_OUTBOX_BACKOFF_MIN": "50ms",
	})
	c, err := Load([]string{"--pagerduty-url=http://127.0.0.1:8095/v2/enqueue", "--eval-shards=4", "--outbox-backoff-max=200ms"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PagerDuty.URL != "http://127.0.0.1:8095/v2/enqueue" || c.DefaultRoutingKey != key || !c.API.DefaultRoutingKey || c.Lease.TTL != time.Second ||
		c.Lease.Shards != 4 || c.Alert.PublicURL != "https://keyalert.example.com" || c.Outbox.BackoffMin != 50*time.Millisecond ||
		c.Outbox.BackoffMax != 200*time.Millisecond {
		t.Errorf("got %+v", c)
	}
}

func TestBadAlertingValuesNameTheSetting(t *testing.T) {
	const secret = "hunter2hunter2hunter2hunter2xyz!" // 32 bytes, one not alphanumeric
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		notWant string
	}{
		{"pagerduty url not absolute", map[string]string{"KEYALERT_PAGERDUTY_URL": "events.pagerduty.com"}, `KEYALERT_PAGERDUTY_URL = "events.pagerduty.com": want an absolute`, ""},
		{"pagerduty timeout too long", map[string]string{"KEYALERT_PAGERDUTY_TIMEOUT": "5m"}, "KEYALERT_PAGERDUTY_TIMEOUT", ""},
		{"routing key malformed, not echoed", map[string]string{"KEYALERT_PAGERDUTY_ROUTING_KEY": secret}, "KEYALERT_PAGERDUTY_ROUTING_KEY = (value hidden): want 32", "hunter2"},
		{"routing key too short", map[string]string{"KEYALERT_PAGERDUTY_ROUTING_KEY": "abc"}, "KEYALERT_PAGERDUTY_ROUTING_KEY", "abc"},
		{"empty keywords key", map[string]string{"KEYALERT_KEYWORDS_KEY": " "}, "KEYALERT_KEYWORDS_KEY", ""},
		{"lease ttl too short", map[string]string{"KEYALERT_LEASE_TTL": "100ms"}, `KEYALERT_LEASE_TTL = "100ms"`, ""},
		{"no shards", map[string]string{"KEYALERT_EVAL_SHARDS": "0"}, "KEYALERT_EVAL_SHARDS", ""},
		{"eval interval too long", map[string]string{"KEYALERT_EVAL_INTERVAL": "2m"}, "KEYALERT_EVAL_INTERVAL", ""},
		{"eval delay not whole minutes", map[string]string{"KEYALERT_EVAL_DELAY": "90s"}, `KEYALERT_EVAL_DELAY = "90s": want whole minutes`, ""},
		{"eval delay too long", map[string]string{"KEYALERT_EVAL_DELAY": "2h"}, "KEYALERT_EVAL_DELAY", ""},
		{"no groups", map[string]string{"KEYALERT_MAX_RULE_GROUPS": "0"}, "KEYALERT_MAX_RULE_GROUPS", ""},
		{"public url relative", map[string]string{"KEYALERT_PUBLIC_URL": "/alerts"}, "KEYALERT_PUBLIC_URL", ""},
		{"too many sample lines", map[string]string{"KEYALERT_ALERT_SAMPLE_LINES": "51"}, "KEYALERT_ALERT_SAMPLE_LINES", ""},
		{"backoff min not a duration", map[string]string{"KEYALERT_OUTBOX_BACKOFF_MIN": "soon"}, "KEYALERT_OUTBOX_BACKOFF_MIN", ""},
		{"backoff max below min", map[string]string{"KEYALERT_OUTBOX_BACKOFF_MIN": "10s", "KEYALERT_OUTBOX_BACKOFF_MAX": "5s"}, "KEYALERT_OUTBOX_BACKOFF_MAX = \"5s\": want between KEYALERT_OUTBOX_BACKOFF_MIN", ""},
		{"concurrency zero", map[string]string{"KEYALERT_OUTBOX_CONCURRENCY": "0"}, "KEYALERT_OUTBOX_CONCURRENCY", ""},
		{"body limit tiny", map[string]string{"KEYALERT_API_MAX_BODY_BYTES": "10"}, "KEYALERT_API_MAX_BODY_BYTES", ""},
		{"api timeout too long", map[string]string{"KEYALERT_API_TIMEOUT": "2m"}, `KEYALERT_API_TIMEOUT = "2m": want between 100ms and 1m`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{"KEYALERT_API_TOKENS": "tok"}
			for k, v := range tt.env {
				e[k] = v
			}
			_, err := Load(nil, env(e), io.Discard)
			if err == nil {
				t.Fatalf("Load(%v): no error", tt.env)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want it to contain %q", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q leaks %q", err, tt.notWant)
			}
		})
	}
}

func TestZeroSampleLinesMeansNone(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"KEYALERT_API_TOKENS": "t", "KEYALERT_ALERT_SAMPLE_LINES": "0", "KEYALERT_SAMPLES": "0"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Alert.NoSampleLines || !c.Ingest.NoSamples {
		t.Errorf("0 sample lines: alert %+v, ingest NoSamples %v", c.Alert, c.Ingest.NoSamples)
	}
}
