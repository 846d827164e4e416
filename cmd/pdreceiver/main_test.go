package main

import (
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/pdreceiver"
)

func TestLineIsOneReadableLineWithoutTheRoutingKey(t *testing.T) {
	ev := pdreceiver.Event{
		Received: time.Date(2025, 3, 1, 12, 0, 1, 0, time.UTC), RoutingKey: "R0123456789abcdef0123456789ABCDE",
		Action: "trigger", DedupKey: "ka-a1",
		Payload: &pdreceiver.Payload{Summary: "Exception seen 37 times in 5m on web-12 (rule java exceptions)", Source: "web-12", Severity: "critical", Component: "app"},
	}
	got := Line(ev)
	want := `12:00:01.000 202 trigger     dedup=ka-a1 key=…BCDE severity=critical source=web-12 component=app "Exception seen 37 times in 5m on web-12 (rule java exceptions)"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if strings.Contains(got, "R0123456789") || strings.Contains(got, "\n") {
		t.Fatal("line leaks the routing key or spans lines")
	}
}
