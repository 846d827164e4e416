package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

const stream = `{"Action":"start","Package":"example.com/a"}
{"Action":"run","Package":"example.com/a","Test":"TestOK"}
{"Action":"output","Package":"example.com/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"pass","Package":"example.com/a","Test":"TestOK","Elapsed":0.1}
{"Action":"run","Package":"example.com/a","Test":"TestSamples"}
{"Action":"output","Package":"example.com/a","Test":"TestSamples","Output":"=== RUN   TestSamples\n"}
{"Action":"output","Package":"example.com/a","Test":"TestSamples","Output":"    x_test.go:9: loghub samples not found in ../shared/loghub\n"}
{"Action":"output","Package":"example.com/a","Test":"TestSamples","Output":"--- SKIP: TestSamples (0.00s)\n"}
{"Action":"skip","Package":"example.com/a","Test":"TestSamples"}
{"Action":"pass","Package":"example.com/a","Elapsed":1.5}
{"Action":"start","Package":"example.com/b"}
{"Action":"output","Package":"example.com/b","Test":"TestBad","Output":"    b_test.go:3: got 1, want 2\n"}
{"Action":"fail","Package":"example.com/b","Test":"TestBad"}
{"Action":"fail","Package":"example.com/b","Elapsed":0.2}
{"Action":"start","Package":"example.com/c"}
{"Action":"skip","Package":"example.com/c","Elapsed":0}
`

func TestSummaryShowsPackagesFailuresAndSkipReasons(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out, time.Now)
	s.read(strings.NewReader(stream))
	if !s.finish() {
		t.Error("finish: want failed")
	}
	for _, want := range []string{
		"ok   example.com/a", "1 passed, 1 skipped",
		"--- FAIL example.com/b TestBad", "got 1, want 2", "FAIL example.com/b",
		"example.com/c", "no tests",
		"1 skipped tests:", "example.com/a TestSamples: x_test.go:9: loghub samples not found in ../shared/loghub",
		"FAILED after", "example.com/b TestBad",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHeartbeatNamesTheRunningPackages(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	s := newSummary(&out, func() time.Time { return now })
	s.event(event{Action: "start", Package: "example.com/slow"})
	now = now.Add(45 * time.Second)
	s.printRunning()
	if !strings.Contains(out.String(), "running example.com/slow (45s)") {
		t.Errorf("heartbeat: %s", out.String())
	}
}
