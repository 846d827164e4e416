package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"KEYALERT_API_TOKENS": "t1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream != "keyalert:events" || c.Listen != "127.0.0.1:8080" || c.Group != "keyalertd" ||
		c.Retention != 7*24*time.Hour || c.BatchSize != 1000 || c.Workers != 2 || c.Redis.Addrs[0] != "127.0.0.1:6379" {
		t.Errorf("defaults: %+v", c)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(c.Consumer, host+"-") {
		t.Errorf("consumer %q: want <hostname>-<pid>", c.Consumer)
	}
}

func TestFlagBeatsEnvBeatsDefault(t *testing.T) {
	e := env(map[string]string{"KEYALERT_API_TOKENS": "a, b ,,", "KEYALERT_STREAM": "from-env", "KEYALERT_GROUP": "g-env"})
	c, err := Load([]string{"--stream", "from-flag", "--insecure-no-auth"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream != "from-flag" || c.Group != "g-env" || !c.InsecureNoAuth {
		t.Errorf("got stream %q group %q insecure %v", c.Stream, c.Group, c.InsecureNoAuth)
	}
	if !reflect.DeepEqual(c.APITokens, []string{"a", "b"}) {
		t.Errorf("tokens %q", c.APITokens)
	}
}

func TestBadValuesNameTheSetting(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string // substring of the error
		notWant string // must not appear (secrets)
	}{
		{"retention not a duration", nil, map[string]string{"KEYALERT_RETENTION": "soon"}, `KEYALERT_RETENTION = "soon"`, ""},
		{"retention too short", []string{"--retention=1m"}, nil, "KEYALERT_RETENTION (--retention)", ""},
		{"batch size zero", nil, map[string]string{"KEYALERT_BATCH_SIZE": "0"}, "KEYALERT_BATCH_SIZE", ""},
		{"batch size text", nil, map[string]string{"KEYALERT_BATCH_SIZE": "lots"}, "want an integer", ""},
		{"redis url scheme", nil, map[string]string{"KEYALERT_REDIS_URL": "http://u:hunter2@x:1"}, "KEYALERT_REDIS_URL", "hunter2"},
		{"redis url port", nil, map[string]string{"KEYALERT_REDIS_URL": "redis://:hunter2@x:99999/0"}, "port must be", "hunter2"},
		{"cluster with a db", nil, map[string]string{"KEYALERT_REDIS_URL": "redis://a:1,b:2/3"}, "only database 0", ""},
		{"stream with empty braces", nil, map[string]string{"KEYALERT_STREAM": "a{}b"}, "KEYALERT_STREAM", ""},
		{"log level", nil, map[string]string{"KEYALERT_LOG_LEVEL": "loud"}, "KEYALERT_LOG_LEVEL", ""},
		{"insecure not a bool", nil, map[string]string{"KEYALERT_INSECURE_NO_AUTH": "maybe"}, "KEYALERT_INSECURE_NO_AUTH", ""},
		{"block out of range", []string{"--block=2h"}, nil, "KEYALERT_BLOCK (--block)", ""},
		{"empty listen", []string{"--listen="}, nil, "KEYALERT_LISTEN", ""},
		{"no tokens and not insecure", nil, map[string]string{"KEYALERT_API_TOKENS": ""}, "KEYALERT_API_TOKENS is empty", ""},
		{"unknown flag", []string{"--nope"}, nil, "nope", ""},
		{"stray argument", []string{"extra"}, nil, `unexpected argument "extra"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{"KEYALERT_API_TOKENS": "tok"}
			for k, v := range tt.env {
				e[k] = v
			}
			_, err := Load(tt.args, env(e), io.Discard)
			if err == nil {
				t.Fatalf("Load(%v, %v): no error", tt.args, tt.env)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q: want it to contain %q", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q leaks %q", err, tt.notWant)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var b strings.Builder
	_, err := Load([]string{"-h"}, env(nil), &b)
	if !errors.Is(err, ErrHelp) || !strings.Contains(b.String(), "KEYALERT_REDIS_URL") {
		t.Errorf("-h: err %v, usage %q", err, b.String())
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7d", 7 * 24 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"90s", 90 * time.Second, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"d", 0, false},
		{"1.5d", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseRedisURL(t *testing.T) {
	tests := []struct {
		in   string
		want RedisURL
	}{
		{"redis://127.0.0.1:6379/0", RedisURL{Addrs: []string{"127.0.0.1:6379"}}},
		{"redis://localhost", RedisURL{Addrs: []string{"localhost:6379"}}},
		{"redis://localhost/", RedisURL{Addrs: []string{"localhost:6379"}}},
		{"rediss://u:p%40ss@cache.example:6380/2", RedisURL{TLS: true, Username: "u", Password: "p@ss", Addrs: []string{"cache.example:6380"}, DB: 2}},
		{"redis://:secret@h:1/0", RedisURL{Password: "secret", Addrs: []string{"h:1"}}},
		{"redis://a:7000,b:7001, c:7002", RedisURL{Addrs: []string{"a:7000", "b:7001", "c:7002"}}},
		{"redis://[::1]:6380/1", RedisURL{Addrs: []string{"[::1]:6380"}, DB: 1}},
		{"redis://[::1]", RedisURL{Addrs: []string{"[::1]:6379"}}},
	}
	for _, tt := range tests {
		got, err := ParseRedisURL(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseRedisURL(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "localhost:6379", "redis://", "redis://h:0", "redis://h:x", "redis://h/-1", "redis://h/x", "redis://a:1,,b:2", "redis://h?db=1", "redis://::1"} {
		if _, err := ParseRedisURL(bad); err == nil {
			t.Errorf("ParseRedisURL(%q): want an error", bad)
		}
	}
}

func TestRedactedHidesPassword(t *testing.T) {
	u, _ := ParseRedisURL("rediss://user:hunter2@a:1,b:2")
	if got := u.Redacted(); got != "rediss://user:xxxxx@a:1,b:2/0" {
		t.Errorf("Redacted = %q", got)
	}
	o := u.Options()
	if len(o.Addrs) != 2 || o.TLSConfig == nil || o.Password != "hunter2" {
		t.Errorf("Options = %+v", o)
	}
}

var update = flag.Bool("update", false, "rewrite the settings table in the root README.md")

// The root README's settings table — the one place settings are documented —
// is generated from the settings; keep them in step.
func TestReadmeTableMatchesSettings(t *testing.T) {
	checkReadmeTable(t, "../../README.md")
}

func checkReadmeTable(t *testing.T, path string) {
	const begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s does not exist yet; once it has the settings markers, run\n  go test ./backend/config -run TestReadme -update", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Skipf("%s has no %q ... %q markers yet; add them and run\n  go test ./backend/config -run TestReadme -update", path, strings.TrimSpace(begin), end)
	}
	if doc[i+len(begin):j] == MarkdownTable() {
		return
	}
	if *update {
		doc = doc[:i+len(begin)] + MarkdownTable() + doc[j:]
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the settings table in %s is stale; run\n  go test ./backend/config -run TestReadme -update", path)
}

func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{"redis://h:1/0", "rediss://u:p@a:1,b:2", "redis://[::1]:2/3", "redis://%zz@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseRedisURL(s)
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
		back, err := ParseRedisURL(strings.Replace(u.Redacted(), ":xxxxx@", "@", 1))
		if err != nil || !reflect.DeepEqual(back.Addrs, u.Addrs) || back.DB != u.DB || back.TLS != u.TLS {
			t.Errorf("%q: redacted %q parses to %+v, %v", s, u.Redacted(), back, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"7d", "1h30m", "-1d", "99999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseDuration(s); err == nil && d <= 0 {
			t.Errorf("ParseDuration(%q) = %v without error", s, d)
		}
	})
}
