package main

import (
	"io"
	"testing"

	"github.com/keyalert/keyalert/backend/alertapi"
	"github.com/keyalert/keyalert/backend/config"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/rules"
)

// The settings table's defaults are the defaults of the alerting packages
// still configured by Settings, and every value config accepts passes their
// validation. (notify/pagerduty, alert and outbox take Options whose zero
// value is their default; config renders its defaults from their constants.)
func TestAlertingDefaultsAreThePackagesDefaults(t *testing.T) {
	cfg, err := config.Load(nil, func(k string) string { return map[string]string{"KEYALERT_API_TOKENS": "t"}[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, rs, ls, _, _, apis, err := alertingSettings(cfg.Alerting)
	if err != nil {
		t.Fatalf("defaults fail the packages' validation: %v", err)
	}
	if rs != rules.DefaultSettings() || ls != lease.DefaultSettings() || apis != alertapi.DefaultSettings() {
		t.Errorf("config defaults differ from the packages':\n rules %+v vs %+v\n lease %+v vs %+v\n api %+v vs %+v",
			rs, rules.DefaultSettings(), ls, lease.DefaultSettings(), apis, alertapi.DefaultSettings())
	}
}

func TestAlertingBoundsPassThePackagesValidation(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"low ends", map[string]string{"KEYALERT_PAGERDUTY_TIMEOUT": "100ms", "KEYALERT_LEASE_TTL": "300ms", "KEYALERT_EVAL_SHARDS": "1",
			"KEYALERT_EVAL_INTERVAL": "100ms", "KEYALERT_ALERT_SAMPLE_LINES": "0", "KEYALERT_OUTBOX_BACKOFF_MIN": "10ms",
			"KEYALERT_OUTBOX_BACKOFF_MAX": "10ms", "KEYALERT_OUTBOX_CONCURRENCY": "1", "KEYALERT_API_MAX_BODY_BYTES": "1024"}},
		{"high ends", map[string]string{"KEYALERT_PAGERDUTY_TIMEOUT": "2m", "KEYALERT_LEASE_TTL": "5m", "KEYALERT_EVAL_SHARDS": "1024",
			"KEYALERT_EVAL_INTERVAL": "1m", "KEYALERT_ALERT_SAMPLE_LINES": "50", "KEYALERT_OUTBOX_BACKOFF_MIN": "1h",
			"KEYALERT_OUTBOX_BACKOFF_MAX": "24h", "KEYALERT_OUTBOX_CONCURRENCY": "64", "KEYALERT_API_MAX_BODY_BYTES": "16777216",
			"KEYALERT_PAGERDUTY_ROUTING_KEY": routingKey, "KEYALERT_PUBLIC_URL": "https://keyalert.example.com/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["KEYALERT_API_TOKENS"] = "t"
			cfg, err := config.Load(nil, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, _, _, apis, err := alertingSettings(cfg.Alerting)
			if err != nil {
				t.Fatalf("config accepted values the packages reject: %v", err)
			}
			if hasKey := tt.env["KEYALERT_PAGERDUTY_ROUTING_KEY"] != ""; apis.DefaultRoutingKey != hasKey {
				t.Errorf("default routing key not passed on: api %v", apis.DefaultRoutingKey)
			}
		})
	}
}
