// Package redisurl parses the Redis URL form the plugin's Redis_URL and
// keyalertd's KEYALERT_REDIS_URL share: one server, or a Redis Cluster when
// several addresses are given.
package redisurl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/duration"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// URL is a parsed Redis URL:
//
//	redis://[user:pass@]host:port[/db][?option=value&...]   one server
//	rediss://...                                             the same over TLS
//	redis://[user:pass@]h1:p1,h2:p2,h3:p3                    a Redis Cluster (db must be 0)
//
// Options (query parameters; see Params): dial_timeout, read_timeout,
// write_timeout (durations such as 500ms or 2s) and pool_size (connections
// per node). A zero field means the program's own default.
type URL struct {
	TLS      bool
	Username string
	Password string
	Addrs    []string // host:port, at least one
	DB       int

	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	PoolSize     int
}

// Params lists the query parameters Parse accepts, for docs and errors.
var Params = []string{"dial_timeout", "read_timeout", "write_timeout", "pool_size"}

// MaxPoolSize bounds pool_size.
const MaxPoolSize = 10000

// Cluster reports whether the URL lists several addresses.
func (u URL) Cluster() bool { return len(u.Addrs) > 1 }

// Options returns go-redis options; NewUniversalClient picks a cluster client
// for several addresses and a plain client for one.
func (u URL) Options() *redis.UniversalOptions {
	o := &redis.UniversalOptions{
		Addrs:    u.Addrs,
		Username: u.Username,
		Password: u.Password,
		DB:       u.DB,

		DialTimeout:  u.DialTimeout,
		ReadTimeout:  u.ReadTimeout,
		WriteTimeout: u.WriteTimeout,
		PoolSize:     u.PoolSize,
		// One dial per attempt: the command's own retries (MaxRetries, with
		// backoff) already dial again. go-redis's default of five dials 100 ms
		// apart per attempt made a call to a Redis that is down take ~2 s
		// and end in the caller's deadline instead of "connection refused".
		DialerRetries: 1,
		// A request's context deadline bounds its socket reads and writes
		// too: an API call or a flush never outlives its own deadline on a
		// Redis that accepts connections but does not answer.
		ContextTimeoutEnabled: true,
		// No maintenance-notification handshake: Redis before 8 refuses it,
		// and go-redis's fallback after the refusal writes shared options
		// without a lock when connections of one node client start at once
		// (a data race under the race detector with per-shard WAIT
		// connections).
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	// Context deadlines bound socket reads and writes too, so a Redis that
	// accepts connections but never answers cannot hold a caller past its
	// deadline.
	o.ContextTimeoutEnabled = true
	if u.TLS {
		host, _, _ := net.SplitHostPort(u.Addrs[0])
		o.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return o
}

// Redact replaces the password in raw's user info with "xxxxx" and keeps
// the rest as written. It works on the text, so it also covers values that do
// not parse: logs and config errors never show a password. It is keyalert's
// one URL redactor (Redis URLs of both halves).
func Redact(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return raw
	}
	user := rest[:at]
	if c := strings.IndexByte(user, ':'); c >= 0 {
		user = user[:c] + ":xxxxx"
	}
	return raw[:i+3] + user + rest[at:]
}

// Parse parses the URL form described on URL. Port defaults to
// 6379 and db to 0. Errors never include the password.
func Parse(s string) (URL, error) {
	var u URL
	rest, ok := strings.CutPrefix(s, "redis://")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "rediss://"); !ok {
			return u, errors.New("want redis://[user:pass@]host:port/db or rediss://... (comma-separated host:port for a cluster)")
		}
		u.TLS = true
	}
	if strings.Contains(rest, "#") {
		return u, errors.New("fragments are not supported")
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if err := u.parseQuery(query); err != nil {
			return u, err
		}
	}
	hosts, db, hasDB := strings.Cut(rest, "/")
	if at := strings.LastIndexByte(hosts, '@'); at >= 0 {
		info := hosts[:at]
		hosts = hosts[at+1:]
		user, pass, hasPass := strings.Cut(info, ":")
		var err error
		if u.Username, err = url.PathUnescape(user); err != nil {
			return u, errors.New("bad %-escape in the user name")
		}
		if hasPass {
			if u.Password, err = url.PathUnescape(pass); err != nil {
				return u, errors.New("bad %-escape in the password")
			}
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return u, errors.New("no host")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port given: "host" or "[::1]".
			host, port = h, "6379"
			if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
				host = h[1 : len(h)-1]
				if !strings.Contains(host, ":") {
					return u, fmt.Errorf("bad address %q: brackets are for IPv6 addresses", h)
				}
			} else if strings.Contains(h, ":") {
				return u, fmt.Errorf("bad address %q: want host:port", h)
			}
		}
		if !validHost(host) {
			return u, fmt.Errorf("bad address %q: want a host name or IP address", h)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return u, fmt.Errorf("bad address %q: port must be 1-65535", h)
		}
		u.Addrs = append(u.Addrs, net.JoinHostPort(host, port))
	}
	if hasDB && db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return u, fmt.Errorf("bad database %q: want a non-negative integer", db)
		}
		u.DB = n
	}
	if u.Cluster() && u.DB != 0 {
		return u, fmt.Errorf("database %d with a cluster: Redis Cluster has only database 0", u.DB)
	}
	return u, nil
}

func (u *URL) parseQuery(q string) error {
	vals, err := url.ParseQuery(q)
	if err != nil {
		return fmt.Errorf("bad query: %v", err)
	}
	for k, vs := range vals {
		if len(vs) != 1 {
			return fmt.Errorf("option %s given %d times", k, len(vs))
		}
		v := vs[0]
		var dst *time.Duration
		switch k {
		case "dial_timeout":
			dst = &u.DialTimeout
		case "read_timeout":
			dst = &u.ReadTimeout
		case "write_timeout":
			dst = &u.WriteTimeout
		case "pool_size":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxPoolSize {
				return fmt.Errorf("option pool_size=%q: want an integer from 1 to %d", v, MaxPoolSize)
			}
			u.PoolSize = n
			continue
		default:
			return fmt.Errorf("unknown option %q (known: %s)", k, strings.Join(Params, ", "))
		}
		d, err := duration.Parse(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("option %s=%q: want a positive %s", k, v, duration.Syntax)
		}
		*dst = d
	}
	return nil
}

// validHost accepts the characters of host names and IP addresses (with an
// IPv6 zone); it is a sanity check, not a resolver.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '%'
		if !ok {
			return false
		}
	}
	return true
}
