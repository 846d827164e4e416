package redistest

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters on loopback, the 16384 slots split
// evenly between them, stopped when the test ends.
type Cluster struct {
	tb      testing.TB
	Servers []*Server
}

// StartCluster starts n cluster-enabled servers, gives each its share of the
// slots, joins them and waits until every node reports the cluster ok.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb}
	for i := 0; i < n; i++ {
		dir := tb.TempDir()
		s := startWith(tb, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000", "--appendfsync", "everysec")
		c.Servers = append(c.Servers, s)
	}
	ctx := context.Background()
	first := redis.NewClient(&redis.Options{Addr: c.Servers[0].Addr()})
	defer first.Close()
	for i, s := range c.Servers {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := cl.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			tb.Fatalf("cluster addslotsrange %d %d on %s: %v", lo, hi, s.Addr(), err)
		}
		cl.Close()
		if i > 0 {
			if err := first.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.Port)).Err(); err != nil {
				tb.Fatalf("cluster meet %s: %v", s.Addr(), err)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Servers {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr()})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster node %s not ready after 20s: %s %v", s.Addr(), info, err)
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
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.tb.Cleanup(func() { cl.Close() })
	return cl
}
