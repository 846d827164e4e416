package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/ingest"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/redis/go-redis/v9"
)

// The sharded-stream tests run a Redis Cluster of three masters with a
// replica each on loopback, the real plugin in flbhost writing chunks of many
// hosts (Hostname_Key), and keyalertd binaries. Ground truth is the number
// of records the plugin accepted with FLB_OK (every record holds the
// keyword once); a chunk answered FLB_RETRY is flushed again, as Fluent Bit
// does.

const (
	shardHosts      = 120 // host names spread over the shards
	recordsPerChunk = 20
)

var exception = keyword.Spec{Text: "Exception"}

type shardRig struct {
	t    *testing.T
	cl   *redistest.Cluster
	rdb  *redis.ClusterClient
	recv *pdreceiver.Server
	h    *flbhost.Host
	env  map[string]string

	mu      sync.Mutex
	seq     int
	truth   int64
	byShard map[int]int64 // records per shard of 3, for the rule check
	retries int
	procs   []*proc
}

// newShardRig starts the cluster, the receiver and one plugin instance
// (plugin settings cfg on top of the defaults); keyalertd runs with env.
func newShardRig(t *testing.T, nodeTimeout time.Duration, cfg map[string]string) *shardRig {
	t.Helper()
	r := &shardRig{t: t, byShard: map[int]int64{}}
	r.cl = redistest.StartClusterWith(t, redistest.ClusterOptions{Masters: 3, Replicas: 1, NodeTimeout: nodeTimeout})
	r.rdb = r.cl.Client()
	r.recv = pdreceiver.Start(t)
	r.env = alertEnv(r.cl.URL(), r.recv.URL)
	r.h = flbhost.StartForTest(t)
	all := map[string]string{"Hostname_Key": "host", "Keywords": "Exception", "Redis_Timeout": "2s"}
	for k, v := range cfg {
		all[k] = v
	}
	pluginInstance(t, r.h, "app", r.cl.URL(), all)
	return r
}

// start runs a keyalertd binary with the rig's env plus the given pairs.
func (r *shardRig) start(name string, kv ...string) *proc {
	env := maps(r.env, "KEYALERT_CONSUMER", name)
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	p := start(r.t, env)
	r.procs = append(r.procs, p)
	return p
}

// chunk is the next chunk: recordsPerChunk records of different hosts, each
// with the keyword once.
func (r *shardRig) chunk() ([]byte, map[int]int64) {
	r.mu.Lock()
	r.seq++
	seq := r.seq
	r.mu.Unlock()
	var c []byte
	per := map[int]int64{}
	now := time.Now()
	for i := 0; i < recordsPerChunk; i++ {
		host := fmt.Sprintf("host-%03d", (seq*7+i*11)%shardHosts)
		var err error
		c, err = chunk.AppendEvent(c, chunk.FormatV2, now, chunk.EventTime,
			map[string]any{"log": fmt.Sprintf("chunk %d record %d: java.lang.Exception on %s", seq, i, host), "host": host})
		if err != nil {
			r.t.Fatal(err)
		}
		per[streamshard.Of(host, 3)]++
	}
	return c, per
}

// flush sends one new chunk until the plugin accepts it.
func (r *shardRig) flush() {
	c, per := r.chunk()
	deadline := time.Now().Add(40 * time.Second)
	for {
		rc, err := r.h.Flush("app", "app.log", c)
		if err != nil {
			r.t.Errorf("flush: %v", err)
			return
		}
		if rc == flbhost.OK {
			break
		}
		if rc != flbhost.Retry || time.Now().After(deadline) {
			r.t.Errorf("flush: rc %d", rc)
			return
		}
		r.mu.Lock()
		r.retries++
		r.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	r.mu.Lock()
	r.truth += recordsPerChunk
	for s, n := range per {
		r.byShard[s] += n
	}
	r.mu.Unlock()
}

// feed flushes chunks every pause until stop is closed.
func (r *shardRig) feed(stop <-chan struct{}, pause time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.flush()
			time.Sleep(pause)
		}
	}()
	return done
}

func (r *shardRig) total() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.truth
}

// waitShards waits until the plugin writes over n shards (its log since
// mark says so).
func (r *shardRig) waitShards(mark, n int, before int) {
	r.t.Helper()
	want := fmt.Sprintf("shards=%d before=%d", n, before)
	if !r.h.WaitLog(mark, want, 15*time.Second) {
		r.t.Fatalf("the plugin did not switch to %d shards in 15s:\n%s", n, r.h.LogSince(mark))
	}
}

// drained waits until every one of n shards' groups has read and
// acknowledged every entry.
func (r *shardRig) drained(n int, limit time.Duration) {
	r.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		done := true
		last = ""
		for i := 0; i < n; i++ {
			key := streamshard.Key(stream.DefaultStream, i)
			if l, err := r.rdb.XLen(ctx, key).Result(); err == nil && l == 0 {
				continue
			}
			// Lag is unknown (-1) on a promoted replica: compare ids.
			info, err := r.rdb.XInfoStream(ctx, key).Result()
			gs, err2 := r.rdb.XInfoGroups(ctx, key).Result()
			if err != nil || err2 != nil || len(gs) != 1 || gs[0].LastDeliveredID != info.LastGeneratedID || gs[0].Pending != 0 {
				done = false
				last += fmt.Sprintf(" %s: %+v %v %v", key, gs, err, err2)
			}
		}
		if done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range r.procs {
		out := p.log()
		if len(out) > 20000 {
			out = out[len(out)-20000:]
		}
		r.t.Logf("keyalertd at %s log (tail):\n%s", p.addr, out)
	}
	r.t.Fatalf("shards not drained after %v:%s", limit, last)
}

