package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// leaseOwner is the token a keyalertd process writes into the lease keys it
// holds, from its start line.
func leaseOwner(t *testing.T, p *proc) string {
	t.Helper()
	for _, line := range strings.Split(p.log(), "\n") {
		var rec struct {
			Msg        string `json:"msg"`
			LeaseOwner string `json:"lease_owner"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "keyalertd starting" && rec.LeaseOwner != "" {
			return rec.LeaseOwner
		}
	}
	t.Fatalf("no lease_owner in the start line:\n%s", p.log())
	return ""
}

// Three keyalertd processes share one Redis and stream. Incidents (rule,
// host) arrive through the plugin before and after the one holding the
// outbox sender lease (and its share of the rule shards) is SIGKILLed: the
// survivors take its leases over, and PagerDuty gets exactly one trigger per
// incident. The survivors then stop on SIGTERM with exit status 0, releasing
// their leases.
func TestReplicasPageEachIncidentOnceWhenTheLeaseHolderIsKilled(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client()
	ctx := context.Background()
	recv := pdreceiver.Start(t)
	env := alertEnv(rs.URL(), recv.URL)
	const replicas, nRules, shards = 3, 8, 16
	env["KEYALERT_EVAL_SHARDS"] = strconv.Itoa(shards)
	var procs []*proc
	owners := map[string]*proc{}
	for i := 0; i < replicas; i++ {
		p := start(t, maps(env, "KEYALERT_CONSUMER", fmt.Sprintf("replica-%d", i)))
		procs = append(procs, p)
		owners[leaseOwner(t, p)] = p
	}

	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "app", rs.URL(), map[string]string{"Hostname_Key": "host"})
	rules := make([]ruleDoc, nRules)
	for i := range rules {
		rules[i] = createRule(t, procs[i%replicas].addr, fmt.Sprintf(`{"name": "fault %d", "keywords": ["E2E-FAULT-%02d"],
			"condition": {"type": "threshold", "count": 1, "window": "5m"}, "group_by": "host",
			"pagerduty": {"routing_key": %q}}`, i, i, routingKey))
	}
	waitKeywords(t, h, mark, nRules)

	want := map[string]string{} // dedup key -> incident
	incidents := func(phase string) {
		for i, r := range rules {
			host := fmt.Sprintf("%s-host-%d", phase, i)
			c, err := chunk.AppendEvent(nil, chunk.FormatV2, time.Now(), chunk.EventTime,
				map[string]any{"log": fmt.Sprintf("job failed: E2E-FAULT-%02d on %s", i, host), "host": host})
			if err != nil {
				t.Fatal(err)
			}
			flushOK(t, h, "app", "app.log", c)
			want[alert.DedupKey(alert.ID(r.ID, host))] = fmt.Sprintf("rule %d on %s", i, host)
		}
	}

	incidents("before")
	waitEvents(t, recv, nRules, 20*time.Second)

	holder, err := rdb.Get(ctx, alert.OutboxLeaseKey).Result()
	if err != nil {
		t.Fatalf("outbox sender lease: %v", err)
	}
	victim := owners[holder]
	if victim == nil {
		t.Fatalf("the outbox lease holder %q is none of the replicas", holder)
	}
	ruleShards := 0
	for _, r := range rules {
		key := alert.LeasePrefix + ":shard:" + strconv.Itoa(lease.ShardOf(r.ID, shards))
		if o, _ := rdb.Get(ctx, key).Result(); o == holder {
			ruleShards++
		}
	}
	t.Logf("killing %s: it holds the outbox sender lease and the shards of %d of the %d rules", holder, ruleShards, nRules)
	victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	killed := time.Now()

	incidents("after")
	evs := waitEvents(t, recv, 2*nRules, 20*time.Second)
	t.Logf("the %d incidents after the kill were paged within %v of it", nRules, evs[len(evs)-1].Received.Sub(killed).Round(time.Millisecond))
	// Past a lease TTL and several ticks: no duplicate may follow.
	time.Sleep(2 * time.Second)
	evs = recv.Events()
	seen := map[string]int{}
	for _, e := range evs {
		if e.Action != "trigger" {
			t.Errorf("unexpected %s for %s", e.Action, e.DedupKey)
		}
		seen[e.DedupKey]++
	}
	for key, what := range want {
		if seen[key] != 1 {
			t.Errorf("%s (%s): %d triggers, want exactly 1", what, key, seen[key])
		}
	}
	if len(evs) != len(want) {
		t.Errorf("%d events for %d incidents:%s", len(evs), len(want), describe(evs))
	}
	noRejections(t, recv)
	if o, _ := rdb.Get(ctx, alert.OutboxLeaseKey).Result(); o == holder || owners[o] == nil {
		t.Errorf("outbox sender lease held by %q after the kill, want a survivor", o)
	}

	for _, p := range procs {
		if p != victim {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range procs {
		if p == victim {
			continue
		}
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			t.Fatal("a replica did not exit 15s after SIGTERM")
		}
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0:\n%s", code, p.log())
		}
	}
	keys, err := rdb.Keys(ctx, alert.LeasePrefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k != alert.LeasePrefix+":members" {
			v, _ := rdb.Get(ctx, k).Result()
			t.Errorf("lease %s still held by %q after every replica stopped", k, v)
		}
	}
	if t.Failed() {
		for _, p := range procs {
			t.Logf("replica log:\n%s", p.log())
		}
	}
}
