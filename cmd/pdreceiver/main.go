// Command pdreceiver runs a PagerDuty Events API v2 stand-in for the demo and
// end-to-end tests: it validates every event, answers like PagerDuty and
// prints each event on one line.
//
//	pdreceiver -addr 127.0.0.1:8095 [-fail 3 -fail-status 500]
//
// Point keyalertd at it with KEYALERT_PAGERDUTY_URL=http://127.0.0.1:8095/v2/enqueue.
// GET /events lists what was accepted; POST /fail?n=N&status=S fails the next
// N events.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keyalert/keyalert/harness/pdreceiver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8095", "listen address")
	fail := flag.Int("fail", 0, "fail the first N events")
	failStatus := flag.Int("fail-status", 500, "status for failed events (500, 503, 429, ...)")
	flag.Parse()
	if err := run(*addr, *fail, *failStatus, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pdreceiver:", err)
		os.Exit(1)
	}
}

func run(addr string, fail, failStatus int, out io.Writer) error {
	s, err := pdreceiver.Listen(addr)
	if err != nil {
		return err
	}
	defer s.Close()
	s.OnEvent(func(ev pdreceiver.Event) { fmt.Fprintln(out, Line(ev)) })
	s.OnReject(func(r pdreceiver.Rejection) {
		fmt.Fprintf(out, "%s 400 rejected: %s\n", r.Received.Format("15:04:05.000"), strings.Join(r.Errors, "; "))
	})
	s.OnFail(func(status int) { fmt.Fprintf(out, "answered %d (programmed failure)\n", status) })
	if fail > 0 {
		s.FailNext(fail, failStatus)
	}
	fmt.Fprintf(out, "pdreceiver listening: %s\n", s.URL)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// Line renders an event in one readable line; the routing key shows only its
// last four characters.
func Line(ev pdreceiver.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s 202 %-11s dedup=%s key=…%s", ev.Received.Format("15:04:05.000"), ev.Action, ev.DedupKey, tail(ev.RoutingKey, 4))
	if p := ev.Payload; p != nil {
		fmt.Fprintf(&b, " severity=%s source=%s", p.Severity, p.Source)
		if p.Component != "" {
			fmt.Fprintf(&b, " component=%s", p.Component)
		}
		fmt.Fprintf(&b, " %q", p.Summary)
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