// counted is the fleet's total as p's API answers it.
func (r *shardRig) counted(p *proc) int64 { return p.total(r.t, exception, "") }

// shardOwners maps each of n ingest shard leases to its holder's token.
func (r *shardRig) shardOwners(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i], _ = r.rdb.Get(context.Background(), ingest.LeasePrefix(stream.DefaultStream)+":shard:"+strconv.Itoa(i)).Result()
	}
	return out
}

// (1) Three shards, two keyalertd replicas: every record counted once, the
// shards on at least two masters, and a rule over the whole fleet, which no
// shard reaches alone, pages once.
func TestShardedIngestCountsExactlyAndPagesOnce(t *testing.T) {
	r := newShardRig(t, 0, nil)
	mark := r.h.LogLen()
	p0 := r.start("replica-0", "KEYALERT_STREAM_SHARDS", "3")
	p1 := r.start("replica-1", "KEYALERT_STREAM_SHARDS", "3")
	r.waitShards(mark, 3, 1)

	const chunks = 45
	threshold := int64(chunks * recordsPerChunk * 6 / 10)
	createRule(t, p0.addr, fmt.Sprintf(`{"name": "fleet exceptions", "keywords": ["Exception"],
		"condition": {"type": "threshold", "count": %d, "window": "5m"},
		"severity": "error", "pagerduty": {"routing_key": %q}}`, threshold, routingKey))
	for i := 0; i < chunks; i++ {
		r.flush()
	}
	r.drained(3, 30*time.Second)

	for s, n := range r.byShard {
		if n >= threshold {
			t.Fatalf("shard %d alone holds %d records, the threshold %d must need several shards", s, n, threshold)
		}
	}
	t.Logf("records per shard %v, threshold %d", r.byShard, threshold)
	for _, p := range []*proc{p0, p1} {
		if got := r.counted(p); got != r.total() {
			t.Errorf("keyalertd at %s counts %d, ground truth %d", p.addr, got, r.total())
		}
		if applied := p.metric(t, "keyalert_ingest_entries_applied_total"); applied == 0 {
			t.Errorf("keyalertd at %s applied nothing: the shards were not spread", p.addr)
		}
	}
	masters := map[int]bool{}
	var length int64
	for i := 0; i < 3; i++ {
		key := streamshard.Key(stream.DefaultStream, i)
		n, _ := r.rdb.XLen(context.Background(), key).Result()
		if n == 0 {
			t.Errorf("shard %s holds no entries", key)
		}
		length += n
		masters[r.cl.MasterOf(key)] = true
	}
	var health struct {
		Shards  int   `json:"shards"`
		Length  int64 `json:"length"`
		Pending int64 `json:"pending"`
		Hosts   []any `json:"hosts"`
	}
	apiJSON(t, p1.addr, http.MethodGet, "/api/v1/health/ingest", nil, http.StatusOK, &health)
	if health.Shards != 3 || health.Length != length || health.Pending != 0 || len(health.Hosts) != shardHosts {
		t.Errorf("ingest health %+v, want 3 shards, length %d, nothing pending, %d hosts", health, length, shardHosts)
	}
	if len(masters) < 2 {
		t.Errorf("the 3 shards are on %d master(s), want at least 2", len(masters))
	}

	evs := waitEvents(t, r.recv, 1, 20*time.Second)
	time.Sleep(1500 * time.Millisecond) // several ticks: no second page may follow
	evs = r.recv.Events()
	if len(evs) != 1 || evs[0].Action != "trigger" {
		t.Errorf("want exactly one trigger, got:%s", describe(evs))
	}
	noRejections(t, r.recv)
	var counts struct {
		Total int64 `json:"total"`
	}
	apiJSON(t, p1.addr, http.MethodGet, "/api/v1/counts/top?keyword=Exception&by=host&limit=500&from="+
		time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+"&to="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), nil, http.StatusOK, &counts)
	if counts.Total != r.total() {
		t.Errorf("counts/top total %d, ground truth %d", counts.Total, r.total())
	}
}

