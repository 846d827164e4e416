package buildinfo

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterExposesOneBuildInfoSampleOfValueOne(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "keyalert_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one keyalert_build_info sample", mfs)
	}
	m := mfs[0].GetMetric()[0]
	if m.GetGauge().GetValue() != 1 {
		t.Errorf("value %v, want 1", m.GetGauge().GetValue())
	}
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	want := Read()
	if len(labels) != 3 || labels["version"] != want.Version || labels["revision"] != want.Revision || labels["goversion"] != want.GoVersion {
		t.Errorf("labels %v, want version, revision and goversion of %+v", labels, want)
	}
	if want.GoVersion != runtime.Version() || Version() == "" {
		t.Errorf("build info %+v: want the running Go version and a version", want)
	}
}

func TestRegisterTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg); err == nil {
		t.Fatal("second Register: want an error")
	}
}
