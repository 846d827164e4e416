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

	"github.com/keyalert/keyalert/harness/gendoc"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"KEYALERT_API_TOKENS": "t1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Ingest.Stream != "keyalert:events" || c.Listen != "127.0.0.1:8080" || c.Ingest.Group != "keyalertd" ||
		c.Ingest.Retention != 7*24*time.Hour || c.API.Retention != 7*24*time.Hour || c.Ingest.BatchSize != 1000 ||
		c.Ingest.Workers != 4 || c.Redis.Addrs[0] != "127.0.0.1:6379" {
		t.Errorf("defaults: %+v", c)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(c.Ingest.Consumer, host+"-") {
		t.Errorf("consumer %q: want <hostname>-<pid>", c.Ingest.Consumer)
	}
}

func TestHourlyRetentionDefaultsTo90DaysOrTheRetentionIfLonger(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want time.Duration
	}{
		{map[string]string{}, 90 * 24 * time.Hour},
		{map[string]string{"KEYALERT_RETENTION": "120d"}, 120 * 24 * time.Hour},
		{map[string]string{"KEYALERT_HOURLY_RETENTION": "1y"}, 0}, // not a duration of the grammar: checked below
		{map[string]string{"KEYALERT_RETENTION": "1d", "KEYALERT_HOURLY_RETENTION": "400d"}, 400 * 24 * time.Hour},
	}
	for _, tt := range tests {
		tt.env["KEYALERT_API_TOKENS"] = "t1"
		c, err := Load(nil, env(tt.env), io.Discard)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("%v: no error", tt.env)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Rollup.HourlyRetention != tt.want || c.API.HourlyRetention != tt.want || c.Rollup.Retention != c.Ingest.Retention {
			t.Errorf("%v: hourly retention %v/%v, want %v", tt.env, c.Rollup.HourlyRetention, c.API.HourlyRetention, tt.want)
		}
	}
}

func TestFlagBeatsEnvBeatsDefault(t *testing.T) {
	e := env(map[string]string{"KEYALERT_API_TOKENS": "a, b ,,", "KEYALERT_STREAM": "from-env", "KEYALERT_GROUP": "g-env"})
	c, err := Load([]string{"--stream", "from-flag", "--insecure-no-auth"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Ingest.Stream != "from-flag" || c.Ingest.Group != "g-env" || !c.API.InsecureNoAuth {
		t.Errorf("got stream %q group %q insecure %v", c.Ingest.Stream, c.Ingest.Group, c.API.InsecureNoAuth)
	}
	if !reflect.DeepEqual(c.API.Tokens, []string{"a", "b"}) {
		t.Errorf("tokens %q", c.API.Tokens)
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
		{"redis url unknown option", nil, map[string]string{"KEYALERT_REDIS_URL": "redis://:hunter2@x:1/0?dial=1s"}, `unknown option "dial"`, "hunter2"},
		{"redis url port", nil, map[string]string{"KEYALERT_REDIS_URL": "redis://:hunter2@x:99999/0"}, "port must be", "hunter2"},
		{"cluster with a db", nil, map[string]string{"KEYALERT_REDIS_URL": "redis://a:1,b:2/3"}, "only database 0", ""},
		{"stream with empty braces", nil, map[string]string{"KEYALERT_STREAM": "a{}b"}, "KEYALERT_STREAM", ""},
		{"stream shards zero", nil, map[string]string{"KEYALERT_STREAM_SHARDS": "0"}, `KEYALERT_STREAM_SHARDS = "0"`, ""},
		{"stream shards over the limit", []string{"--stream-shards=65"}, nil, "KEYALERT_STREAM_SHARDS (--stream-shards)", ""},
		{"wait replicas over the limit", nil, map[string]string{"KEYALERT_WAIT_REPLICAS": "17"}, "KEYALERT_WAIT_REPLICAS", ""},
		{"log level", nil, map[string]string{"KEYALERT_LOG_LEVEL": "loud"}, "KEYALERT_LOG_LEVEL", ""},
		{"insecure not a bool", nil, map[string]string{"KEYALERT_INSECURE_NO_AUTH": "maybe"}, "KEYALERT_INSECURE_NO_AUTH", ""},
		{"block out of range", []string{"--block=2h"}, nil, "KEYALERT_BLOCK (--block)", ""},
		{"hourly retention shorter than the retention", nil, map[string]string{"KEYALERT_RETENTION": "30d", "KEYALERT_HOURLY_RETENTION": "20d"}, `KEYALERT_HOURLY_RETENTION = "20d"`, ""},
		{"rollup hours per pass zero", nil, map[string]string{"KEYALERT_ROLLUP_HOURS_PER_PASS": "0"}, "KEYALERT_ROLLUP_HOURS_PER_PASS", ""},
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
		{"2w", 14 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"90s", 90 * time.Second, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"d", 0, false},
		{"1.5d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

var update = flag.Bool("update", false, "rewrite the settings table in the root README.md")

// The root README's settings table — the one place settings are documented —
// is generated from the settings; keep them in step.
func TestReadmeTableMatchesSettings(t *testing.T) {
	gendoc.Section{Path: "../../README.md", Begin: "<!-- settings:begin -->\n", End: "<!-- settings:end -->",
		Fix: "go test ./backend/config -run TestReadme -update"}.Check(t, MarkdownTable(), *update)
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"7d", "1h30m", "-1d", "99999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseDuration(s); err == nil && d <= 0 {
			t.Errorf("parseDuration(%q) = %v without error", s, d)
		}
	})
}

// One shard count feeds both the consumers and the keyword set the plugins
// read it from.
func TestStreamShardsReachIngestAndThePublishedSet(t *testing.T) {
	c, err := Load(nil, env(map[string]string{"KEYALERT_API_TOKENS": "t", "KEYALERT_STREAM_SHARDS": "3", "KEYALERT_WAIT_REPLICAS": "1"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Ingest.Shards != 3 || c.Rules.StreamShards != 3 || c.Ingest.WaitReplicas != 1 {
		t.Errorf("shards %d (ingest), %d (rules), wait %d; want 3, 3, 1", c.Ingest.Shards, c.Rules.StreamShards, c.Ingest.WaitReplicas)
	}
}
