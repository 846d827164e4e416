package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
)

// intervalFixture is newAlertFixture with a time interval store (at most
// 3) on the fixture's Redis, which the silences (and so the engine) use.
func intervalFixture(t *testing.T) *alertFixture {
	srv := redistest.Start(t)
	rdb := srv.Client()
	now := func() time.Time { return t0 }
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	o := storeOptions(rdb, now, log)
	o.Tokens = []string{"tok-a"}
	o.TimeIntervals = timeinterval.NewStore(rdb, timeinterval.Options{Max: 3}, now)
	o.Silences.UseIntervals(o.TimeIntervals)
	shards := lease.NewShards(rdb, alert.LeasePrefix, "test", lease.Options{TTL: 5 * time.Second, Shards: 1}, log)
	if err := shards.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	eng := alert.New(alert.Config{Redis: rdb, Rules: o.Rules, Silences: o.Silences, Counts: o.Counts, Store: o.Alerts, Shards: shards,
		Now: now, Log: log})
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(checked(t, h))
	t.Cleanup(ts.Close)
	return &alertFixture{t: t, url: ts.URL + "/api/v1", o: o, eng: eng, win: o.Counts, logs: logs, rdb: rdb}
}

const weekends = `{"time_intervals":[{"weekdays":["saturday:sunday"],"location":"Europe/Berlin"}]}`

func TestTimeIntervalsAPI(t *testing.T) {
	f := intervalFixture(t)
	steps := []struct {
		name, method, path, body string
		status                   int
		want                     string // substring of the answer
	}{
		{"PUT creates", "PUT", "/time_intervals/weekends", weekends, 201, `"name":"weekends"`},
		{"PUT again replaces", "PUT", "/time_intervals/weekends", weekends, 200, `"saturday:sunday"`},
		{"POST of a taken name is 409", "POST", "/time_intervals", `{"name":"weekends","time_intervals":[{"months":["may"]}]}`, 409, `"field":"name"`},
		{"POST creates", "POST", "/time_intervals", `{"name":"may","time_intervals":[{"months":["may"]}]}`, 201, `"months":["may"]`},
		{"a bad interval names its field", "PUT", "/time_intervals/x", `{"time_intervals":[{"times":[{"start_time":"9:00","end_time":"17:00"}]}]}`, 400, `"field":"time_intervals[0].times[0].start_time"`},
		{"list", "GET", "/time_intervals", "", 200, `"name":"may"`},
		{"get", "GET", "/time_intervals/weekends", "", 200, `"location":"Europe/Berlin"`},
		{"get unknown", "GET", "/time_intervals/nope", "", 404, "time interval not found"},
		{"a rule naming an unknown interval is 400", "POST", "/rules",
			strings.Replace(ruleBody, `"enabled":true`, `"enabled":true,"mute_time_intervals":["nope"]`, 1), 400, `"field":"mute_time_intervals[0]"`},
		{"a silence naming an unknown interval is 400", "POST", "/silences",
			`{"host":"web-1","time_intervals":["nope"],"end":"2025-03-02T00:00:00Z","author":"ana"}`, 400, `"field":"time_intervals[0]"`},
		{"a third interval fits the limit of 3", "PUT", "/time_intervals/c", weekends, 201, ""},
		{"a fourth does not", "PUT", "/time_intervals/d", weekends, 400, "KEYALERT_MAX_TIME_INTERVALS"},
		{"delete", "DELETE", "/time_intervals/c", "", 204, ""},
		{"delete unknown", "DELETE", "/time_intervals/c", "", 404, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			status, body := f.do(st.method, st.path, st.body)
			if status != st.status || !strings.Contains(body, st.want) {
				t.Errorf("%s %s: %d %s, want %d with %q", st.method, st.path, status, body, st.status, st.want)
			}
		})
	}
}

// TestRuleMuteTimeIntervalsRecordButDoNotPage: inside the rule's interval
// its alert fires silenced by "interval:weekends" and is not paged; once
// the interval no longer holds (here: edited to weekdays only) the next
// round pages it, as when a silence ends.
func TestRuleMuteTimeIntervalsRecordButDoNotPage(t *testing.T) {
	f := intervalFixture(t)
	if status, body := f.do("PUT", "/time_intervals/weekends", weekends); status != 201 {
		t.Fatalf("put interval: %d %s", status, body)
	}
	status, body := f.do("POST", "/rules", strings.Replace(ruleBody, `"enabled":true`, `"enabled":true,"mute_time_intervals":["weekends"]`, 1))
	if status != 201 {
		t.Fatalf("create rule: %d %s", status, body)
	}
	ruleID := decode[map[string]any](t, body)["id"].(string)
	ctx := context.Background()
	minute := t0.Unix() - t0.Unix()%60 // t0 is a Saturday
	f.rdb.HIncrBy(ctx, f.win.Keys().Window(keyword.Spec{Text: "Exception"}.ID(), minute), window.Field("web-1", "app.web"), 9)
	if err := f.eng.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	a := decode[alert.Alert](t, mustGet(t, f, "/alerts/"+alert.ID(ruleID, "web-1")))
	if a.State != alert.Firing || a.SilencedBy != "interval:weekends" || a.Notified {
		t.Fatalf("inside the interval: state %s, silenced by %q, notified %v; want firing, interval:weekends, not notified", a.State, a.SilencedBy, a.Notified)
	}
	if status, body := f.do("DELETE", "/time_intervals/weekends", ""); status != http.StatusConflict || !strings.Contains(body, "rule "+ruleID) {
		t.Errorf("delete an interval in use: %d %s, want 409 naming the rule", status, body)
	}
	if status, body := f.do("PUT", "/time_intervals/weekends", `{"time_intervals":[{"weekdays":["monday:friday"]}]}`); status != 200 {
		t.Fatalf("edit interval: %d %s", status, body)
	}
	if err := f.eng.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	a = decode[alert.Alert](t, mustGet(t, f, "/alerts/"+alert.ID(ruleID, "web-1")))
	if a.State != alert.Firing || a.SilencedBy != "" || !a.Notified {
		t.Errorf("after the interval: state %s, silenced by %q, notified %v; want firing, paged", a.State, a.SilencedBy, a.Notified)
	}
}

func mustGet(t *testing.T, f *alertFixture, path string) string {
	t.Helper()
	status, body := f.do("GET", path, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return body
}
