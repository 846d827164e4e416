package alert

import (
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/silence"
)

// Silences match the alert's labels and the series behind its count: a host
// or tag matcher the group does not name applies while every contributing
// series matches it.
func TestSilenceMatchesEverySeriesBehindTheAlert(t *testing.T) {
	type put struct {
		host, tag string
		n         int64
	}
	tests := []struct {
		name    string
		rule    string // group_by
		group   string
		sil     silence.Silence
		first   []put // counted, then a tick
		silent  bool  // after first: silenced, not paged
		then    []put // counted 10s later, then a tick
		pagesAt bool  // after then: paged (unsilenced)
	}{
		{
			name: "host silence covers a fleet-wide alert whose matches all come from that host",
			rule: "none", sil: silence.Silence{Host: "web-1"},
			first:  []put{{"web-1", "app", 10}},
			silent: true,
			// Another host joins the count: the silence no longer speaks for it.
			then:    []put{{"web-2", "app", 1}},
			pagesAt: true,
		},
		{
			name: "host silence does not cover a fleet-wide alert with matches from elsewhere",
			rule: "none", sil: silence.Silence{Host: "web-1"},
			first:   []put{{"web-1", "app", 9}, {"db-1", "app", 1}},
			silent:  false,
			pagesAt: true,
		},
		{
			name: "tag silence on a host alert holds while every tag of the host matches",
			rule: "host", group: "web-1", sil: silence.Silence{Tag: "app.*"},
			first:  []put{{"web-1", "app.x", 10}},
			silent: true,
			// A second tag the glob covers: still silenced (it used to page here).
			then:    []put{{"web-1", "app.y", 1}},
			pagesAt: false,
		},
		{
			name: "tag silence on a host alert ends when the host logs under a tag it does not name",
			rule: "host", group: "web-1", sil: silence.Silence{Tag: "app.*"},
			first:   []put{{"web-1", "app.x", 10}},
			silent:  true,
			then:    []put{{"web-1", "db.z", 1}},
			pagesAt: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newEnv(t)
			v.startSender()
			r := v.rule(`{"name":"exc","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
				"group_by":"` + tt.rule + `","pagerduty":{"routing_key":"` + testKey + `"},"resolve_after":"5m"}`)
			s := tt.sil
			s.Start, s.End, s.Author = v.clk.Now(), v.clk.Now().Add(time.Hour), "ana"
			sil, err := v.sils.Create(v.ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.first {
				v.count("Exception", p.host, p.tag, 0, p.n)
			}
			v.tick()
			a := v.alert(r.ID, tt.group)
			if a == nil || a.State != Firing {
				t.Fatalf("alert %+v", a)
			}
			if got := a.SilencedBy == sil.ID && !a.Notified; got != tt.silent {
				t.Fatalf("silenced = %v, want %v: %+v", got, tt.silent, a)
			}
			if !tt.silent {
				v.events(1)
				return
			}
			v.clk.Add(10 * time.Second)
			for _, p := range tt.then {
				v.count("Exception", p.host, p.tag, 0, p.n)
			}
			v.tick()
			if tt.pagesAt {
				if evs := v.events(1); evs[0].Action != "trigger" {
					t.Fatalf("%s", actions(evs))
				}
				if a := v.alert(r.ID, tt.group); a.SilencedBy != "" || !a.Notified {
					t.Fatalf("unsilenced: %+v", a)
				}
				return
			}
			v.noMoreEvents(0)
			if a := v.alert(r.ID, tt.group); a.SilencedBy != sil.ID || a.Notified {
				t.Fatalf("still silenced: %+v", a)
			}
		})
	}
}

// An absence is about the series that went quiet: a tag silence covers a
// host's absence alert when the host's heartbeats were under that tag, and
// keeps covering it once they are long gone (nothing else is counted).
func TestTagSilenceCoversAHostsAbsenceForItsDuration(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","count":1,"window":"3m"},
		"group_by":"host","resolve_after":"0s","pagerduty":{"routing_key":"` + testKey + `"}}`)
	sil, err := v.sils.Create(v.ctx, silence.Silence{Tag: "hb.*", Start: v.clk.Now(), End: v.clk.Now().Add(2 * time.Hour), Author: "ana"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		v.count("heartbeat ok", "h2", "hb.main", 0, 1)
		v.tick()
		v.clk.Add(time.Minute)
	}
	for i := 0; i < 6; i++ { // h2 stops (absence is judged on settled minutes)
		v.tick()
		v.clk.Add(time.Minute)
	}
	if a := v.alert(r.ID, "h2"); a == nil || a.State != Firing || a.SilencedBy != sil.ID || a.Notified {
		t.Fatalf("silenced absence: %+v", a)
	}
	v.clk.Add(30 * time.Minute) // nothing of h2 left in the lookback
	v.tick()
	if a := v.alert(r.ID, "h2"); a.SilencedBy != sil.ID || a.Notified {
		t.Fatalf("still silenced: %+v", a)
	}
	v.noMoreEvents(0)
}
