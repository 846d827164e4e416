package redisurl

import (
	"context"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseAcceptsTheDocumentedForms(t *testing.T) {
	tests := []struct {
		in   string
		want URL
	}{
		{"redis://127.0.0.1:6379/0", URL{Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://localhost", URL{Addrs: []string{"localhost:6379"}}},
		{"redis://localhost/", URL{Addrs: []string{"localhost:6379"}}},
		{"rediss://u:p%40ss@cache.example:6380/2", URL{TLS: true, Username: "u", Password: "p@ss", Addrs: []string{"cache.example:6380"}, DB: 2}},
		{"redis://:secret@h:1/0", URL{Password: "secret", Addrs: []string{"h:1"}}},
		{"redis://a:7000,b:7001, c:7002", URL{Addrs: []string{"a:7000", "b:7001", "c:7002"}}},
		{"redis://[::1]:6380/1", URL{Addrs: []string{"[::1]:6380"}, DB: 1}},
		{"redis://[::1]", URL{Addrs: []string{"[::1]:6379"}}},
		{"redis://h:1/0?dial_timeout=500ms&read_timeout=2s&write_timeout=1m&pool_size=20",
			URL{Addrs: []string{"h:1"}, DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second, WriteTimeout: time.Minute, PoolSize: 20}},
		{"redis://a:1,b:2?pool_size=5", URL{Addrs: []string{"a:1", "b:2"}, PoolSize: 5}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "localhost:6379", "redis://", "redis://h:0", "redis://h:x", "redis://h/-1", "redis://h/x", "redis://a:1,,b:2", "redis://h?db=1", "redis://::1",
		"redis://h?dial_timeout=5x", "redis://h?dial_timeout=-1s", "redis://h?pool_size=0", "redis://h?pool_size=x",
		"redis://h?read_timeout=1s&read_timeout=2s", "redis://h#frag", "redis://h?%zz"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): want an error", bad)
		}
	}
}

func TestRedactHidesPasswordAndKeepsTheRest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://u:pw@h:1/0", "redis://u:xxxxx@h:1/0"},
		{"rediss://user:hunter2@a:1,b:2", "rediss://user:xxxxx@a:1,b:2"},
		{"redis://h:1/0", "redis://h:1/0"},
		{"redis://u:pw@h:bad/0", "redis://u:xxxxx@h:bad/0"},
		{"redis://:pw@h/0?dial_timeout=1s", "redis://:xxxxx@h/0?dial_timeout=1s"},
		{"not a url", "not a url"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOptionsCarryTheURL(t *testing.T) {
	u, _ := Parse("rediss://user:hunter2@a:1,b:2?read_timeout=3s&pool_size=7")
	o := u.Options()
	if len(o.Addrs) != 2 || o.TLSConfig == nil || o.Password != "hunter2" || o.ReadTimeout != 3*time.Second ||
		o.PoolSize != 7 || !o.ContextTimeoutEnabled {
		t.Errorf("Options = %+v", o)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"redis://h:1/0", "rediss://u:p@a:1,b:2", "redis://[::1]:2/3", "redis://%zz@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s)
		if err != nil {
			// Long enough not to match the error's own words by chance.
			if len(u.Password) >= 12 && strings.Contains(err.Error(), u.Password) {
				t.Errorf("error %q leaks the password", err)
			}
			return
		}
		if len(u.Addrs) == 0 || (u.Cluster() && u.DB != 0) {
			t.Errorf("%q parsed to %+v", s, u)
		}
		// The redacted form of a valid URL is the same URL apart from
		// the password, and never shows it.
		red := Redact(s)
		back, err := Parse(red)
		if err != nil || !reflect.DeepEqual(back.Addrs, u.Addrs) || back.DB != u.DB || back.TLS != u.TLS {
			t.Errorf("%q: redacted %q parses to %+v, %v", s, red, back, err)
		}
		if len(u.Password) >= 6 && strings.Contains(red, u.Password) && !strings.Contains(strings.Replace(s, u.Password, "", 1), u.Password) {
			t.Errorf("Redact(%q) = %q shows the password", s, red)
		}
	})
}

// A Redis that is down is reported as such ("connection refused") to a
// caller with a deadline of a second, as /readyz has two: go-redis's own
// dial retries would otherwise outlast the deadline and hide the cause.
func TestRedisDownIsNamedWithinADeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	u, err := Parse("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewUniversalClient(u.Options())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("ping of a closed port: %v, want connection refused", err)
	}
}