// (2) The shard count goes from 1 to 3 and back to 1 while the plugin
// writes, by restarting keyalertd with another KEYALERT_STREAM_SHARDS (a
// rolling change): every record is counted once.
func TestShardCountChangedDuringIngestCountsExactly(t *testing.T) {
	r := newShardRig(t, 0, nil)
	stop := make(chan struct{})
	p := r.start("one", "KEYALERT_STREAM_SHARDS", "1")
	fed := r.feed(stop, 20*time.Millisecond)
	time.Sleep(time.Second)

	for _, step := range []struct{ to, from int }{{3, 1}, {1, 3}} {
		mark := r.h.LogLen()
		next := r.start(fmt.Sprintf("shards-%d", step.to), "KEYALERT_STREAM_SHARDS", strconv.Itoa(step.to))
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
		p = next
		r.waitShards(mark, step.to, step.from)
		time.Sleep(time.Second)
	}
	close(stop)
	<-fed
	r.drained(3, 30*time.Second)
	for i := 1; i < 3; i++ {
		if n, _ := r.rdb.XLen(context.Background(), streamshard.Key(stream.DefaultStream, i)).Result(); n == 0 {
			t.Errorf("shard %d got no entries while there were 3", i)
		}
	}
	if got := r.counted(p); got != r.total() {
		t.Errorf("counted %d, ground truth %d (%d chunks)", got, r.total(), r.total()/recordsPerChunk)
	}
	t.Logf("%d records in %d chunks through 1 -> 3 -> 1 shards", r.total(), r.total()/recordsPerChunk)
}

// (3) A master holding a shard is SIGKILLed during ingest and its replica
// promoted. With Redis_Wait_Replicas 1 every record the plugin was told is
// written (FLB_OK) is counted once; without it, what asynchronous
// replication lost is measured, not asserted.
func TestClusterMasterFailoverDuringIngest(t *testing.T) {
	for _, wait := range []string{"1", "0"} {
		t.Run("Redis_Wait_Replicas "+wait, func(t *testing.T) {
			r := newShardRig(t, time.Second, map[string]string{"Redis_Wait_Replicas": wait, "Redis_Wait_Timeout": "500ms"})
			mark := r.h.LogLen()
			p := r.start("failover", "KEYALERT_STREAM_SHARDS", "3", "KEYALERT_WAIT_REPLICAS", wait)
			r.waitShards(mark, 3, 1)
			stop := make(chan struct{})
			fed := r.feed(stop, 5*time.Millisecond)
			time.Sleep(time.Second)

			key := streamshard.Key(stream.DefaultStream, 1)
			victim := r.cl.MasterOf(key)
			before := r.total()
			r.cl.Servers[victim].Kill()
			killed := time.Now()
			if _, err := r.cl.WaitMaster(key, victim, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("killed the master of %s with %d records accepted; its replica took over after %v",
				key, before, time.Since(killed).Round(time.Millisecond))
			// The promoted replica has no replica of its own until the dead
			// node comes back (as its replica): till then a flush waiting
			// for one is retried, as it should be.
			r.cl.Servers[victim].Restart()
			time.Sleep(1500 * time.Millisecond)
			close(stop)
			<-fed
			r.drained(3, 30*time.Second)
			got, want := r.counted(p), r.total()
			t.Logf("Redis_Wait_Replicas %s: %d records accepted (FLB_OK), %d counted, %d lost, %d flushes retried",
				wait, want, got, want-got, r.retries)
			if wait != "0" && got != want {
				t.Errorf("counted %d, ground truth %d", got, want)
			}
			if got > want {
				t.Errorf("counted %d, more than the %d records accepted", got, want)
			}
		})
	}
}

// (4) Of two keyalertd replicas consuming three shards, one is SIGKILLed:
// the other takes its shards over within about the lease TTL and counts
// every record once.
func TestKilledReplicasShardsAreTakenOver(t *testing.T) {
	r := newShardRig(t, 0, nil)
	mark := r.h.LogLen()
	p0 := r.start("replica-0", "KEYALERT_STREAM_SHARDS", "3")
	p1 := r.start("replica-1", "KEYALERT_STREAM_SHARDS", "3")
	r.waitShards(mark, 3, 1)
	owner0, owner1 := leaseOwner(t, p0), leaseOwner(t, p1)
	eventually(t, 10*time.Second, "the two replicas never split the shards", func() bool {
		n := map[string]int{}
		for _, o := range r.shardOwners(3) {
			n[o]++
		}
		return n[owner0] > 0 && n[owner1] > 0 && n[owner0]+n[owner1] == 3
	})
	stop := make(chan struct{})
	fed := r.feed(stop, 10*time.Millisecond)
	time.Sleep(time.Second)

	p0.cmd.Process.Signal(syscall.SIGKILL)
	<-p0.done
	killed := time.Now()
	eventually(t, 10*time.Second, "the survivor did not take every shard", func() bool {
		for _, o := range r.shardOwners(3) {
			if o != owner1 {
				return false
			}
		}
		return true
	})
	took := time.Since(killed)
	t.Logf("the survivor held all 3 shards %v after the kill (lease TTL %s)", took.Round(time.Millisecond), r.env["KEYALERT_LEASE_TTL"])
	if ttl, _ := time.ParseDuration(r.env["KEYALERT_LEASE_TTL"]); took > 3*ttl {
		t.Errorf("takeover took %v, over three lease TTLs", took)
	}
	time.Sleep(time.Second)
	close(stop)
	<-fed
	r.drained(3, 30*time.Second)
	if got := r.counted(p1); got != r.total() {
		t.Errorf("counted %d, ground truth %d", got, r.total())
	}
}
