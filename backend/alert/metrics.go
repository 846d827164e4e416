package alert

import (
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	alerts       *prometheus.GaugeVec
	evaluations  prometheus.Counter
	failures     prometheus.Counter
	lastDuration prometheus.Gauge
	deferred     prometheus.Gauge
	episodes     prometheus.Counter
	resolutions  prometheus.Counter
	// Group memory of absence rules.
	groupsDropped   prometheus.Counter
	groupsForgotten prometheus.Counter
	// Late data.
	lateTriggers    prometheus.Counter
	latePastHorizon prometheus.Counter
}

// newMetrics creates the engine's metrics and registers them with reg
// unless it is nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keyalert_alerts",
			Help: "Pending and active alerts by state (pending, firing, acknowledged) of the rules in the evaluation shards this replica owns, " +
				"as of its last evaluation (changes made through the API show after the next tick). Each alert is " +
				"counted by one replica only, so sum over replicas for the total; no Redis read at scrape time.",
		}, []string{"state"}),
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_alert_evaluations_total",
			Help: "Full evaluation ticks run by this replica.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_alert_evaluation_failures_total",
			Help: "Evaluations (ticks or applied batches) that failed, mostly Redis errors.",
		}),
		lastDuration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyalert_alert_last_evaluation_duration_seconds",
			Help: "Wall time of this replica's last full evaluation tick.",
		}),
		deferred: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyalert_alert_rules_deferred",
			Help: "Rules the last evaluation left to the next ones because it had spent KEYALERT_EVAL_TICK_BUDGET (a new minute moves every window at once); non-zero for a few ticks a minute means the owned rules' cells take longer than the budget to judge.",
		}),
		episodes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_alert_episodes_total",
			Help: "Alert episodes (an alert starting to fire) started by this replica's evaluation.",
		}),
		resolutions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_alert_resolutions_total",
			Help: "Alerts resolved by this replica's evaluation (not by hand through the API).",
		}),
		groupsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_alert_groups_dropped_total",
			Help: "Groups seen by an absence rule but not remembered (nor watched for absence) because the rule already remembers KEYALERT_MAX_RULE_GROUPS; counted per evaluation that saw them.",
		}),
		groupsForgotten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_alert_groups_forgotten_total",
			Help: "Groups absence rules forgot after forget_after without a count (a firing alert of the group resolves).",
		}),
		lateTriggers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_alert_late_triggers_total",
			Help: "Alerts opened by late entries (after eval_delay, within KEYALERT_LATENESS_HORIZON) re-judging a settled window: pages marked late, dated at their event time.",
		}),
		latePastHorizon: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_late_entries_past_horizon_total",
			Help: "Applied entries whose minute ended more than KEYALERT_LATENESS_HORIZON before they were applied: counted into their windows, never judged (by the replica whose ingest applied them).",
		}),
	}
	// Every state exists from the start: a dashboard sees 0, not no data.
	m.alerts.WithLabelValues(string(Pending))
	m.alerts.WithLabelValues(string(Firing))
	m.alerts.WithLabelValues(string(Acknowledged))
	if reg != nil {
		reg.MustRegister(m.alerts, m.evaluations, m.failures, m.lastDuration, m.deferred, m.episodes, m.resolutions, m.groupsDropped, m.groupsForgotten,
			m.lateTriggers, m.latePastHorizon)
	}
	return m
}

// MaxSummaryChars bounds an alert's one-line summary: PagerDuty's limit,
// the tightest of the receivers.
const MaxSummaryChars = 1024

// truncate cuts s to at most n characters (runes), ending with "…" when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n-1]) + "…"
}
