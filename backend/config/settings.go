package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/ingest"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/notify/alertmanager"
	"github.com/keyalert/keyalert/backend/notify/msteams"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/notify/slack"
	"github.com/keyalert/keyalert/backend/notify/template"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/redisguard"
	"github.com/keyalert/keyalert/backend/rollup"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/session"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/duration"
	"github.com/keyalert/keyalert/pkg/redisurl"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
)

// settings is the table: one row per setting, in README order. Rows are
// set in this order, so a setter may read a setting listed before it.
var settings = []Setting{
	{Flag: "redis-url", Env: "KEYALERT_REDIS_URL", Default: "redis://127.0.0.1:6379/0", Secret: true,
		Usage: "Redis to consume from: `redis://[user:pass@]host:port/db[?option=value&…]`, `rediss://` for TLS; several `host:port` separated by commas mean a Redis Cluster; options: " +
			"`" + strings.Join(redisurl.Params, "`, `") + "`",
		set: func(c *Config, v string) error {
			u, err := redisurl.Parse(v)
			c.Redis, c.RedisURL = u, v
			return err
		}},
	{Flag: "allow-volatile-redis", Env: "KEYALERT_ALLOW_VOLATILE_REDIS", Default: "false", Bool: true,
		Usage: "start even when a Redis master has no persistence (neither `appendonly yes` nor `save` rules), with a warning; a restart of that Redis loses every count, rule, alert and pending page",
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("want true or false")
			}
			c.Guard.AllowVolatile = b
			return nil
		}},
	durationRow("redis-loss-unready", "KEYALERT_REDIS_LOSS_UNREADY", redisguard.DefaultUnreadyFor, time.Second, 24*time.Hour,
		"after keyalertd finds that Redis lost its data (its epoch keys vanished), /readyz answers 503 with the reason for this long, or until keyalertd restarts",
		func(c *Config) *time.Duration { return &c.Guard.UnreadyFor }),
	{Flag: "stream", Env: "KEYALERT_STREAM", Default: stream.DefaultStream,
		Usage: "stream key the plugin writes to; windows, dedup state and the dead-letter stream `{stream}:dead` share its cluster slot",
		set: func(c *Config, v string) error {
			if err := checkStreamKey(v); err != nil {
				return err
			}
			c.Ingest.Stream = v
			return nil
		}},
	text("group", "KEYALERT_GROUP", ingest.DefaultGroup,
		"consumer group; every keyalertd on one stream uses the same group (created if missing)",
		func(c *Config) *string { return &c.Ingest.Group }),
	{Flag: "consumer", Env: "KEYALERT_CONSUMER", Default: "",
		Usage: "this process's consumer name in the group (default `<hostname>-<pid>`); a fixed name lets a restarted process resume its own pending entries at once",
		set: func(c *Config, v string) error {
			if v == "" {
				h, err := os.Hostname()
				if err != nil || h == "" {
					h = "keyalertd"
				}
				v = fmt.Sprintf("%s-%d", h, os.Getpid())
			}
			c.Ingest.Consumer = v
			return nil
		}},
	{Flag: "stream-shards", Env: "KEYALERT_STREAM_SHARDS", Default: strconv.Itoa(ingest.DefaultShards),
		Bounds: "1–" + strconv.Itoa(streamshard.Max),
		Usage:  "stream shards the plugins spread their entries over, each host's in one (`<stream>#1`…, each in a cluster slot of its own, so a Redis Cluster shares the work over its masters); published in the keyword set, which the plugins follow within `Rules_Interval`; 1 is the unsharded stream. Replicas consume the shards under leases and every read sums them; the most shards ever set stays consumed and read (`ka:{<stream>}:shards`), so lowering it loses nothing",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 1, streamshard.Max)
			c.Ingest.Shards, c.Rules.StreamShards = int(n), int(n)
			return err
		}},
	intRow("wait-replicas", "KEYALERT_WAIT_REPLICAS", 0, 0, 16,
		"after applying a batch, WAIT until this many replicas of the stream's master have it (up to `KEYALERT_WAIT_TIMEOUT`) before alerts see its counts, so no page rests on counts that a failover to such a replica rolls back; a short count is logged and counted (`keyalert_ingest_wait_replicas_short_total`) and ingest goes on. 0 does not wait. Counting stays exact either way: entries whose apply a failover lost are applied again",
		func(c *Config) *int { return &c.Ingest.WaitReplicas }),
	durationRow("wait-timeout", "KEYALERT_WAIT_TIMEOUT", ingest.DefaultWaitTimeout, 10*time.Millisecond, time.Minute,
		"how long one WAIT of `KEYALERT_WAIT_REPLICAS` may take",
		func(c *Config) *time.Duration { return &c.Ingest.WaitTimeout }),
	text("listen", "KEYALERT_LISTEN", "127.0.0.1:8080", "HTTP listen address (API, health, metrics)",
		func(c *Config) *string { return &c.Listen }),
	// The upper bound only keeps the value inside time.Duration: replaying
	// years-old logs (tests, loghub) needs a retention that reaches them.
	durationRow("retention", "KEYALERT_RETENTION", window.DefaultRetention, 2*time.Minute, maxRetention,
		"how long per-minute counts are kept; older entries are acknowledged and not counted, and counts are read per minute this far back (further back per hour, see `KEYALERT_HOURLY_RETENTION`)",
		func(c *Config) *time.Duration { return &c.Ingest.Retention }, func(c *Config) *time.Duration { return &c.API.Retention },
		func(c *Config) *time.Duration { return &c.Rollup.Retention }),
	{Flag: "hourly-retention", Env: "KEYALERT_HOURLY_RETENTION", Default: formatDuration(window.DefaultHourlyRetention),
		Bounds: "at least `KEYALERT_RETENTION`, at most " + formatDuration(maxRetention),
		Usage:  "how long hourly counts are kept: minutes older than `KEYALERT_RETENTION` are rolled up per hour and series (keyword, host, tag, labels) and the counts API reads them as hours up to this far back; the default is raised to `KEYALERT_RETENTION` when that is longer; equal to it turns the hourly tier's reads off",
		set: func(c *Config, v string) error {
			d, err := parseDuration(v)
			if err != nil {
				return err
			}
			if d > maxRetention {
				return fmt.Errorf("want at most %s", formatDuration(maxRetention))
			}
			if d < c.Ingest.Retention {
				if v != formatDuration(window.DefaultHourlyRetention) {
					return fmt.Errorf("shorter than KEYALERT_RETENTION (%s): want at least that", formatDuration(c.Ingest.Retention))
				}
				d = c.Ingest.Retention
			}
			c.Rollup.HourlyRetention, c.API.HourlyRetention = d, d
			return nil
		}},
	durationRow("rollup-delay", "KEYALERT_ROLLUP_DELAY", rollup.DefaultDelay, time.Minute, 24*time.Hour,
		"an hour is first rolled up this long after it ends (keep it above `KEYALERT_EVAL_DELAY` and the usual lateness of agents); it is rolled again "+formatDuration(rollup.FinalLead)+" before its minutes expire, so later entries are included too",
		func(c *Config) *time.Duration { return &c.Rollup.Delay }),
	durationRow("rollup-interval", "KEYALERT_ROLLUP_INTERVAL", rollup.DefaultInterval, time.Second, time.Hour,
		"how often the replica holding the roll-up lease looks for hours to roll up",
		func(c *Config) *time.Duration { return &c.Rollup.Interval }),
	intRow("rollup-hours-per-pass", "KEYALERT_ROLLUP_HOURS_PER_PASS", rollup.DefaultHoursPerPass, 1, 1000,
		"hours (each with all its keywords) one roll-up pass rolls at most; after downtime the backlog is caught up at this many per `KEYALERT_ROLLUP_INTERVAL`",
		func(c *Config) *int { return &c.Rollup.HoursPerPass }),
	intRow("rollup-max-cells", "KEYALERT_ROLLUP_MAX_CELLS", window.DefaultRollMaxCells, 1000, 10000000,
		"most sums (cells, hosts, tags, label values: a name and a count each) the roller holds in memory while it rolls one keyword-hour (about 120 bytes of heap each: 30 MB at the default); past it, it adds them to the hour's keys in Redis and goes on, so its memory stays bounded however many hosts × minutes an hour has (an hour of more distinct sums costs Redis one increment per sum per flush)",
		func(c *Config) *int { return &c.Rollup.MaxCells }),
	{Flag: "api-tokens", Env: "KEYALERT_API_TOKENS", Default: "", Secret: true,
		Usage: "comma-separated bearer tokens accepted on /api/v1 (prefer the variable: flags show in `ps`)",
		set: func(c *Config, v string) error {
			c.API.Tokens = nil
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					c.API.Tokens = append(c.API.Tokens, t)
				}
			}
			return nil
		}},
	{Flag: "insecure-no-auth", Env: "KEYALERT_INSECURE_NO_AUTH", Default: "false", Bool: true,
		Usage: "serve /api/v1 without tokens; required to start when KEYALERT_API_TOKENS is empty",
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("want true or false")
			}
			c.API.InsecureNoAuth = b
			return nil
		}},
	durationRow("dedup-window", "KEYALERT_DEDUP_WINDOW", ingest.DefaultDedupWindow, time.Minute, 24*time.Hour,
		"how long a plugin chunk applied is remembered so that a retry of it (after a lost reply) is not counted again; a retry applied later than this after the first copy counts twice. The default covers Fluent Bit's longest wait between retries (`scheduler.cap`, 2000 s) with room for a consumer backlog",
		func(c *Config) *time.Duration { return &c.Ingest.DedupWindow }),
	intRow("dedup-max-per-producer", "KEYALERT_DEDUP_MAX_PER_PRODUCER", ingest.DefaultDedupMaxPerProducer, 100, 1000000,
		"most chunk ids remembered per plugin instance (about 35 bytes each); once one applies half of it within `KEYALERT_DEDUP_WINDOW`, its older half is dropped early, so its chunks are remembered for less than the window (for half of this in chunks)",
		func(c *Config) *int { return &c.Ingest.DedupMaxPerProducer }),
	durationRow("session-ttl", "KEYALERT_SESSION_TTL", session.DefaultTTL, time.Minute, 30*24*time.Hour,
		"lifetime of a web console session from sign-in (an HttpOnly cookie for one of the API tokens; sessions live in Redis, so every replica knows them and sign-out ends one everywhere)",
		func(c *Config) *time.Duration { return &c.Session.TTL }),
	intRow("session-max-per-token", "KEYALERT_SESSION_MAX_PER_TOKEN", session.DefaultMaxPerToken, 1, 10000,
		"most live web console sessions per API token; a sign-in past it signs out that token's oldest session (so Redis holds at most this many per token)",
		func(c *Config) *int { return &c.Session.MaxPerToken }),
	intRow("session-signin-rate", "KEYALERT_SESSION_SIGNIN_RATE", session.DefaultSignInsPerMinute, 1, 10000,
		"failed console sign-ins allowed per client address (the connection's peer; `X-Forwarded-For` is not trusted) in a clock minute; past it every sign-in from that address gets 429 with `Retry-After` until the minute ends. One counter per address, expiring with its minute",
		func(c *Config) *int { return &c.Session.SignInsPerMinute }),
	intRow("batch-size", "KEYALERT_BATCH_SIZE", ingest.DefaultBatchSize, 1, ingest.MaxBatchSize,
		"entries read and applied per batch; keyalertd holds at most 20 batches per stream shard it consumes reading by cursor (read ahead, in flight to Redis, applied and being reported), `KEYALERT_WORKERS` reading by the group", func(c *Config) *int { return &c.Ingest.BatchSize }),
	oneOf("ingest-read", "KEYALERT_INGEST_READ", ingest.ReadCursor,
		"how new entries are read: `cursor` reads after the consumer group's last-delivered id, which the apply script checks and moves with the counts (no pending entry, no XACK: ~20 % less Redis CPU per entry; one reader per stream or shard, under a lease); `group` by the group's delivery, each entry pending until acknowledged (several replicas share one stream). Entries pending in the group are claimed in both",
		func(c *Config) *string { return &c.Ingest.Read }, ingest.ReadCursor, ingest.ReadGroup),
	intRow("workers", "KEYALERT_WORKERS", ingest.DefaultWorkers, 1, 16,
		"reading by the group: concurrent read-apply loops, some preparing batches while Redis applies another's (reading by cursor, one reader plans ahead of one applier per stream shard)", func(c *Config) *int { return &c.Ingest.Workers }),
	durationRow("block", "KEYALERT_BLOCK", ingest.DefaultBlock, time.Millisecond, time.Minute,
		"how long one read waits for new entries; also bounds how long SIGTERM waits for a read",
		func(c *Config) *time.Duration { return &c.Ingest.Block }),
	durationRow("claim-idle", "KEYALERT_CLAIM_IDLE", ingest.DefaultClaimIdle, 100*time.Millisecond, 24*time.Hour,
		"an entry pending this long with another consumer (presumed dead) is claimed",
		func(c *Config) *time.Duration { return &c.Ingest.ClaimIdle }),
	durationRow("claim-interval", "KEYALERT_CLAIM_INTERVAL", ingest.DefaultClaimInterval, 50*time.Millisecond, time.Hour,
		"how often idle pending entries are looked for", func(c *Config) *time.Duration { return &c.Ingest.ClaimInterval }),
	intRow("max-deliveries", "KEYALERT_MAX_DELIVERIES", int64(ingest.DefaultMaxDeliveries), 1, 1000000,
		"an entry pending in the group and delivered more often than this goes to the dead-letter stream (reading by cursor, an entry that fails the apply script alone 3 times does)", func(c *Config) *int64 { return &c.Ingest.MaxDeliveries }),
	{Flag: "samples", Env: "KEYALERT_SAMPLES", Default: strconv.Itoa(ingest.DefaultSamples), Bounds: "0–1000",
		Usage: "sample lines kept per (keyword, host, tag, labels) series, each list expiring after the retention; 0 keeps none",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 0, 1000)
			c.Ingest.Samples, c.Ingest.NoSamples = int(n), n == 0
			return err
		}},
	intRow("max-series-per-minute", "KEYALERT_MAX_SERIES_PER_MINUTE", ingest.DefaultMaxSeriesPerMinute, 10, 1000000,
		"distinct series (host, tag, labels) one keyword may have in one minute: the counts of further series go to the overflow series (every part __other__; metric keyalert_ingest_overflow_total, a warning at most once a minute); a minute past 512 series keeps its counts in max(16, this / 400) pieces (at most 256), each small enough for Redis's compact hash encoding",
		func(c *Config) *int { return &c.Ingest.MaxSeriesPerMinute }),
	intRow("dead-maxlen", "KEYALERT_DEAD_MAXLEN", int64(ingest.DefaultDeadMaxLen), 1, 1<<40,
		"approximate length cap of the dead-letter stream", func(c *Config) *int64 { return &c.Ingest.DeadMaxLen }),
	oneOf("log-format", "KEYALERT_LOG_FORMAT", "json", "log format", func(c *Config) *string { return &c.LogFormat }, "json", "text"),
	oneOf("log-level", "KEYALERT_LOG_LEVEL", "info", "log level", func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error"),
	durationRow("shutdown-timeout", "KEYALERT_SHUTDOWN_TIMEOUT", ingest.DefaultDrainTimeout, time.Second, 10*time.Minute,
		"on SIGTERM, how long to wait for the batch in flight and open HTTP requests",
		func(c *Config) *time.Duration { return &c.ShutdownTimeout }, func(c *Config) *time.Duration { return &c.Ingest.DrainTimeout }),

	// The alerting half.
	{Flag: "pagerduty-url", Env: "KEYALERT_PAGERDUTY_URL", Default: pagerduty.DefaultURL,
		Usage: "full PagerDuty Events API v2 enqueue URL (point it at `pdreceiver` for a demo)",
		set: func(c *Config, v string) error {
			if err := absoluteHTTPURL(v); err != nil {
				return err
			}
			c.PagerDuty.URL = v
			return nil
		}},
	durationRow("pagerduty-timeout", "KEYALERT_PAGERDUTY_TIMEOUT", pagerduty.DefaultTimeout, 100*time.Millisecond, 2*time.Minute,
		"bound on one request to PagerDuty; a timeout is retried", func(c *Config) *time.Duration { return &c.PagerDuty.Timeout }),
	{Flag: "pagerduty-routing-key", Env: "KEYALERT_PAGERDUTY_ROUTING_KEY", Default: "", Secret: true,
		Usage: "routing (integration) key for rules without their own: 32 letters or digits; never logged or returned (prefer the variable: flags show in `ps`)",
		set: func(c *Config, v string) error {
			if v != "" && !rules.ValidRoutingKey(v) {
				return fmt.Errorf("want %d letters or digits (a PagerDuty integration key)", rules.RoutingKeyLen)
			}
			c.DefaultRoutingKey = rules.Secret(v)
			c.API.DefaultRoutingKey = v != ""
			return nil
		}},
	text("keywords-key", "KEYALERT_KEYWORDS_KEY", rules.DefaultKeywordsKey,
		"Redis key where the union of enabled rules' keywords is published; the plugin's `Rules_Key`",
		func(c *Config) *string { return &c.Rules.KeywordsKey }),
	intRow("max-rules", "KEYALERT_MAX_RULES", rules.DefaultMaxRules, 1, 100000,
		"rules (enabled or not) that may be stored; creating one more gets 400",
		func(c *Config) *int { return &c.Rules.Limits.MaxRules }),
	intRow("max-time-intervals", "KEYALERT_MAX_TIME_INTERVALS", timeinterval.DefaultMaxIntervals, 1, 10000,
		"named time intervals (mute windows) that may be stored; creating one more gets 400",
		func(c *Config) *int { return &c.TimeIntervals.Max }),
	intRow("max-rule-keywords", "KEYALERT_MAX_RULE_KEYWORDS", rules.DefaultMaxRuleKeywords, 1, 1000,
		"keywords one rule may list; more get 400",
		func(c *Config) *int { return &c.Rules.Limits.MaxRuleKeywords }),
	intRow("max-published-keywords", "KEYALERT_MAX_PUBLISHED_KEYWORDS", rules.DefaultMaxPublishedKeywords, 1, 1000000,
		"distinct keywords of all enabled rules, the set every agent downloads and compiles; a rule write that would add keywords beyond it gets 400",
		func(c *Config) *int { return &c.Rules.Limits.MaxPublishedKeywords }),
	intRow("max-keyword-bytes", "KEYALERT_MAX_KEYWORD_BYTES", rules.DefaultMaxKeywordBytes, 1, rules.MaxMaxKeywordBytes,
		"bytes of one keyword in a rule; longer ones get 400 (the upper bound is what plugins accept)",
		func(c *Config) *int { return &c.Rules.Limits.MaxKeywordBytes }),
	durationRow("lease-ttl", "KEYALERT_LEASE_TTL", lease.DefaultTTL, 300*time.Millisecond, 5*time.Minute,
		"lifetime of the evaluation shard leases and the outbox sender lease, renewed every third of it; a killed replica's work is taken over after about this long",
		func(c *Config) *time.Duration { return &c.Lease.TTL }),
	intRow("eval-shards", "KEYALERT_EVAL_SHARDS", lease.DefaultShards, 1, 1024,
		"rules are spread over this many shard leases, each replica holding a fair share; must be equal on all replicas",
		func(c *Config) *int { return &c.Lease.Shards }),
	durationRow("eval-interval", "KEYALERT_EVAL_INTERVAL", alert.DefaultEvalInterval, 100*time.Millisecond, time.Minute,
		"full evaluation tick: resolution, absence, repeats, rule and silence reload; thresholds fire on applied batches without waiting for it",
		func(c *Config) *time.Duration { return &c.Alert.EvalInterval }),
	durationRow("eval-tick-budget", "KEYALERT_EVAL_TICK_BUDGET", alert.DefaultTickBudget, 10*time.Millisecond, 10*time.Second,
		"time one evaluation spends judging rules; when a new minute moves every window at once and judging them all takes longer, the rest are judged by the next ticks (urgent ones and the longest waiting first; gauge `keyalert_alert_rules_deferred`), so no tick stalls keyalertd",
		func(c *Config) *time.Duration { return &c.Alert.TickBudget }),
	{Flag: "eval-delay", Env: "KEYALERT_EVAL_DELAY", Default: formatDuration(alert.DefaultEvalDelay),
		Bounds: "0s–" + formatDuration(rules.MaxEvalDelay) + ", whole minutes",
		Usage:  "absence and alert resolution are judged on complete minutes ending this long before the last complete one, so late entries and agents whose clock runs up to about this (plus an absence window) behind cause no false page; a threshold still fires on the current minute; a rule's `eval_delay` overrides it",
		set: func(c *Config, v string) error {
			d, err := duration.Parse(v) // 0 is allowed: no delay beyond the complete minute
			if err != nil {
				return err
			}
			if d < 0 || d > rules.MaxEvalDelay || d%time.Minute != 0 {
				return fmt.Errorf("want whole minutes between 0s and %s", formatDuration(rules.MaxEvalDelay))
			}
			c.Alert.EvalDelay, c.Alert.NoEvalDelay = d, d == 0
			return nil
		}},
	durationRow("lateness-horizon", "KEYALERT_LATENESS_HORIZON", alert.DefaultLatenessHorizon, rules.MaxEvalDelay, 24*time.Hour,
		"entries whose minute was already judged (they came after `eval_delay`) re-judge the windows they belong to, and a burst that would have paged pages once, marked late with its event time, if the minute ended at most this long ago; older ones are counted but never judged, counted in `keyalert_late_entries_past_horizon_total` and logged (warn, once a minute); at least the largest `eval_delay`",
		func(c *Config) *time.Duration { return &c.Alert.LatenessHorizon }),
	intRow("max-rule-groups", "KEYALERT_MAX_RULE_GROUPS", alert.DefaultMaxGroups, 1, 1000000,
		"groups (hosts or tags) each absence rule remembers, and pages for when they fall silent, until `forget_after`; a new group beyond it is not watched, logged (warn) and counted in `keyalert_alert_groups_dropped_total`",
		func(c *Config) *int { return &c.Alert.MaxGroups }),
	{Flag: "public-url", Env: "KEYALERT_PUBLIC_URL", Default: "",
		Usage: "external base URL of the API; pages link to `<url>/api/v1/alerts/<id>` (empty: no link)",
		set: func(c *Config, v string) error {
			if v != "" {
				if err := absoluteHTTPURL(v); err != nil {
					return err
				}
			}
			c.Alert.PublicURL = v
			return nil
		}},
	{Flag: "alert-sample-lines", Env: "KEYALERT_ALERT_SAMPLE_LINES", Default: strconv.Itoa(alert.DefaultSampleLines), Bounds: "0–50",
		Usage: "sample lines in a notification (PagerDuty `custom_details`); 0 sends none",
		set: func(c *Config, v string) error {
			n, err := intIn(v, 0, 50)
			c.Alert.SampleLines, c.Alert.NoSampleLines = int(n), n == 0
			return err
		}},
	durationRow("resolved-alert-ttl", "KEYALERT_RESOLVED_ALERT_TTL", alert.DefaultResolvedTTL, time.Minute, 3650*24*time.Hour,
		"a resolved alert is kept (GET /api/v1/alerts) this long after its last change, then expires and its id is pruned from the index",
		func(c *Config) *time.Duration { return &c.Alerts.ResolvedTTL }),
	intRow("alert-history", "KEYALERT_ALERT_HISTORY", alert.DefaultHistory, 1, alert.MaxHistory,
		"history entries kept per alert; older ones are dropped and counted in the alert's `history_dropped`",
		func(c *Config) *int { return &c.Alerts.History }),
	durationRow("outbox-backoff-min", "KEYALERT_OUTBOX_BACKOFF_MIN", outbox.DefaultBackoffMin, 10*time.Millisecond, time.Hour,
		"first retry delay after a 429, 5xx or network error; doubles per attempt, half of it random",
		func(c *Config) *time.Duration { return &c.Outbox.BackoffMin }),
	{Flag: "outbox-backoff-max", Env: "KEYALERT_OUTBOX_BACKOFF_MAX", Default: formatDuration(outbox.DefaultBackoffMax),
		Bounds: "KEYALERT_OUTBOX_BACKOFF_MIN–24h",
		Usage:  "retry delay cap; a `Retry-After` from the receiver can exceed it",
		set: func(c *Config, v string) error {
			d, err := parseDuration(v)
			if err != nil {
				return err
			}
			// KEYALERT_OUTBOX_BACKOFF_MIN comes before this one in the table.
			if d < c.Outbox.BackoffMin || d > 24*time.Hour {
				return fmt.Errorf("want between KEYALERT_OUTBOX_BACKOFF_MIN (%v) and 24h", c.Outbox.BackoffMin)
			}
			c.Outbox.BackoffMax = d
			return nil
		}},
	intRow("outbox-concurrency", "KEYALERT_OUTBOX_CONCURRENCY", outbox.DefaultConcurrency, 1, 64,
		"notifications in flight per receiver (per integration for rules without receivers), each for a different alert, so a slow receiver holds only its own", func(c *Config) *int { return &c.Outbox.Concurrency }),
	intRow("outbox-failed-max", "KEYALERT_OUTBOX_FAILED_MAX", outbox.DefaultFailedMax, 1, 1000000,
		"rejected notifications kept, with their bodies, for GET /api/v1/outbox and a manual replay; the oldest are dropped beyond it",
		func(c *Config) *int { return &c.Outbox.FailedMax }),
	durationRow("outbox-failed-ttl", "KEYALERT_OUTBOX_FAILED_TTL", outbox.DefaultFailedTTL, time.Minute, 365*24*time.Hour,
		"how long a rejected notification is kept",
		func(c *Config) *time.Duration { return &c.Outbox.FailedTTL }),
	durationRow("outbox-resend-after", "KEYALERT_OUTBOX_RESEND_AFTER", outbox.DefaultResendAfter, time.Second, time.Hour,
		"after a send whose outcome is unknown (a timeout, a connection lost) or a restart with messages pending, the alert's final event is sent to that receiver once more this long after, so a request the receiver processes late cannot leave it in an older state (not to Slack or Teams, where it would post a duplicate); longer than the receiver may take to process an abandoned request",
		func(c *Config) *time.Duration { return &c.Outbox.ResendAfter }),
	intRow("pagerduty-events-per-minute", "KEYALERT_PAGERDUTY_EVENTS_PER_MINUTE", pagerduty.DefaultEventsPerMinute, 1, 1000000,
		"events sent per minute to one routing key at most (PagerDuty answers 429 beyond about 120): a storm is paced, not rejected",
		func(c *Config) *int { return &c.PagerDuty.EventsPerMinute }),
	intRow("max-receivers", "KEYALERT_MAX_RECEIVERS", receiver.DefaultMaxReceivers, 1, 10000,
		"named receivers (POST /api/v1/receivers) that may be stored; creating one more gets 400",
		func(c *Config) *int { return &c.Receivers.MaxReceivers }),
	{Flag: "default-receivers", Env: "KEYALERT_DEFAULT_RECEIVERS", Default: "",
		Usage: "comma-separated receiver names that take the alerts of rules naming no `receivers`; empty: those rules page PagerDuty with their routing key or `KEYALERT_PAGERDUTY_ROUTING_KEY`",
		set: func(c *Config, v string) error {
			c.Outbox.DefaultReceivers = nil
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n == "" {
					continue
				} else if !rules.ReceiverName.MatchString(n) {
					return fmt.Errorf("%q: want 1 to 63 letters, digits, '.', '_' or '-'", n)
				}
				c.Outbox.DefaultReceivers = append(c.Outbox.DefaultReceivers, n)
			}
			if len(c.Outbox.DefaultReceivers) > 0 {
				c.API.DefaultRoutingKey = true // rules may name neither
			}
			return nil
		}},
	intRow("receiver-template-max-bytes", "KEYALERT_RECEIVER_TEMPLATE_MAX_BYTES", template.DefaultMaxBytes, 64, 65536,
		"size of one receiver template (`template.title`, `template.body`); a larger one gets 400",
		func(c *Config) *int { return &c.Receivers.TemplateMaxBytes }),
	durationRow("receiver-timeout", "KEYALERT_RECEIVER_TIMEOUT", slack.DefaultTimeout, 100*time.Millisecond, 2*time.Minute,
		"bound on one request to an Alertmanager, Slack, Teams or webhook receiver; a timeout is retried",
		func(c *Config) *time.Duration { return &c.Receivers.Alertmanager.Timeout }, func(c *Config) *time.Duration { return &c.Receivers.Slack.Timeout },
		func(c *Config) *time.Duration { return &c.Receivers.Teams.Timeout }, func(c *Config) *time.Duration { return &c.Receivers.Webhook.Timeout }),
	intRow("slack-messages-per-minute", "KEYALERT_SLACK_MESSAGES_PER_MINUTE", slack.DefaultMessagesPerMinute, 1, 100000,
		"messages posted per minute to one Slack webhook at most (Slack allows about one per second)",
		func(c *Config) *int { return &c.Receivers.Slack.MessagesPerMinute }),
	intRow("msteams-messages-per-minute", "KEYALERT_MSTEAMS_MESSAGES_PER_MINUTE", msteams.DefaultMessagesPerMinute, 1, 100000,
		"messages posted per minute to one Teams Workflows webhook at most",
		func(c *Config) *int { return &c.Receivers.Teams.MessagesPerMinute }),
	durationRow("alertmanager-refresh", "KEYALERT_ALERTMANAGER_REFRESH", alertmanager.DefaultRefresh, time.Second, time.Hour,
		"how often a firing alert is sent again to Alertmanager receivers; keep it well under Alertmanager's `resolve_timeout` (5m by default)",
		func(c *Config) *time.Duration { return &c.Receivers.Alertmanager.Refresh }),
	intRow("api-max-body-bytes", "KEYALERT_API_MAX_BODY_BYTES", int64(api.DefaultMaxBodyBytes), 1024, 16<<20,
		"larger request bodies to the rules, silences and alerts API get 413", func(c *Config) *int64 { return &c.API.MaxBodyBytes }),
	durationRow("api-timeout", "KEYALERT_API_TIMEOUT", api.DefaultRequestTimeout, 100*time.Millisecond, time.Minute,
		"deadline of one API request; a Redis that does not answer within it gets 503",
		func(c *Config) *time.Duration { return &c.API.RequestTimeout }),
	intRow("max-cells-per-query", "KEYALERT_MAX_CELLS_PER_QUERY", int64(api.DefaultMaxCellsPerQuery), 1000, 100_000_000,
		"Redis entries one counts or counts/top call may sum (per minute: the hosts or tags of a top, the cells of a minute counted before rollups); over it the call gets 400 naming this limit",
		func(c *Config) *int64 { return &c.API.MaxCellsPerQuery }),
	intRow("max-concurrent-queries", "KEYALERT_MAX_CONCURRENT_QUERIES", api.DefaultMaxConcurrentQueries, 1, 256,
		"counts and counts/top calls served at once; more get 503 with Retry-After",
		func(c *Config) *int { return &c.API.MaxConcurrentQueries }),
}

