package main

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/redisproxy"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// replyDropper is a loopback proxy in front of Redis that, when armed, lets
// the next EXEC through and drops everything Redis answers on that
// connection: the write happens, its reply is lost. With reset set, the
// connection is closed when the reply comes instead of hanging: the client
// sees the connection end after its write ran.
type replyDropper struct {
	*redisproxy.Proxy
	armed atomic.Bool
	reset atomic.Bool
}

func startReplyDropper(t *testing.T, redisAddr string) *replyDropper {
	d := &replyDropper{}
	d.Proxy = redisproxy.Start(t, redisAddr, redisproxy.Hooks{
		ToServer: func(c *redisproxy.Conn, b []byte) redisproxy.Action {
			if bytes.Contains(bytes.ToLower(b), []byte("$4\r\nexec\r\n")) && d.armed.CompareAndSwap(true, false) {
				c.Marked.Store(true)
			}
			return redisproxy.Forward
		},
		ToClient: func(c *redisproxy.Conn, b []byte) redisproxy.Action {
			switch {
			case !c.Marked.Load():
				return redisproxy.Forward
			case d.reset.Load():
				return redisproxy.Close
			}
			return redisproxy.Drop
		},
	})
	return d
}

// The plugin's write of a chunk succeeds but its reply is lost: the plugin
// asks for a retry after Redis_Timeout, Fluent Bit flushes the same chunk
// again, and keyalertd counts it once — with keyalertd running throughout,
// and with it started only after both copies are in the stream.
func TestPluginRetryAfterLostReplyCountsOnce(t *testing.T) {
	for _, tt := range []struct {
		name      string
		startLate bool
		reset     bool // the connection ends instead of hanging
	}{
		{"keyalertd running", false, false},
		{"keyalertd started after the retry", true, false},
		// A Redis restart, a proxy or a NAT ending the connection after the
		// write ran: the Redis client must not send the transaction again by
		// itself, since a resent write repeats the chunk's attempt and two
		// copies of one attempt both count.
		{"connection reset after the write", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs := redistest.Start(t)
			rdb := rs.Client()
			ctx := context.Background()
			var p *proc
			if !tt.startLate {
				p = start(t, baseEnv(rs.URL()))
			}
			proxy := startReplyDropper(t, rs.Addr())
			proxy.reset.Store(tt.reset)
			h := flbhost.StartForTest(t)
			pluginInstance(t, h, "lost", "redis://"+proxy.Addr()+"/0", map[string]string{"Keywords": "LOSTREPLY", "Rules_Key": "off", "Redis_Timeout": "300ms"})
			c := linesWith(t, "LOSTREPLY", 25)
			proxy.armed.Store(true)
			if rc, err := h.Flush("lost", "app.log", c); err != nil || rc != flbhost.Retry {
				t.Fatalf("flush whose reply is lost: rc %d, %v; want a retry", rc, err)
			}
			if n := rdb.XLen(ctx, "keyalert:events").Val(); n != 1 {
				t.Fatalf("%d entries in the stream after the lost reply, want the chunk's one (a resent write?)", n)
			}
			flushOK(t, h, "lost", "app.log", c) // Fluent Bit's retry of the same chunk
			if n := rdb.XLen(ctx, "keyalert:events").Val(); n != 2 {
				t.Fatalf("%d entries in the stream, want the chunk's entry twice", n)
			}
			if tt.startLate {
				p = start(t, baseEnv(rs.URL()))
			}
			drained(t, rdb, 15*time.Second)
			if got := p.total(t, keyword.Spec{Text: "LOSTREPLY"}, ""); got != 25 {
				t.Errorf("counted %d, want the chunk's 25 once", got)
			}
			if d := p.metric(t, "keyalert_ingest_duplicates_total"); d != 1 {
				t.Errorf("duplicates %v, want the retry's one entry", d)
			}
		})
	}
}

// linesWith is a chunk of n records, each a line holding word.
func linesWith(t *testing.T, word string, n int) []byte {
	t.Helper()
	var c []byte
	for i := 0; i < n; i++ {
		var err error
		c, err = chunk.AppendEvent(c, chunk.FormatV2, time.Now(), chunk.EventTime, map[string]any{"log": fmt.Sprintf("line %d %s here", i, word)})
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}
