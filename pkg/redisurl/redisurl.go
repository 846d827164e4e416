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

	"github.com/redis/go-redis/v9"
)

// URL is a parsed Redis URL:
//
//	redis://[user:pass@]host:port[/db]          one server
//	rediss://...                                 the same over TLS
//	redis://[user:pass@]h1:p1,h2:p2,h3:p3        a Redis Cluster (db must be 0)
type URL struct {
	TLS      bool
	Username string
	Password string
	Addrs    []string // host:port, at least one
	DB       int
}

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

// Redacted is the URL with the password replaced, for logs.
func (u URL) Redacted() string {
	var b strings.Builder
	if u.TLS {
		b.WriteString("rediss://")
	} else {
		b.WriteString("redis://")
	}
	if u.Username != "" || u.Password != "" {
		b.WriteString(url.User(u.Username).String())
		if u.Password != "" {
			b.WriteString(":xxxxx")
		}
		b.WriteByte('@')
	}
	b.WriteString(strings.Join(u.Addrs, ","))
	fmt.Fprintf(&b, "/%d", u.DB)
	return b.String()
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
	if strings.ContainsAny(rest, "?#") {
		return u, errors.New("query parameters and fragments are not supported")
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