// maxRetention is about 270 years, near the largest time.Duration.
const maxRetention = 100000 * 24 * time.Hour

func text(flag, env, def, usage string, field func(*Config) *string) Setting {
	return Setting{Flag: flag, Env: env, Default: def, Usage: usage, set: func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("must not be empty")
		}
		*field(c) = v
		return nil
	}}
}

func oneOf(flag, env, def, usage string, field func(*Config) *string, allowed ...string) Setting {
	return Setting{Flag: flag, Env: env, Default: def, Usage: usage, Bounds: "`" + strings.Join(allowed, "`, `") + "`",
		set: func(c *Config, v string) error {
			for _, a := range allowed {
				if strings.EqualFold(v, a) {
					*field(c) = a
					return nil
				}
			}
			return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
		}}
}

// intRow is an integer setting in [lo, hi].
func intRow[T ~int | ~int64](flag, env string, def, lo, hi T, usage string, field func(*Config) *T) Setting {
	return Setting{Flag: flag, Env: env, Default: strconv.FormatInt(int64(def), 10),
		Bounds: fmt.Sprintf("%d–%d", lo, hi), Usage: usage,
		set: func(c *Config, v string) error {
			n, err := intIn(v, int64(lo), int64(hi))
			if err != nil {
				return err
			}
			*field(c) = T(n)
			return nil
		}}
}

