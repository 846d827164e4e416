package config

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/aggregate"
)

func TestLabelKeysParseNamesAndAccessors(t *testing.T) {
	tests := []struct {
		in   string
		want string // "name=accessor;..."
	}{
		{"", ""},
		{"$level", "level=$level"},
		{"level", "level=level"},
		{"namespace=$kubernetes['namespace_name'], app=$kubernetes['labels']['app'], $level",
			"namespace=$kubernetes['namespace_name'];app=$kubernetes['labels']['app'];level=$level"},
		{"$kubernetes['namespace_name']", "namespace_name=$kubernetes['namespace_name']"},
		{"$kubernetes['labels']['app.kubernetes.io/name']", "app_kubernetes_io_name=$kubernetes['labels']['app.kubernetes.io/name']"},
		{"$items[0]", "items=$items[0]"},
		{" ns = $kubernetes['namespace_name'] ", "ns=$kubernetes['namespace_name']"},
		// A '=' inside a bare accessor's brackets is part of the key.
		{"$m['a=b']", "a_b=$m['a=b']"},
		{`x=$m['a\,b']`, "x=$m['a,b']"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLabelKeys(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, l := range got {
				parts = append(parts, l.Name+"="+l.Path.String())
			}
			if g := strings.Join(parts, ";"); g != tt.want {
				t.Errorf("got %q, want %q", g, tt.want)
			}
		})
	}
}

// Every bad Label_Keys or Tag_Regex value is refused with an error naming
// the key and quoting the value.
func TestLabelKeysAndTagRegexRejectBadValues(t *testing.T) {
	nine := "$a,$b,$c,$d,$e,$f,$g,$h,$i"
	tests := []struct {
		name string
		p    props
		key  string
		want []string
	}{
		{"bad accessor", props{"label_keys": "app=$kubernetes['labels'"}, KeyLabelKeys, []string{"unclosed ["}},
		{"bad bare accessor", props{"label_keys": "$"}, KeyLabelKeys, []string{`"$"`}},
		{"empty item", props{"label_keys": "$a,,$b"}, KeyLabelKeys, []string{"item 2", "empty"}},
		{"duplicate name", props{"label_keys": "app=$a, $kubernetes['labels']['app']"}, KeyLabelKeys, []string{`"app" is used twice`}},
		{"reserved derived name", props{"label_keys": "$kubernetes['host']"}, KeyLabelKeys, []string{`"host" is reserved`, "name it"}},
		{"reserved given name", props{"label_keys": "tag=$t"}, KeyLabelKeys, []string{`"tag" is reserved`}},
		{"bad given name", props{"label_keys": "app-name=$a"}, KeyLabelKeys, []string{`"app-name"`, "letters, digits and _"}},
		{"derived name starting with a digit", props{"label_keys": "$m['1x']"}, KeyLabelKeys, []string{`"1x"`, "name it"}},
		{"long name", props{"label_keys": strings.Repeat("n", 65) + "=$a"}, KeyLabelKeys, []string{"longer than 64"}},
		{"more than eight", props{"label_keys": nine}, KeyLabelKeys, []string{"9 labels, at most 8"}},
		{"regex does not compile", props{"tag_regex": "(?P<app>[a-"}, KeyTagRegex, []string{"does not compile"}},
		{"regex without named groups", props{"tag_regex": `^kube\.(.*)$`}, KeyTagRegex, []string{"no named group"}},
		{"regex group reserved", props{"tag_regex": `(?P<host>.*)`}, KeyTagRegex, []string{`"host" is reserved`}},
		{"regex group also a label key", props{"label_keys": "$app", "tag_regex": `(?P<app>.*)`}, KeyTagRegex, []string{`"app" names a label twice`}},
		{"regex group twice", props{"tag_regex": `(?P<a>x)|(?P<a>y)`}, KeyTagRegex, []string{`"a" names a label twice`}},
		{"keys and groups over eight", props{"label_keys": "$a,$b,$c,$d,$e,$f", "tag_regex": `(?P<x>.)(?P<y>.)(?P<z>.)`}, KeyTagRegex, []string{"make 9 labels, at most 8"}},
		{"tag label not a boolean", props{"tag_label": "maybe"}, KeyTagLabel, []string{`"maybe"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p["keywords"] = "x"
			_, err := Parse(tt.p.get)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.key+": ") {
				t.Errorf("error %q does not start with the key %s", msg, tt.key)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestLabelDefaultsAndLabelNames(t *testing.T) {
	c, err := Parse(props{"keywords": "x"}.get)
	if err != nil {
		t.Fatal(err)
	}
	if !c.TagLabel || c.TagRegex != nil || len(c.LabelKeys) != 0 || c.MaxSeries != aggregate.DefaultMaxSeries {
		t.Errorf("defaults: tag label %v, regex %v, labels %v, max series %d", c.TagLabel, c.TagRegex, c.LabelKeys, c.MaxSeries)
	}
	c, err = Parse(props{"keywords": "x", "label_keys": "namespace=$kubernetes['namespace_name'], $level", "tag_label": "off",
		"tag_regex": `^kube\.var\.log\.containers\.(?P<pod>[^_]+)_(?P<ns>[^_]+)_(?P<container>.+)-[0-9a-f]{64}\.log$`, "max_series": "5"}.get)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.LabelNames(), ","); got != "namespace,level,pod,ns,container" {
		t.Errorf("label names %s", got)
	}
	if c.TagLabel || c.MaxSeries != 5 {
		t.Errorf("tag label %v, max series %d", c.TagLabel, c.MaxSeries)
	}
}

// FuzzLabelKeys: whatever the value, Label_Keys parses or errors without
// panicking, and what it accepts is a valid label set: valid, unique names,
// at most stream.MaxLabels, each with a parsed accessor.
func FuzzLabelKeys(f *testing.F) {
	for _, s := range []string{
		"namespace=$kubernetes['namespace_name'], app=$kubernetes['labels']['app'], $level",
		"$kubernetes['labels']['app.kubernetes.io/name']", "$items[0]", "a=b=c", "=$x", "$", "x=", `$m['a\,b']`,
		"$a,$b,$c,$d,$e,$f,$g,$h,$i", "host", "$m[\"é\"]", "$m['\x00']",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseLabelKeys(s)
		if err != nil {
			if got != nil {
				t.Fatalf("%q: labels %v returned with the error %v", s, got, err)
			}
			return
		}
		if len(got) > stream.MaxLabels {
			t.Fatalf("%q: %d labels accepted", s, len(got))
		}
		seen := map[string]bool{}
		for _, l := range got {
			if err := stream.ValidLabelName(l.Name); err != nil {
				t.Fatalf("%q: accepted name %q: %v", s, l.Name, err)
			}
			if seen[l.Name] {
				t.Fatalf("%q: name %q twice", s, l.Name)
			}
			seen[l.Name] = true
			if l.Path.IsZero() {
				t.Fatalf("%q: label %q has no accessor", s, l.Name)
			}
		}
		if d := DerivedLabelName(s); len(d) != len(s) || !utf8.ValidString(d) {
			t.Fatalf("DerivedLabelName(%q) = %q changed the length", s, d)
		}
	})
}
