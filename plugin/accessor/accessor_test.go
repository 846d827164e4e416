package accessor

import (
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// k8sRecord is shaped like the kubernetes filter's output, with a JSON log's
// level merged to the top (Merge_Log On).
var k8sRecord = map[string]any{
	"log":   "ERROR payment failed",
	"level": "error",
	"kubernetes": map[string]any{
		"pod_name":       "shop-7d9f",
		"namespace_name": "shop",
		"container_name": "api",
		"labels":         map[string]any{"app": "checkout", "app.kubernetes.io/name": "checkout-api"},
		"restarts":       3,
	},
	"items": []any{"first", map[string]any{"id": "second"}},
	"blob":  []byte("raw-bytes"),
}

func encode(t testing.TB, v map[string]any) []byte {
	t.Helper()
	b, err := msgp.AppendIntf(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLookupFollowsThePath(t *testing.T) {
	rec := encode(t, k8sRecord)
	cases := []struct {
		path, want string
		found      bool
	}{
		{"$level", "error", true},
		{"level", "error", true},
		{"$kubernetes['namespace_name']", "shop", true},
		{`$kubernetes["pod_name"]`, "shop-7d9f", true},
		{"$kubernetes['labels']['app']", "checkout", true},
		{"$kubernetes['labels']['app.kubernetes.io/name']", "checkout-api", true},
		{"$items[0]", "first", true},
		{"$items[1]['id']", "second", true},
		{"$blob", "raw-bytes", true},
		// Absent, or not text: read as absent.
		{"$missing", "", false},
		{"$kubernetes['labels']['team']", "", false},
		{"$kubernetes['restarts']", "", false},
		{"$kubernetes", "", false},
		{"$items[5]", "", false},
		{"$level['x']", "", false},
		{"$items['x']", "", false},
		{"$kubernetes[0]", "", false},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			a, err := Parse(c.path)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := a.Lookup(rec)
			if ok != c.found || string(got) != c.want {
				t.Errorf("Lookup = %q, %v; want %q, %v", got, ok, c.want, c.found)
			}
		})
	}
}

func TestParseNamesAndErrors(t *testing.T) {
	cases := []struct {
		in, name, top, err string
	}{
		{in: "$log", name: "log", top: "log"},
		{in: " host ", name: "host", top: "host"},
		{in: "$kubernetes['labels']['app']", name: "app", top: "kubernetes"},
		{in: "$items[2]", name: "items", top: "items"},
		{in: "", err: "empty record accessor"},
		{in: "$", err: "want a key after $"},
		{in: "$['a']", err: "want a key after $"},
		{in: "kubernetes['a']", err: "brackets need a leading $"},
		{in: "$a['b'", err: "unclosed ["},
		{in: "$a['']", err: "empty key in []"},
		{in: "$a[b]", err: "neither a quoted key nor an array index"},
		{in: "$a[-1]", err: "neither a quoted key nor an array index"},
		{in: "$a['b']x", err: "want [ at"},
		{in: "$a['b'c']", err: "quote inside key"},
		{in: "$a" + strings.Repeat("['b']", MaxDepth), err: "at most 8"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			a, err := Parse(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Name() != c.name || a.Top() != c.top {
				t.Errorf("Name %q Top %q, want %q %q", a.Name(), a.Top(), c.name, c.top)
			}
		})
	}
}

func TestLookupOnBrokenInputReadsNothing(t *testing.T) {
	a := MustParse("$kubernetes['labels']['app']")
	rec := encode(t, k8sRecord)
	for i := range rec {
		if _, ok := a.Lookup(rec[:i]); ok && i < len(rec)/2 {
			// A truncated record may still hold the path whole; it must
			// never panic or read past the slice (the race detector and
			// bounds checks catch that).
			continue
		}
	}
	if _, ok := (Accessor{}).Lookup(rec); ok {
		t.Error("the zero Accessor read something")
	}
}

func FuzzAccessor(f *testing.F) {
	rec := encode(f, k8sRecord)
	f.Add("$kubernetes['labels']['app']", rec)
	f.Add("$items[1]['id']", rec)
	f.Add("level", []byte{0x81, 0xa1, 'a', 0xc0})
	f.Fuzz(func(t *testing.T, path string, record []byte) {
		a, err := Parse(path)
		if err != nil {
			return
		}
		if v, ok := a.Lookup(record); ok && len(v) > len(record) {
			t.Fatalf("value longer than the record")
		}
	})
}

func BenchmarkLookupNested(b *testing.B) {
	rec := encode(b, k8sRecord)
	a := MustParse("$kubernetes['labels']['app']")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.Lookup(rec); !ok {
			b.Fatal("not found")
		}
	}
}

// InAt(v, i) from the value segment i-1 led to reads what Lookup reads, and
// Key names the key segments only.
func TestInAtContinuesThePath(t *testing.T) {
	rec := encode(t, k8sRecord)
	kube, ok := mapValue(rec, "kubernetes")
	if !ok {
		t.Fatal("no kubernetes map")
	}
	labels, _ := mapValue(kube, "labels")
	a := MustParse("$kubernetes['labels']['app']")
	for i, v := range [][]byte{kube, labels} {
		got, ok := a.InAt(v, i+1)
		if !ok || string(got) != "checkout" {
			t.Errorf("InAt(…, %d) = %q %v, want checkout", i+1, got, ok)
		}
	}
	if _, ok := a.InAt(kube, 0); ok {
		t.Error("InAt(…, 0) read something")
	}
	if k, ok := a.Key(1); !ok || k != "labels" || a.Len() != 3 {
		t.Errorf("Key(1) = %q %v, Len %d", k, ok, a.Len())
	}
	if _, ok := MustParse("$items[0]").Key(1); ok {
		t.Error("an index segment has a key")
	}
	if _, ok := a.Key(3); ok {
		t.Error("Key past the end")
	}
}
