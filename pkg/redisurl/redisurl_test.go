package redisurl

import (
	"reflect"
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "localhost:6379", "redis://", "redis://h:0", "redis://h:x", "redis://h/-1", "redis://h/x", "redis://a:1,,b:2", "redis://h?db=1", "redis://::1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): want an error", bad)
		}
	}
}

func TestRedactedHidesPassword(t *testing.T) {
	u, _ := Parse("rediss://user:hunter2@a:1,b:2")
	if got := u.Redacted(); got != "rediss://user:xxxxx@a:1,b:2/0" {
		t.Errorf("Redacted = %q", got)
	}
	o := u.Options()
	if len(o.Addrs) != 2 || o.TLSConfig == nil || o.Password != "hunter2" {
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
		// A parsed URL survives a round trip through its redacted form
		// apart from the password.
		back, err := Parse(strings.Replace(u.Redacted(), ":xxxxx@", "@", 1))
		if err != nil || !reflect.DeepEqual(back.Addrs, u.Addrs) || back.DB != u.DB || back.TLS != u.TLS {
			t.Errorf("%q: redacted %q parses to %+v, %v", s, u.Redacted(), back, err)
		}
	})
}
