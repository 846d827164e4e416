package ingest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// With KEYALERT_WAIT_REPLICAS the apply is followed by WAIT: with the
// replicas there, batches reach OnApplied once they have them; without, the
// short count is counted and ingest goes on (the batch is applied on the
// master already), so counting never stalls on replication.
func TestWaitReplicasAfterApply(t *testing.T) {
	tests := []struct {
		name      string
		cluster   bool
		wantShort bool
	}{
		{"a master without replica: counted, noted short", false, true},
		{"a cluster master with its replica: counted, not short", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			if tt.cluster {
				o.Client = redistest.StartClusterWith(t, redistest.ClusterOptions{Masters: 1, Replicas: 1}).Client()
			} else {
				o.Client = redistest.Start(t).Client()
			}
			reg := prometheus.NewRegistry()
			var applied atomic.Int64
			o.Registerer, o.WaitReplicas, o.WaitTimeout = reg, 1, 100*time.Millisecond
			o.OnApplied = func(_ context.Context, es []stream.Entry) { applied.Add(int64(len(es))) }
			start(t, o)
			minute := nowMinute()
			for i := 0; i < 20; i++ {
				xadd(t, o.Client, entry(i, "err", "h", "t", minute, 2))
			}
			drained(t, o.Client, DefaultGroup)
			if got := totals(t, o.Client, []string{keyword.Spec{Text: "err"}.ID()}, minute, minute+60)[series{"substring:err", "h", "t"}]; got != 40 {
				t.Errorf("counted %d, want 40", got)
			}
			// OnApplied follows the WAIT, which follows the acknowledgement.
			for deadline := time.Now().Add(5 * time.Second); applied.Load() < 20 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if applied.Load() != 20 {
				t.Errorf("OnApplied saw %d entries, want 20", applied.Load())
			}
			short := testutil.ToFloat64(mustCounter(t, reg, "keyalert_ingest_wait_replicas_short_total"))
			if (short > 0) != tt.wantShort {
				t.Errorf("wait short %v times, want some: %v", short, tt.wantShort)
			}
		})
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "copy"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}
