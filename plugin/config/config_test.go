package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// props is a case-insensitive property set, as Fluent Bit looks keys up.
type props map[string]string

func (p props) get(key string) string {
	for k, v := range p {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse(props{"keywords": "Exception"}.get)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	checks := []struct {
		name      string
		got, want any
	}{
		{"addr", strings.Join(c.Redis.Addrs, ","), "127.0.0.1:6379"},
		{"db", c.DB(), 0},
		{"stream", c.Stream, stream.DefaultStream},
		{"keywords", len(c.Keywords), 1},
		{"keys", strings.Join(c.Keys, ","), "log,message"},
		{"allkeys", c.AllKeys, false},
		{"hostname", c.Hostname, host},
		{"samples", c.Samples, 1},
		{"maxlen", c.MaxLen, int64(1000000)},
		{"rules key", c.RulesKey, keyword.DefaultSetKey},
		{"rules interval", c.RulesInterval, 2 * time.Second},
		{"timeout", c.RedisTimeout, 5 * time.Second},
		{"wait replicas", c.WaitReplicas, 0},
		{"wait timeout", c.WaitTimeout, time.Second},
		{"read timeout", c.Redis.ReadTimeout, 5 * time.Second},
		{"dial timeout", c.Redis.DialTimeout, 5 * time.Second},
		{"tls", c.Redis.TLSConfig == nil, true},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name  string
		p     props
		check func(t *testing.T, c *Config)
	}{
		{"keywords split, escaped comma, trimmed", props{"Keywords": ` Exception , a\,b ,disk\s+full`},
			func(t *testing.T, c *Config) {
				want := []string{"Exception", "a,b", `disk\s+full`}
				if len(c.Keywords) != len(want) {
					t.Fatalf("keywords %v", c.Keywords)
				}
				for i, w := range want {
					if c.Keywords[i].Text != w {
						t.Errorf("keyword %d = %q, want %q", i, c.Keywords[i].Text, w)
					}
				}
			}},
		{"ignore case canonicalises and de-duplicates", props{"keywords": "Error,ERROR,warn", "IGNORE_CASE": "Yes"},
			func(t *testing.T, c *Config) {
				if len(c.Keywords) != 2 || c.Keywords[0].ID() != "substring/i:error" || c.Keywords[1].ID() != "substring/i:warn" {
					t.Errorf("keywords %v", c.Keywords)
				}
			}},
		{"match mode regex applies to all", props{"keywords": `a+b,c`, "match_mode": "Regex"},
			func(t *testing.T, c *Config) {
				for _, k := range c.Keywords {
					if k.Match != keyword.Regex {
						t.Errorf("%v not regex", k)
					}
				}
			}},
		{"star scans everything", props{"keywords": "x", "keys": " * "},
			func(t *testing.T, c *Config) {
				if !c.AllKeys || c.Keys != nil {
					t.Errorf("keys %v all %v", c.Keys, c.AllKeys)
				}
			}},
		{"custom keys", props{"keywords": "x", "keys": "msg, text"},
			func(t *testing.T, c *Config) {
				if strings.Join(c.Keys, "|") != "msg|text" {
					t.Errorf("keys %v", c.Keys)
				}
			}},
		{"rules off with static keywords", props{"keywords": "x", "rules_key": "OFF"},
			func(t *testing.T, c *Config) {
				if c.RulesKey != "" {
					t.Errorf("rules key %q", c.RulesKey)
				}
			}},
		{"no static keywords but following rules", props{},
			func(t *testing.T, c *Config) {
				if len(c.Keywords) != 0 || c.RulesKey != keyword.DefaultSetKey {
					t.Errorf("%v %q", c.Keywords, c.RulesKey)
				}
			}},
		{"rediss url with user, password, db", props{"keywords": "x", "redis_url": "rediss://u:secret@redis.example:6380/3"},
			func(t *testing.T, c *Config) {
				if c.Redis.TLSConfig == nil || strings.Join(c.Redis.Addrs, ",") != "redis.example:6380" || c.DB() != 3 || c.Redis.Password != "secret" || c.Redis.Username != "u" {
					t.Errorf("options %+v", c.Redis)
				}
				if strings.Contains(c.RedisURL, "secret") || strings.Contains(c.Identity(), "secret") {
					t.Errorf("password leaks: %q / %q", c.RedisURL, c.Identity())
				}
			}},
		{"durations in Go syntax", props{"keywords": "x", "rules_interval": "10s", "redis_timeout": "750ms"},
			func(t *testing.T, c *Config) {
				if c.RulesInterval != 10*time.Second || c.RedisTimeout != 750*time.Millisecond || c.Redis.WriteTimeout != 750*time.Millisecond {
					t.Errorf("%v %v", c.RulesInterval, c.RedisTimeout)
				}
			}},
		{"samples zero and max len zero", props{"keywords": "x", "samples": "0", "max_len": "0"},
			func(t *testing.T, c *Config) {
				if c.Samples != 0 || c.MaxLen != 0 {
					t.Errorf("%d %d", c.Samples, c.MaxLen)
				}
			}},
		{"hostname and hostname key", props{"keywords": "x", "hostname": "web-1", "hostname_key": "host"},
			func(t *testing.T, c *Config) {
				if c.Hostname != "web-1" || c.HostnameKey.String() != "host" {
					t.Errorf("%q %q", c.Hostname, c.HostnameKey)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.p.get)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseErrorsNameKeyAndValue(t *testing.T) {
	tests := []struct {
		name string
		p    props
		want []string // substrings of the error
		not  string   // must not appear
	}{
		{"samples not a number", props{"keywords": "x", "samples": "abc"}, []string{`Samples: "abc" is not a non-negative integer`}, ""},
		{"samples negative", props{"keywords": "x", "samples": "-1"}, []string{`Samples: "-1"`}, ""},
		{"samples over max", props{"keywords": "x", "samples": "101"}, []string{"Samples: 101 is over the limit of 100"}, ""},
		{"max len bad", props{"keywords": "x", "max_len": "1e6"}, []string{`Max_Len: "1e6"`}, ""},
		{"ignore case bad", props{"keywords": "x", "ignore_case": "maybe"}, []string{`Ignore_Case: "maybe"`}, ""},
		{"match mode bad", props{"keywords": "x", "match_mode": "fuzzy"}, []string{`Match_Mode: "fuzzy"`}, ""},
		{"regex does not compile", props{"keywords": "ok,(unclosed", "match_mode": "regex"}, []string{`Keywords: "(unclosed"`}, ""},
		{"empty keyword item", props{"keywords": "a,,b"}, []string{`Keywords: item 2 of "a,,b" is empty`}, ""},
		{"keyword too long", props{"keywords": strings.Repeat("k", 300)}, []string{"Keywords:", "over the limit"}, ""},
		{"empty keys item", props{"keywords": "x", "keys": "log,"}, []string{`Keys: item 2 of "log," is empty`}, ""},
		{"rules interval too short", props{"keywords": "x", "rules_interval": "500ms"}, []string{`Rules_Interval: "500ms" is out of range`}, ""},
		{"rules interval too long", props{"keywords": "x", "rules_interval": "61s"}, []string{`Rules_Interval: "61s" is out of range`}, ""},
		{"rules interval without a unit", props{"keywords": "x", "rules_interval": "10"}, []string{`Rules_Interval: "10" is not a duration: it has no unit (write "10s" for seconds)`}, ""},
		{"rules interval garbage", props{"keywords": "x", "rules_interval": "soon"}, []string{`Rules_Interval: "soon" is not a duration`}, ""},
		{"timeout zero", props{"keywords": "x", "redis_timeout": "0s"}, []string{`Redis_Timeout: "0s"`}, ""},
		{"wait replicas over the limit", props{"keywords": "x", "redis_wait_replicas": "17"}, []string{`Redis_Wait_Replicas: 17 is over the limit of 16`}, ""},
		{"wait replicas negative", props{"keywords": "x", "redis_wait_replicas": "-1"}, []string{`Redis_Wait_Replicas: "-1" is not a non-negative integer`}, ""},
		{"wait timeout too short", props{"keywords": "x", "redis_wait_timeout": "1ms"}, []string{`Redis_Wait_Timeout: "1ms" is out of range`}, ""},
		{"nothing to match", props{"rules_key": "none"}, []string{"Keywords:", "Rules_Key"}, ""},
		{"url scheme", props{"keywords": "x", "redis_url": "http://u:hunter2@h:1/0"}, []string{"Redis_URL:", "want redis://"}, "hunter2"},
		{"url unparsable hides password", props{"keywords": "x", "redis_url": "redis://u:hunter2@h:port/0"}, []string{"Redis_URL:", "xxxxx"}, "hunter2"},
		{"url bad db", props{"keywords": "x", "redis_url": "redis://:hunter2@h:1/zero"}, []string{"Redis_URL:", "bad database"}, "hunter2"},
		{"url no host", props{"keywords": "x", "redis_url": "redis:///0"}, []string{"Redis_URL:", "no host"}, ""},
		{"several errors reported together", props{"keywords": "x", "samples": "x", "max_len": "y"}, []string{"Samples:", "Max_Len:"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.p.get)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.not != "" && strings.Contains(err.Error(), tt.not) {
				t.Errorf("error %q reveals %q", err, tt.not)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	base := props{"keywords": "x", "hostname": "a", "redis_url": "redis://:pw1@h:1/0"}
	id := func(p props, over ...string) string {
		q := props{}
		for k, v := range p {
			q[k] = v
		}
		for i := 0; i+1 < len(over); i += 2 {
			q[over[i]] = over[i+1]
		}
		c, err := Parse(q.get)
		if err != nil {
			t.Fatal(err)
		}
		return c.Identity()
	}
	ref := id(base)
	if ref != id(base) {
		t.Fatal("identity not stable")
	}
	if id(base, "redis_url", "redis://:other@h:1/0") != ref {
		t.Error("password changes identity")
	}
	if id(base, "samples", "5", "max_len", "10", "redis_timeout", "2s", "max_series", "7", "tag_label", "on") != ref {
		t.Error("delivery options change identity")
	}
	for _, over := range [][]string{
		{"hostname", "b"}, {"redis_url", "redis://h:1/1"}, {"redis_url", "redis://h2:1/0"},
		{"stream", "s2"}, {"keywords", "y"}, {"keys", "*"}, {"rules_key", "off"}, {"hostname_key", "host"},
		{"label_keys", "$level"}, {"tag_label", "off"}, {"tag_regex", "(?P<app>.*)"},
	} {
		if id(base, over...) == ref {
			t.Errorf("%v does not change identity", over)
		}
	}
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a", []string{"a"}},
		{"a, b ,c", []string{"a", "b", "c"}},
		{`a\,b`, []string{"a,b"}},
		{`x\d+,y`, []string{`x\d+`, "y"}},
		{`trailing\`, []string{`trailing\`}},
		{",", []string{"", ""}},
	}
	for _, tt := range tests {
		got := SplitList(tt.in)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
