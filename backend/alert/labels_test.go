package alert

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// countLabelled adds n records of kw to a labelled series (labels as name,
// value pairs sorted by name) of the clock's minute minus back.
func (v *env) countLabelled(kw, host, tag string, back int, n int64, pairs ...string) {
	v.t.Helper()
	var labels []stream.Label
	for i := 0; i+1 < len(pairs); i += 2 {
		labels = append(labels, stream.Label{Name: pairs[i], Value: pairs[i+1]})
	}
	spec := keyword.Spec{Text: kw}
	minute := v.clk.Now().Unix() - v.clk.Now().Unix()%60 - int64(back)*60
	if err := v.rdb.HIncrBy(v.ctx, v.win.Keys().Window(spec.ID(), minute), window.Field(host, tag, labels...), n).Err(); err != nil {
		v.t.Fatal(err)
	}
	v.marker(spec.ID(), minute)
	line := window.EncodeSample(window.Sample{Minute: minute, Host: host, Tag: tag, Labels: window.LabelMap(labels), Line: fmt.Sprintf("%s in %v", kw, pairs)})
	v.rdb.LPush(v.ctx, v.win.Keys().Samples(spec.ID(), host, tag, labels...), line)
}

const nsRule = `{"name":"k8s exceptions","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
	"group_by":["namespace"],"filters":{"app":"web*"},"severity":"critical","pagerduty":{"routing_key":"` + testKey + `"},
	"repeat_interval":"1h","resolve_after":"2m"}`

// A rule grouped by namespace pages once per namespace over the nodes and
// containers of it, with the namespace in the page's labels; series of
// other apps are filtered out, and a label-free series of the same host
// counts in the empty namespace.
func TestGroupByLabelPagesOncePerNamespace(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(nsRule)
	v.countLabelled("Exception", "node-1", "kube.a", 0, 4, "app", "web", "container", "web-c", "namespace", "shop")
	v.countLabelled("Exception", "node-2", "kube.b", 0, 3, "app", "web", "container", "web-c", "namespace", "shop")
	v.countLabelled("Exception", "node-1", "kube.c", 0, 9, "app", "web-api", "container", "api", "namespace", "billing")
	v.countLabelled("Exception", "node-1", "kube.d", 0, 50, "app", "db", "container", "db", "namespace", "shop") // filtered out
	v.countLabelled("Exception", "node-1", "kube.e", 0, 2, "app", "web", "namespace", "tiny")                    // below
	v.tick()
	evs := v.events(2)
	v.noMoreEvents(2)
	got := map[string]string{}
	for _, ev := range evs {
		got[ev.Group] = fmt.Sprintf("%v %d %s", ev.Labels, ev.Count, ev.SeriesHost)
	}
	want := map[string]string{"shop": "map[namespace:shop] 7 ", "billing": "map[namespace:billing] 9 node-1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pages %v, want %v", got, want)
	}
	a := v.alert(r.ID, "shop")
	if a == nil || a.State != Firing || !maps.Equal(a.Labels, map[string]string{"namespace": "shop"}) {
		t.Fatalf("alert for shop: %+v", a)
	}
}

// With several dimensions the group is name=value pairs in group_by order
// and the alert's labels hold each.
func TestGroupByListNamesEachDimension(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(`{"name":"k8s","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
		"group_by":["namespace","host"],"pagerduty":{"routing_key":"` + testKey + `"}}`)
	v.countLabelled("Exception", "node-1", "kube.a", 0, 6, "app", "web", "namespace", "shop")
	v.count("Exception", "node-1", "plain", 0, 5) // label-free: namespace ""
	v.tick()
	evs := v.events(2)
	var groups []string
	for _, ev := range evs {
		groups = append(groups, ev.Group+" "+ev.Host+" "+fmt.Sprint(ev.Labels))
	}
	slices.Sort(groups)
	if want := []string{"namespace=,host=node-1 node-1 map[namespace:]", "namespace=shop,host=node-1 node-1 map[namespace:shop]"}; !slices.Equal(groups, want) {
		t.Errorf("pages %q, want %q", groups, want)
	}
	a := v.alert(r.ID, "namespace=shop,host=node-1")
	if a == nil || !maps.Equal(a.Labels, map[string]string{"namespace": "shop", "host": "node-1"}) {
		t.Fatalf("alert %+v", a)
	}
}

// A silence on a label mutes the groups it names and, for a rule not
// grouped by that label, the alerts whose every contributing series has a
// matching value.
func TestSilenceByLabel(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	byNS := v.rule(nsRule)
	fleet := v.rule(`{"name":"fleet","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},
		"pagerduty":{"routing_key":"` + testKey + `"}}`)
	if _, err := v.sils.Create(v.ctx, silence.Silence{Labels: map[string]string{"namespace": "shop*"}, Author: "ops",
		Start: v.clk.Now(), End: v.clk.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	v.countLabelled("Exception", "node-1", "kube.a", 0, 7, "app", "web", "namespace", "shop")
	v.countLabelled("Exception", "node-1", "kube.b", 0, 8, "app", "web", "namespace", "shop-staging")
	v.countLabelled("Exception", "node-1", "kube.c", 0, 9, "app", "web", "namespace", "billing")
	v.tick()
	if a := v.alert(byNS.ID, "shop"); a == nil || a.SilencedBy == "" {
		t.Errorf("shop not silenced: %+v", a)
	}
	if a := v.alert(byNS.ID, "billing"); a == nil || a.SilencedBy != "" || !a.Notified {
		t.Errorf("billing silenced or not paged: %+v", a)
	}
	// The fleet alert counts billing too: not all of it is silenced.
	if a := v.alert(fleet.ID, ""); a == nil || a.SilencedBy != "" {
		t.Errorf("fleet alert silenced though billing contributes: %+v", a)
	}
}

// An absence rule grouped by two labels remembers its groups by their
// group strings: a namespace/app pair that falls silent pages, after a
// restart too, with its labels taken back from the group.
func TestAbsenceRemembersLabelGroups(t *testing.T) {
	v := newEnv(t)
	v.startSender()
	r := v.rule(`{"name":"heartbeat","keywords":["heartbeat ok"],"condition":{"type":"absence","window":"1m"},
		"group_by":["namespace","app"],"pagerduty":{"routing_key":"` + testKey + `"}}`)
	v.countLabelled("heartbeat ok", "node-1", "kube.a", 0, 1, "app", "web", "namespace", "shop")
	for i := 0; i < 3; i++ {
		v.countLabelled("heartbeat ok", "node-2", "kube.b", 0, 1, "app", "db", "namespace", "shop")
		v.clk.Add(time.Minute)
		v.tick()
	}
	v.restart()
	for i := 0; i < 5; i++ {
		v.countLabelled("heartbeat ok", "node-2", "kube.b", 0, 1, "app", "db", "namespace", "shop")
		v.clk.Add(time.Minute)
		v.tick()
	}
	const group = "namespace=shop,app=web"
	a := v.alert(r.ID, group)
	if a == nil || a.State != Firing || !maps.Equal(a.Labels, map[string]string{"namespace": "shop", "app": "web"}) {
		t.Fatalf("silent shop/web: %+v", a)
	}
	if b := v.alert(r.ID, "namespace=shop,app=db"); b != nil && b.State == Firing {
		t.Errorf("shop/db still beating but firing: %+v", b)
	}
	ev := v.events(1)[0]
	if ev.Group != group || !maps.Equal(ev.Labels, a.Labels) {
		t.Errorf("page group %q labels %v", ev.Group, ev.Labels)
	}
}