// durationRow is a duration setting in [lo, hi], stored into every field
// given (one setting can bound two packages, like the retention).
func durationRow(flag, env string, def, lo, hi time.Duration, usage string, fields ...func(*Config) *time.Duration) Setting {
	return Setting{Flag: flag, Env: env, Default: formatDuration(def),
		Bounds: formatDuration(lo) + "–" + formatDuration(hi), Usage: usage,
		set: func(c *Config, v string) error {
			d, err := parseDuration(v)
			if err != nil {
				return err
			}
			if d < lo || d > hi {
				return fmt.Errorf("want between %s and %s", formatDuration(lo), formatDuration(hi))
			}
			for _, f := range fields {
				*f(c) = d
			}
			return nil
		}}
}

// parseDuration is the one duration grammar (pkg/duration), positive only.
func parseDuration(v string) (time.Duration, error) {
	d, err := duration.Parse(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, errors.New("want a positive duration")
	}
	return d, nil
}

// formatDuration writes whole days as days ("7d"), so the docs read as
// people write retention; anything else as duration.Format does.
func formatDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return duration.Format(d)
}

func intIn(v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New("want an integer")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("want between %d and %d", lo, hi)
	}
	return n, nil
}

func absoluteHTTPURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an absolute http or https URL")
	}
	return nil
}

// checkStreamKey rejects stream names whose derived keys would not share the
// stream's cluster slot (a "{}" with nothing inside, or a stray brace).
func checkStreamKey(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	if clusterTag(v) != clusterTag(stream.HashTag(v)+":x") {
		return errors.New("its keys could not share one cluster slot: use a plain name or one hash tag like {keyalert}:events")
	}
	return nil
}

// clusterTag is the part of key that Redis Cluster hashes: the text between
// the first '{' and the next '}' if that is non-empty, else the whole key.
func clusterTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}
