package receiver_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/notify/pagerduty"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/harness/amtest"
	"github.com/keyalert/keyalert/harness/notifyreceiver"
	"github.com/keyalert/keyalert/harness/pdreceiver"
)

// BenchmarkDeliveryLatency measures stored in the outbox → received by a
// local stand-in, one alert at a time, per receiver type, and for a Slack
// receiver while another receiver of the same alerts answers 500. Reported:
// p50 and p99 in ms. Figures and the command: bench/notify.md.
func BenchmarkDeliveryLatency(b *testing.B) {
	for _, typ := range []string{"pagerduty", "alertmanager", "slack", "msteams", "webhook", "slack beside a failing one"} {
		b.Run(typ, func(b *testing.B) {
			w := newWorldTB(b)
			nr := notifyreceiver.Start(b, secret)
			pd := pdreceiver.Start(b)
			w.store = receiver.NewStore(w.rdb.Client(), receiver.Options{
				PagerDuty: pagerduty.NewClient(pagerduty.Options{URL: pd.URL, EventsPerMinute: 1 << 20}, nil),
				Slack:     slackOpts(), Teams: teamsOpts()}, nil)
			w.opt.Receivers = w.store
			names := []string{"r"}
			var count func() int
			switch typ {
			case "pagerduty":
				w.createTB(b, `{"name":"r","type":"pagerduty","routing_key":"`+routingKey+`"}`)
				count = func() int { return len(pd.Events()) }
			case "alertmanager":
				am := amtest.Start(b, nr.URL+"/alertmanager")
				w.createTB(b, `{"name":"r","type":"alertmanager","url":"`+am.URL+`"}`)
				// Received = Alertmanager answered the post (its own webhook
				// is grouped and delayed by design, not measured).
				count = nil
			case "slack", "slack beside a failing one":
				w.createTB(b, `{"name":"r","type":"slack","url":"`+nr.URL+`/slack/x"}`)
				count = func() int { return len(nr.Messages("slack")) }
				if typ != "slack" {
					bad := notifyreceiver.Start(b, secret)
					bad.FailNext(1<<30, http.StatusInternalServerError)
					w.createTB(b, `{"name":"bad","type":"msteams","url":"`+bad.URL+`/msteams/x"}`)
					names = []string{"bad", "r"}
				}
			case "msteams":
				w.createTB(b, `{"name":"r","type":"msteams","url":"`+nr.URL+`/msteams/x"}`)
				count = func() int { return len(nr.Messages("msteams")) }
			case "webhook":
				w.createTB(b, `{"name":"r","type":"webhook","url":"`+nr.URL+`/webhook","secret":"`+secret+`"}`)
				count = func() int { return len(nr.Messages("webhook")) }
			}
			w.opt.BackoffMin, w.opt.BackoffMax = 100*time.Millisecond, 2*time.Second
			stop := w.runTB(b)
			defer stop()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				n := note(notify.Trigger, fmt.Sprintf("b%d", i), names...)
				t0 := time.Now()
				w.enqueueTB(b, n)
				if count == nil {
					w.waitDeliveredTB(b, i+1)
				} else {
					for count() < i+1 {
						time.Sleep(50 * time.Microsecond)
						if time.Since(t0) > 10*time.Second {
							b.Fatalf("alert %d not delivered", i)
						}
					}
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
