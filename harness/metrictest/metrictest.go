// Package metrictest reads a Prometheus registry the way the metric tests
// of every package check it: by name, type and label names.
package metrictest

import (
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Shapes gathers g and returns, per metric name, its type and sorted label
// names, e.g. "COUNTER event,integration,result" (a label-less metric ends in
// a space). Metrics with no sample yet are left out by Gather.
func Shapes(t testing.TB, g prometheus.Gatherer) map[string]string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		sort.Strings(labels)
		got[mf.GetName()] = mf.GetType().String() + " " + strings.Join(labels, ",")
	}
	return got
}
