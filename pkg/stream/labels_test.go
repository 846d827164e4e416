package stream

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestVersion4CarriesLabels(t *testing.T) {
	e := sample()
	e.Labels = []Label{{"app", "shop"}, {"namespace", "prod \"eu\""}}
	kv := e.AppendValues(nil)
	if kv[1] != Version4 {
		t.Fatalf("version %v, want %s", kv[1], Version4)
	}
	strs := make([]string, len(kv))
	for i, v := range kv {
		strs[i] = v.(string)
	}
	got, err := ParseFields(strs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 2 || got.Labels[0] != e.Labels[0] || got.Labels[1] != e.Labels[1] {
		t.Fatalf("labels %+v, want %+v", got.Labels, e.Labels)
	}
	e.Labels = nil
	if kv := e.AppendValues(nil); kv[1] != Version {
		t.Fatalf("an entry without labels is written as version %v, want %s", kv[1], Version)
	}
}

func TestVersion4RejectsBadLabels(t *testing.T) {
	e := sample()
	e.Labels = []Label{{"app", "x"}}
	base := string(e.AppendPayload(nil))
	cut := strings.LastIndex(base, `,[`)
	for _, tc := range []struct{ name, labels, want string }{
		{"odd list", `["app"]`, "name, value pairs"},
		{"unsorted", `["b","1","a","2"]`, "sorted and unique"},
		{"duplicate", `["a","1","a","2"]`, "sorted and unique"},
		{"reserved host", `["host","x"]`, "reserved"},
		{"bad name", `["9x","1"]`, "not starting with a digit"},
		{"NUL in value", `["a","x\u0000y"]`, "control character"},
		{"long value", `["a","` + strings.Repeat("v", MaxLabelValueBytes+1) + `"]`, "over the limit"},
		{"too many", `[` + strings.Repeat(`"a","b",`, MaxLabels) + `"z","1"]`, "over the limit of 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFields([]string{FieldVersion, Version4, FieldEntry, base[:cut+1] + tc.labels + "]"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), FieldLabels) {
				t.Fatalf("err = %v, want it to name %q and contain %q", err, FieldLabels, tc.want)
			}
		})
	}
}

func TestSanitizeValue(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "web-1", "web-1"},
		{"NUL and newline", "web\x00-1\n", "web_-1_"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"long, cut at a character", strings.Repeat("é", 200), strings.Repeat("é", MaxLabelValueBytes/2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(SanitizeValue(nil, []byte(tc.in)))
			if got != tc.want {
				t.Fatalf("SanitizeValue(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if err := ValidValue(got); err != nil {
				t.Fatalf("sanitized value invalid: %v", err)
			}
		})
	}
}

func FuzzSanitizeValue(f *testing.F) {
	f.Add([]byte("web\x00\xff"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := SanitizeValue(nil, raw)
		if err := ValidValue(string(got)); err != nil || !utf8.Valid(got) {
			t.Fatalf("SanitizeValue(%q) = %q: %v", raw, got, err)
		}
	})
}

func TestSanitizeValueDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, MaxLabelValueBytes+4)
	raw := []byte("kube-system\x00\xff" + strings.Repeat("x", 300))
	if n := testing.AllocsPerRun(100, func() { buf = SanitizeValue(buf[:0], raw) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
