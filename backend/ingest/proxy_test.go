package ingest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyalert/keyalert/harness/redisproxy"
	"github.com/redis/go-redis/v9"
)

// applyProxy stands between a consumer and Redis and acts on the writes
// that carry an apply script call (they name its SHA-1), whichever client
// sends them: go-redis or the cursor's connections of its own.
//
//   - hold: the first such write waits until release (a consumer stalled
//     between reading a batch and applying it);
//   - fail: every such write closes its connection instead of reaching Redis;
//   - before: runs before the first such write is passed on.
type applyProxy struct {
	*redisproxy.Proxy
	hold    atomic.Bool
	fail    atomic.Bool
	before  atomic.Pointer[func()]
	once    sync.Once
	held    chan struct{} // a write is held
	release chan struct{}
	resumed chan struct{} // the held write is let go
	calls   atomic.Int64  // writes with an apply call seen
}

func startApplyProxy(t *testing.T, target string) *applyProxy {
	t.Helper()
	p := &applyProxy{held: make(chan struct{}, 1), release: make(chan struct{}), resumed: make(chan struct{}, 1)}
	sha := []byte(applyScript.Hash())
	p.Proxy = redisproxy.Start(t, target, redisproxy.Hooks{ToServer: func(_ *redisproxy.Conn, b []byte) redisproxy.Action {
		if !bytes.Contains(b, sha) {
			return redisproxy.Forward
		}
		p.calls.Add(1)
		if p.fail.Load() {
			return redisproxy.Close
		}
		if f := p.before.Load(); f != nil {
			p.once.Do(*f)
		}
		if p.hold.CompareAndSwap(true, false) {
			p.held <- struct{}{}
			<-p.release
			p.resumed <- struct{}{}
		}
		return redisproxy.Forward
	}})
	return p
}

// client is a go-redis client of rdb's options through the proxy.
func (p *applyProxy) client(t *testing.T, rdb *redis.Client) *redis.Client {
	o := *rdb.Options() // a copy: Options is the client's own
	o.Addr = p.Addr()
	o.Dialer = nil // made anew, for the proxy's address
	c := redis.NewClient(&o)
	t.Cleanup(func() { c.Close() })
	return c
}
