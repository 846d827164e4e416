package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// One Fluent Bit collects three hosts (Hostname_Key) into one chunk; a
// "group by host" rule fires for each. Every page carries its own host's
// lines, newest first, and the busy host's thirty lines a minute leave the
// quiet hosts' lines alone.
func TestPagesPerHostCarryThatHostsSampleLines(t *testing.T) {
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	now := time.Now().UTC().Truncate(time.Minute)
	clk := &clock{t: now.Add(30 * time.Second)}
	srv := startInProc(t, alertEnv(rs.URL(), recv.URL), clk.Now)
	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "multi", rs.URL(), map[string]string{"Hostname_Key": "hostname", "Samples": "3"})
	createRule(t, srv.addr, `{"name": "errors per host", "keywords": ["ERROR"],
		"condition": {"type": "threshold", "count": 3, "window": "5m"}, "group_by": "host",
		"severity": "error", "pagerduty": {"routing_key": "`+routingKey+`"}}`)
	waitKeywords(t, h, mark, 1)

	var c []byte
	add := func(ts time.Time, host, line string) {
		var err error
		if c, err = chunk.AppendEvent(c, chunk.FormatV2, ts, chunk.EventTime, map[string]any{"log": line, "hostname": host}); err != nil {
			t.Fatal(err)
		}
	}
	for back := 2; back >= 0; back-- {
		ts := now.Add(-time.Duration(back)*time.Minute + 10*time.Second)
		add(ts, "web-1", fmt.Sprintf("ERROR web-1 at -%dm", back))
		for i := range 30 {
			add(ts, "busy", fmt.Sprintf("ERROR busy at -%dm #%d", back, i))
		}
		add(ts, "web-2", fmt.Sprintf("ERROR web-2 at -%dm", back))
	}
	flushOK(t, h, "multi", "app", c)

	got := map[string][]string{}
	for _, ev := range waitEvents(t, recv, 3, 15*time.Second) {
		if ev.Action != "trigger" || ev.Payload == nil {
			t.Fatalf("event %s, want 3 triggers:%s", ev.Action, describe(recv.Events()))
		}
		var cd customDetails
		if err := json.Unmarshal(ev.Payload.CustomDetails, &cd); err != nil {
			t.Fatalf("custom_details: %v", err)
		}
		got[ev.Payload.Source] = cd.SampleLines
	}
	// The plugin keeps each host's first 3 lines of the chunk: one a minute
	// for the quiet hosts, the first minute's first three for the busy one.
	want := map[string][]string{
		"web-1": {"ERROR web-1 at -0m", "ERROR web-1 at -1m", "ERROR web-1 at -2m"},
		"web-2": {"ERROR web-2 at -0m", "ERROR web-2 at -1m", "ERROR web-2 at -2m"},
		"busy":  {"ERROR busy at -2m #2", "ERROR busy at -2m #1", "ERROR busy at -2m #0"},
	}
	if len(got) != len(want) || !slices.EqualFunc(slices.Sorted(mapKeys(got)), slices.Sorted(mapKeys(want)), func(a, b string) bool {
		return slices.Equal(got[a], want[b])
	}) {
		t.Errorf("sample lines per page:\n got %q\nwant %q", got, want)
	}
	noRejections(t, recv)
}

func mapKeys(m map[string][]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
