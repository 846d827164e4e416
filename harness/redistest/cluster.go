package redistest

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster on loopback: masters with the 16384 slots split
// evenly between them, and optionally replicas of each, stopped when the
// test ends.
type Cluster struct {
	tb testing.TB
	// Servers are every node: the masters first (as started; a failover
	// changes roles, see Masters), then the replicas.
	Servers []*Server
	// ReplicaOf maps a replica's index in Servers to its master's at start.
	ReplicaOf map[int]int
	ids       []string // node ids, by index in Servers
}

// ClusterOptions shape StartClusterWith.
type ClusterOptions struct {
	Masters int
	// Replicas per master.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before its replica is promoted. 0: 2s.
	NodeTimeout time.Duration
}

// StartCluster starts n cluster-enabled masters, gives each its share of the
// slots, joins them and waits until every node reports the cluster ok.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	return StartClusterWith(tb, ClusterOptions{Masters: n})
}

// StartClusterWith starts o.Masters masters with o.Replicas replicas each
// (asynchronous replication, AOF everysec on every node), and waits until
// every node reports the cluster ok and every replica is in sync.
func StartClusterWith(tb testing.TB, o ClusterOptions) *Cluster {
	tb.Helper()
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = 2 * time.Second
	}
	n := o.Masters
	total := n * (1 + o.Replicas)
	c := &Cluster{tb: tb, ReplicaOf: map[int]int{}}
	for i := 0; i < total; i++ {
		dir := tb.TempDir()
		s := startWith(tb, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10), "--appendfsync", "everysec",
			// A replica may always take over, however long its link was down.
			"--cluster-replica-validity-factor", "0")
		c.Servers = append(c.Servers, s)
	}
	ctx := context.Background()
	first := redis.NewClient(&redis.Options{Addr: c.Servers[0].Addr(), MaintNotificationsConfig: noMaint})
	defer first.Close()
	for i, s := range c.Servers {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaintNotificationsConfig: noMaint})
		id, err := cl.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			tb.Fatalf("cluster myid on %s: %v", s.Addr(), err)
		}
		c.ids = append(c.ids, id)
		if i < n {
			lo, hi := i*16384/n, (i+1)*16384/n-1
			if err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
				tb.Fatalf("cluster addslotsrange %d %d on %s: %v", lo, hi, s.Addr(), err)
			}
		}
		cl.Close()
		if i > 0 {
			if err := first.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.Port)).Err(); err != nil {
				tb.Fatalf("cluster meet %s: %v", s.Addr(), err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	// Replicas can follow their master only once they know it.
	for i := n; i < total; i++ {
		m := (i - n) % n
		c.ReplicaOf[i] = m
		cl := redis.NewClient(&redis.Options{Addr: c.Servers[i].Addr(), MaintNotificationsConfig: noMaint})
		for {
			err := cl.Do(ctx, "CLUSTER", "REPLICATE", c.ids[m]).Err()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster replicate %s of %s: %v", c.Servers[i].Addr(), c.Servers[m].Addr(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
	for i, s := range c.Servers {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaintNotificationsConfig: noMaint})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			ok := err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(total)+"\r")
			if ok && i >= n {
				repl, err := cl.Info(ctx, "replication").Result()
				ok = err == nil && strings.Contains(repl, "master_link_status:up") && !strings.Contains(repl, "master_sync_in_progress:1")
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster node %s not ready after 30s: %s %v", s.Addr(), info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
	return c
}

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.Addr())
	}
	return out
}

// URL lists every node, the form keyalertd reads as a cluster.
func (c *Cluster) URL() string { return "redis://" + strings.Join(c.Addrs(), ",") }

// Client returns a cluster client closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaintNotificationsConfig: noMaint})
	c.tb.Cleanup(func() { cl.Close() })
	return cl
}

// MasterOf returns the index in Servers of the node serving key's slot now
// (asked of the running nodes, so it follows failovers).
func (c *Cluster) MasterOf(key string) int {
	c.tb.Helper()
	i := c.masterOf(key)
	if i < 0 {
		c.tb.Fatalf("no online master found for %q", key)
	}
	return i
}

// masterOf is MasterOf, -1 when no running node reports an online master
// for key's slot (a failover under way).
func (c *Cluster) masterOf(key string) int {
	ctx := context.Background()
	for _, s := range c.Servers {
		if s.cmd == nil {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaintNotificationsConfig: noMaint})
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			cl.Close()
			continue
		}
		slots, err := cl.ClusterShards(ctx).Result()
		cl.Close()
		if err != nil {
			continue
		}
		for _, sh := range slots {
			in := false
			for _, r := range sh.Slots {
				if int64(r.Start) <= slot && slot <= int64(r.End) {
					in = true
				}
			}
			if !in {
				continue
			}
			for _, nd := range sh.Nodes {
				if nd.Role == "master" && nd.Health == "online" {
					for i, srv := range c.Servers {
						if srv.Port == int(nd.Port) {
							return i
						}
					}
				}
			}
		}
	}
	return -1
}

// WaitMaster waits until key's slot is served by a master other than the
// server at index dead (a failover), up to d.
func (c *Cluster) WaitMaster(key string, dead int, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	ctx := context.Background()
	for time.Now().Before(deadline) {
		for i, s := range c.Servers {
			if i == dead || s.cmd == nil {
				continue
			}
			cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaintNotificationsConfig: noMaint})
			role, err := cl.Do(ctx, "ROLE").Slice()
			info, _ := cl.ClusterInfo(ctx).Result()
			cl.Close()
			if err == nil && len(role) > 0 && role[0] == "master" && strings.Contains(info, "cluster_state:ok") {
				if c.masterOf(key) == i {
					return i, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return -1, fmt.Errorf("no failover of %q within %v", key, d)
}
