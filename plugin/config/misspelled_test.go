package config

import (
	"strings"
	"testing"
)

func TestMisspelledFindsNearMissesOnly(t *testing.T) {
	cases := []struct {
		set  []string // keys in the configuration, any case
		want string   // "Key>Want,..." in key order
	}{
		{[]string{"Keyword"}, "Keyword>Keywords"},
		{[]string{"ignorecase"}, "IgnoreCase>Ignore_Case"},
		{[]string{"Redis_URI"}, "Redis_URI>Redis_URL"},
		{[]string{"redis-url"}, "Redis-URL>Redis_URL"},
		{[]string{"Streams"}, "Streams>Stream"},
		{[]string{"Sampels"}, "Sampels>Samples"},
		{[]string{"Keywords", "Ignore_Case", "Match", "Retry_Limit", "Workers", "Host", "Port", "Tag", "storage.type", "tls.verify"}, ""},
		{[]string{"Something_Else"}, ""},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.set, ","), func(t *testing.T) {
			set := map[string]bool{}
			for _, k := range c.set {
				set[strings.ToLower(k)] = true
			}
			got := Misspelled(func(k string) string {
				if set[strings.ToLower(k)] {
					return "x"
				}
				return ""
			})
			var parts []string
			for _, m := range got {
				parts = append(parts, m.Key+">"+m.Want)
			}
			if g := strings.Join(parts, ","); !strings.EqualFold(g, c.want) {
				t.Errorf("got %q, want %q", g, c.want)
			}
		})
	}
}

func TestParseRefusesAMisspelledKey(t *testing.T) {
	get := func(k string) string {
		switch strings.ToLower(k) {
		case "keywords":
			return "ERROR"
		case "redis_uri":
			return "redis://:hunter2@db:6379/0"
		}
		return ""
	}
	_, err := Parse(get)
	if err == nil || !strings.Contains(err.Error(), "did you mean Redis_URL?") {
		t.Fatalf("err = %v, want a near-miss error", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestHostnameKeyTakesARecordAccessor(t *testing.T) {
	for _, c := range []struct{ v, err string }{
		{"$kubernetes['host']", ""},
		{"host", ""},
		{"kubernetes['host']", `Hostname_Key: record accessor "kubernetes['host']": brackets need a leading $`},
		{"$kubernetes['host'", `Hostname_Key: record accessor "$kubernetes['host'": unclosed [`},
	} {
		_, err := Parse(func(k string) string {
			switch k {
			case KeyKeywords:
				return "ERROR"
			case KeyHostnameKey:
				return c.v
			}
			return ""
		})
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: err = %v, want %q", c.v, err, c.err)
		}
	}
}
