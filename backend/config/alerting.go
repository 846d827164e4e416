package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/pkg/keyword"
)

// Alerting holds the settings of the alerting half (rules, alert engine,
// shard leases, outbox, PagerDuty, alert API). The bounds here match the
// packages' own Settings.Validate, which keyalertd runs again when wiring.
type Alerting struct {
	PagerDutyURL        string        // full Events API v2 enqueue URL
	PagerDutyTimeout    time.Duration // bound on one request to PagerDuty
	PagerDutyRoutingKey string        // default routing key; secret, "" for none
	KeywordsKey         string        // where the rules' keyword set is published
	LeaseTTL            time.Duration // shard and outbox-sender lease lifetime
	EvalShards          int           // shard leases the rules are spread over
	EvalInterval        time.Duration // full evaluation tick
	PublicURL           string        // external base URL for links in pages
	SampleLines         int           // sample lines in a trigger
	OutboxBackoffMin    time.Duration // first retry delay
	OutboxBackoffMax    time.Duration // retry delay cap
	OutboxConcurrency   int           // sends in flight, one per dedup key
	APIMaxBodyBytes     int64         // bound on a request body of the alert API
}

// DefaultPagerDutyURL is PagerDuty's Events API v2 enqueue endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// alertingSettings follow the core settings in the table. They are set in
// this order, so a setter may read a setting listed before it.
var alertingSettings = []Setting{
	{Flag: "pagerduty-url", Env: "KEYALERT_PAGERDUTY_URL", Default: DefaultPagerDutyURL,
		Usage: "full PagerDuty Events API v2 enqueue URL (point it at `pdreceiver` for a demo)",
		set: func(c *Config, v string) error {
			if err := absoluteHTTPURL(v); err != nil {
				return err
			}
			c.Alerting.PagerDutyURL = v
			return nil
		}},
	{Flag: "pagerduty-timeout", Env: "KEYALERT_PAGERDUTY_TIMEOUT", Default: "10s",
		Usage: "bound on one request to PagerDuty (100ms–2m); a timeout is retried",
		set:   durationIn(func(c *Config) *time.Duration { return &c.Alerting.PagerDutyTimeout }, 100*time.Millisecond, 2*time.Minute)},
	{Flag: "pagerduty-routing-key", Env: "KEYALERT_PAGERDUTY_ROUTING_KEY", Default: "", Secret: true,
		Usage: "routing (integration) key for rules without their own: 32 letters or digits; never logged or returned (prefer the variable: flags show in `ps`)",
		set: func(c *Config, v string) error {
			if v != "" && !rules.ValidRoutingKey(v) {
				return fmt.Errorf("want %d letters or digits (a PagerDuty integration key)", rules.RoutingKeyLen)
			}
			c.Alerting.PagerDutyRoutingKey = v
			return nil
		}},
	{Flag: "keywords-key", Env: "KEYALERT_KEYWORDS_KEY", Default: keyword.DefaultSetKey,
		Usage: "Redis key where the union of enabled rules' keywords is published; the plugin's `Rules_Key`",
		set:   nonEmpty(func(c *Config) *string { return &c.Alerting.KeywordsKey })},
	{Flag: "lease-ttl", Env: "KEYALERT_LEASE_TTL", Default: "5s",
		Usage: "lifetime of the evaluation shard leases and the outbox sender lease (300ms–5m, renewed every third of it); a killed replica's work is taken over after about this long",
		set:   durationIn(func(c *Config) *time.Duration { return &c.Alerting.LeaseTTL }, 300*time.Millisecond, 5*time.Minute)},
	{Flag: "eval-shards", Env: "KEYALERT_EVAL_SHARDS", Default: "16",
		Usage: "rules are spread over this many shard leases, each replica holding a fair share (1–1024); must be equal on all replicas",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 1024)
			c.Alerting.EvalShards = int(n)
			return err
		}},
	{Flag: "eval-interval", Env: "KEYALERT_EVAL_INTERVAL", Default: "3s",
		Usage: "full evaluation tick (100ms–1m): resolution, absence, repeats, rule and silence reload; thresholds fire on applied batches without waiting for it",
		set:   durationIn(func(c *Config) *time.Duration { return &c.Alerting.EvalInterval }, 100*time.Millisecond, time.Minute)},
	{Flag: "public-url", Env: "KEYALERT_PUBLIC_URL", Default: "",
		Usage: "external base URL of the API; pages link to `<url>/api/v1/alerts/<id>` (empty: no link)",
		set: func(c *Config, v string) error {
			if v != "" {
				if err := absoluteHTTPURL(v); err != nil {
					return err
				}
			}
			c.Alerting.PublicURL = v
			return nil
		}},
	{Flag: "alert-sample-lines", Env: "KEYALERT_ALERT_SAMPLE_LINES", Default: "5",
		Usage: "sample lines in a trigger's `custom_details` (0–50)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 0, 50)
			c.Alerting.SampleLines = int(n)
			return err
		}},
	{Flag: "outbox-backoff-min", Env: "KEYALERT_OUTBOX_BACKOFF_MIN", Default: "1s",
		Usage: "first retry delay after a 429, 5xx or network error (10ms–1h); doubles per attempt, half of it random",
		set:   durationIn(func(c *Config) *time.Duration { return &c.Alerting.OutboxBackoffMin }, 10*time.Millisecond, time.Hour)},
	{Flag: "outbox-backoff-max", Env: "KEYALERT_OUTBOX_BACKOFF_MAX", Default: "5m",
		Usage: "retry delay cap (at least KEYALERT_OUTBOX_BACKOFF_MIN, at most 24h); a `Retry-After` from PagerDuty can exceed it",
		set: func(c *Config, v string) error {
			d, err := ParseDuration(v)
			if err != nil {
				return err
			}
			// KEYALERT_OUTBOX_BACKOFF_MIN comes before this one in the table.
			if d < c.Alerting.OutboxBackoffMin || d > 24*time.Hour {
				return fmt.Errorf("want between KEYALERT_OUTBOX_BACKOFF_MIN (%v) and 24h", c.Alerting.OutboxBackoffMin)
			}
			c.Alerting.OutboxBackoffMax = d
			return nil
		}},
	{Flag: "outbox-concurrency", Env: "KEYALERT_OUTBOX_CONCURRENCY", Default: "4",
		Usage: "PagerDuty requests in flight, each for a different dedup key (1–64)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, 64)
			c.Alerting.OutboxConcurrency = int(n)
			return err
		}},
	{Flag: "api-max-body-bytes", Env: "KEYALERT_API_MAX_BODY_BYTES", Default: "65536",
		Usage: "larger request bodies to the rules, silences and alerts API get 400 (1024–16777216)",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1024, 16<<20)
			c.Alerting.APIMaxBodyBytes = n
			return err
		}},
}

func absoluteHTTPURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an absolute http or https URL")
	}
	return nil
}
