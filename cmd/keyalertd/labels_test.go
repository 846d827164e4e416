package main

import (
	"context"
	"encoding/json"
	"fmt"
	stdmaps "maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/redis/go-redis/v9"
)

// Version 4 entries shaped like a Kubernetes DaemonSet's (node hosts, one
// tag per container, namespace/app/container labels), next to version 2
// and 3 entries of the same nodes, go from the stream to the API and to
// PagerDuty: counts by label equal the ground truth, and a rule grouped by
// namespace pages once per namespace with the namespace as the event's
// group and in custom_details.labels.
func TestLabelledEntriesFromTheStreamPageWithLabels(t *testing.T) {
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	srv := startInProc(t, alertEnv(rs.URL(), recv.URL), nil)
	rule := createRule(t, srv.addr, `{"name": "k8s exceptions", "keywords": ["Exception"],
		"condition": {"type": "threshold", "count": 5, "window": "5m"}, "group_by": ["namespace"],
		"filters": {"app": "web*"}, "severity": "error", "pagerduty": {"routing_key": "`+routingKey+`"}}`)

	rdb := rs.Client()
	ctx := context.Background()
	now := time.Now().Truncate(time.Minute)
	byNS, byApp := map[string]int64{}, map[string]int64{}
	var total int64
	for b := range 36 {
		ns := []string{"shop", "billing", "search"}[b%3]
		app := []string{"web", "web-api", "db", "worker"}[b%4]
		e := stream.Entry{Batch: fmt.Sprintf("%032x", b), Keyword: keyword.Spec{Text: "Exception"},
			Tag: "kube.var.log.containers." + app, Host: fmt.Sprintf("node-%d", b%2), Minute: now.Unix() - int64(b%2)*60,
			Count: int64(1 + b%3), Samples: []string{fmt.Sprintf("line %d: Exception in %s/%s", b, ns, app)}, SentMs: time.Now().UnixMilli(),
			Producer: fmt.Sprintf("%016x", 7), Attempt: fmt.Sprintf("%016x", 1)}
		switch {
		case b%9 == 8: // version 2, label-free
			e.Producer, e.Attempt = "", ""
			byNS[""] += e.Count
			byApp[""] += e.Count
		case b%9 == 7: // version 3, label-free
			byNS[""] += e.Count
			byApp[""] += e.Count
		default:
			e.Labels = []stream.Label{{Name: "app", Value: app}, {Name: "container", Value: app + "-c"}, {Name: "namespace", Value: ns}}
			byNS[ns] += e.Count
			byApp[app] += e.Count
		}
		total += e.Count
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: e.AppendValues(nil)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var r api.CountsResponse
	q := url.Values{"keyword": {"Exception"}, "from": {now.Add(-5 * time.Minute).Format(time.RFC3339)},
		"to": {now.Add(time.Minute).Format(time.RFC3339)}}
	eventually(t, 15*time.Second, "counts never reached the total", func() bool {
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts?"+q.Encode(), nil, http.StatusOK, &r)
		return r.Total >= total
	})
	for by, want := range map[string]map[string]int64{"namespace": byNS, "app": byApp} {
		var top api.TopResponse
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts/top?keyword=Exception&limit=100&window=10m&by="+by, nil, http.StatusOK, &top)
		got := map[string]int64{}
		for _, it := range top.Items {
			got[it.Value] = it.Count
		}
		if !stdmaps.Equal(got, want) || top.Total != total {
			t.Errorf("top by %s = %v total %d, want %v total %d", by, got, top.Total, want, total)
		}
	}
	q.Set("label.namespace", "shop")
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts?"+q.Encode(), nil, http.StatusOK, &r)
	if r.Total != byNS["shop"] {
		t.Errorf("counts of namespace shop = %d, want %d", r.Total, byNS["shop"])
	}

	// web and web-api match the filter in each namespace: one page each.
	evs := waitEvents(t, recv, 3, 15*time.Second)
	time.Sleep(600 * time.Millisecond) // three more ticks: nothing else may follow
	if evs = recv.Events(); len(evs) != 3 {
		t.Fatalf("want one page per namespace; got%s", describe(evs))
	}
	var groups []string
	for _, ev := range evs {
		p := ev.Payload
		var cd struct {
			Labels map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(p.CustomDetails, &cd); err != nil {
			t.Fatal(err)
		}
		if ev.Action != "trigger" || cd.Labels["namespace"] != p.Group || ev.DedupKey != alert.DedupKey(alert.ID(rule.ID, p.Group)) {
			t.Errorf("event %s group %q labels %v dedup %s", ev.Action, p.Group, cd.Labels, ev.DedupKey)
		}
		groups = append(groups, p.Group)
	}
	slices.Sort(groups)
	if want := []string{"billing", "search", "shop"}; !slices.Equal(groups, want) {
		t.Errorf("pages for namespaces %q, want %q", groups, want)
	}
	var a struct {
		Labels map[string]string `json:"labels"`
	}
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/alerts/"+alert.ID(rule.ID, "shop"), nil, http.StatusOK, &a)
	if !stdmaps.Equal(a.Labels, map[string]string{"namespace": "shop"}) {
		t.Errorf("alert labels %v", a.Labels)
	}
	noRejections(t, recv)
}

// The whole path with labels, as a Kubernetes DaemonSet runs it: records
// shaped like the kubernetes filter's output go through the plugin (test
// host, Label_Keys of conf/kubernetes, Tag_Label off, Hostname_Key the
// node) into keyalertd: counts by namespace and by app equal the ground
// truth, and a rule grouped by namespace pages once per namespace with the
// namespace in the page, except the namespace a label silence mutes.
func TestKubernetesRecordsThroughThePluginPageByNamespace(t *testing.T) {
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	srv := startInProc(t, alertEnv(rs.URL(), recv.URL), nil)
	createRule(t, srv.addr, `{"name": "k8s errors", "keywords": ["Exception"],
		"condition": {"type": "threshold", "count": 3, "window": "5m"}, "group_by": ["namespace"],
		"pagerduty": {"routing_key": "`+routingKey+`"}}`)
	apiJSON(t, srv.addr, http.MethodPost, "/api/v1/silences", json.RawMessage(fmt.Sprintf(
		`{"labels": {"namespace": "bill*"}, "author": "ops", "comment": "migration", "end": %q}`,
		time.Now().Add(time.Hour).UTC().Format(time.RFC3339))), http.StatusCreated, nil)

	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "k8s", rs.URL(), map[string]string{"Keys": "log",
		"Label_Keys":   "namespace=$kubernetes['namespace_name'], app=$kubernetes['labels']['app'], container=$kubernetes['container_name']",
		"Tag_Label":    "off",
		"Hostname_Key": "$kubernetes['host']"})
	waitKeywords(t, h, mark, 1)

	byNS, byApp := map[string]int64{}, map[string]int64{}
	var total int64
	var c []byte
	now := time.Now()
	for i := range 60 {
		ns := []string{"shop", "billing", "search"}[i%3]
		app := []string{"web", "api", "worker", "db"}[i%4]
		line := fmt.Sprintf("request %d failed: java.lang.IllegalStateException in %s", i, app)
		rec := map[string]any{"log": line, "stream": "stdout", "kubernetes": map[string]any{
			"pod_name": app + "-5d8c7b9f6d-x7k2p", "namespace_name": ns, "host": fmt.Sprintf("node-%d", i%2),
			"container_name": app, "labels": map[string]any{"app": app, "pod-template-hash": "5d8c7b9f6d"}}}
		var err error
		if c, err = chunk.AppendEvent(c, chunk.FormatV2, now, chunk.EventTime, rec); err != nil {
			t.Fatal(err)
		}
		byNS[ns]++
		byApp[app]++
		total++
	}
	flushOK(t, h, "k8s", "kube.var.log.containers.web_shop_web-"+fmt.Sprintf("%064x", 1)+".log", c)

	for by, want := range map[string]map[string]int64{"namespace": byNS, "app": byApp} {
		var top api.TopResponse
		eventually(t, 15*time.Second, "top by "+by+" never reached the total", func() bool {
			apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts/top?keyword=Exception&limit=100&window=10m&by="+by, nil, http.StatusOK, &top)
			return top.Total >= total
		})
		got := map[string]int64{}
		for _, it := range top.Items {
			got[it.Value] = it.Count
		}
		if !stdmaps.Equal(got, want) || top.Total != total {
			t.Errorf("top by %s = %v total %d, want %v total %d", by, got, top.Total, want, total)
		}
	}
	evs := waitEvents(t, recv, 2, 15*time.Second)
	time.Sleep(600 * time.Millisecond) // more ticks: nothing else may follow
	if evs = recv.Events(); len(evs) != 2 {
		t.Fatalf("want a page for shop and search (billing silenced); got%s", describe(evs))
	}
	var groups []string
	for _, ev := range evs {
		groups = append(groups, ev.Payload.Group)
	}
	slices.Sort(groups)
	if want := []string{"search", "shop"}; !slices.Equal(groups, want) {
		t.Errorf("pages for namespaces %q, want %q", groups, want)
	}
	noRejections(t, recv)
}
