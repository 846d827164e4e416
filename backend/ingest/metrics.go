package ingest

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applied    prometheus.Counter
	batches    prometheus.Counter
	duplicates prometheus.Counter
	expired    prometheus.Counter
	claimed    prometheus.Counter
	stale      prometheus.Counter
	overflow   prometheus.Counter
	dead       *prometheus.CounterVec
	errors     *prometheus.CounterVec
	lag        prometheus.GaugeFunc
	pending    prometheus.GaugeFunc
	applySecs  prometheus.Histogram
	delaySecs  prometheus.Histogram
	waitShort  prometheus.Counter
	trimmed    *prometheus.CounterVec

	// The gauges sum the values of the consumers sharing these metrics
	// (the shards a Fleet consumes); a consumer that stops reports 0.
	mu     sync.Mutex
	gauges map[*Consumer]*[2]float64 // lag, pending
}

func (m *metrics) setGauges(c *Consumer, lag, pending float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gauges == nil {
		m.gauges = map[*Consumer]*[2]float64{}
	}
	m.gauges[c] = &[2]float64{lag, pending}
}

func (m *metrics) gauge(i int) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum float64
	for _, v := range m.gauges {
		sum += v[i]
	}
	return sum
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_ingest_entries_applied_total",
			Help: "Stream entries counted into windows (each exactly once).",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_ingest_batches_total",
			Help: "Batches committed by the apply script.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_ingest_duplicates_total",
			Help: "Entries acknowledged without counting because their dedup id was applied before.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_ingest_expired_total",
			Help: "Entries acknowledged without counting because their minute is older than the retention.",
		}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_ingest_claimed_total",
			Help: "Idle pending entries taken over from other consumers.",
		}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_ingest_stale_total",
			Help: "Entries not applied because they were no longer pending for this consumer: another consumer claimed them while it stalled.",
		}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyalert_ingest_overflow_total",
			Help: "Entries counted in a keyword's overflow series (every part __other__) because the keyword had KEYALERT_MAX_SERIES_PER_MINUTE distinct series in the minute already.",
		}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyalert_ingest_dead_lettered_total",
			Help: "Entries moved to the dead-letter stream, by reason.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyalert_ingest_errors_total",
			Help: "Redis operations of the consumer that failed (retried), by operation.",
		}, []string{"op"}),
		applySecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keyalert_ingest_apply_seconds",
			Help:    "Time to run the apply script for one batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		delaySecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keyalert_ingest_entry_delay_seconds",
			Help:    "From the plugin writing an entry (sent_ms) to its count being committed.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
		}),
	}
	m.lag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyalert_ingest_consumer_lag",
		Help: "Entries in the stream not yet delivered to the consumer group (XINFO GROUPS lag; -1 unknown); with stream shards, summed over the shards this process consumes.",
	}, func() float64 { return m.gauge(0) })
	m.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyalert_ingest_consumer_pending",
		Help: "Entries delivered to the group and not yet acknowledged; with stream shards, summed over the shards this process consumes.",
	}, func() float64 { return m.gauge(1) })
	m.waitShort = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyalert_ingest_wait_replicas_short_total",
		Help: "Applied batches that fewer replicas than KEYALERT_WAIT_REPLICAS acknowledged within KEYALERT_WAIT_TIMEOUT (WAIT).",
	})
	m.trimmed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyalert_ingest_trimmed_unread_total",
		Help: "Stream entries removed from the stream (the plugin's XADD MAXLEN trimming) before the consumer group read them: their counts are lost. Exact unless entries were XDELed from the stream; counted by whichever replica checks first.",
	}, []string{"stream"})
	for _, r := range []string{ReasonParse, ReasonDeliveries, ReasonDeleted, ReasonFuture, ReasonApply} {
		m.dead.WithLabelValues(r)
	}
	reg.MustRegister(m.applied, m.batches, m.duplicates, m.expired, m.claimed, m.stale, m.overflow, m.dead, m.errors,
		m.lag, m.pending, m.applySecs, m.delaySecs, m.waitShort, m.trimmed)
	return m
}
