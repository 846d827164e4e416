package accessor

import (
	"bytes"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// treePaths are paths under one top-level key that share keys, end at maps,
// numbers and missing keys, go through arrays and repeat each other.
var treePaths = []string{
	"$kubernetes['namespace_name']",
	"$kubernetes['labels']['app']",
	"$kubernetes['labels']['app.kubernetes.io/name']",
	"$kubernetes['labels']['team']",
	"$kubernetes['restarts']",
	"$kubernetes['labels']",
	"$kubernetes",
	"$kubernetes['list'][1]",
	"$kubernetes['list'][2]['id']",
	"$kubernetes['pod_name']",
	"$kubernetes['namespace_name']",
	"$kubernetes[0]",
	"$kubernetes['labels']['app']['x']",
}

func mustTree(t testing.TB, srcs []string) (*Tree, []Accessor) {
	t.Helper()
	var paths []Accessor
	for _, s := range srcs {
		paths = append(paths, MustParse(s))
	}
	tree, err := NewTree(paths)
	if err != nil {
		t.Fatal(err)
	}
	return tree, paths
}

// checkTree compares one walk of the tree with each path's own In.
func checkTree(t *testing.T, tree *Tree, paths []Accessor, v []byte) {
	t.Helper()
	out := make([][]byte, tree.Len())
	tree.In(v, out)
	for i, p := range paths {
		want, ok := p.In(v)
		if got := out[i]; (got != nil) != ok || !bytes.Equal(got, want) {
			t.Errorf("%s: tree read %q (found %v), In %q (found %v)", p, got, got != nil, want, ok)
		}
	}
}

func TestTreeReadsWhatEachPathReads(t *testing.T) {
	tree, paths := mustTree(t, treePaths)
	kube := func(m map[string]any) []byte {
		b, err := msgp.AppendIntf(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Maps with a repeated key (msgp maps cannot hold one): the first wins,
	// also when it is not a map and the second is.
	dup := msgp.AppendMapHeader(nil, 3)
	dup = msgp.AppendString(dup, "namespace_name")
	dup = msgp.AppendString(dup, "first")
	dup = msgp.AppendString(dup, "namespace_name")
	dup = msgp.AppendString(dup, "second")
	dup = msgp.AppendString(dup, "pod_name")
	dup = msgp.AppendString(dup, "p")
	dup2 := msgp.AppendMapHeader(nil, 2)
	dup2 = msgp.AppendString(dup2, "labels")
	dup2 = msgp.AppendInt(dup2, 1)
	dup2 = msgp.AppendString(dup2, "labels")
	dup2 = msgp.AppendMapHeader(dup2, 1)
	dup2 = msgp.AppendString(dup2, "app")
	dup2 = msgp.AppendString(dup2, "x")
	cases := []struct {
		name string
		v    []byte
	}{
		{"nested maps, arrays, numbers, bin", kube(map[string]any{
			"pod_name": "shop-7d9f", "namespace_name": "shop", "restarts": 3, "list": []any{"a", []byte("b"), map[string]any{"id": "c"}},
			"labels": map[string]any{"app": "checkout", "app.kubernetes.io/name": "checkout-api"},
		})},
		{"missing keys", kube(map[string]any{"other": "x"})},
		{"empty values", kube(map[string]any{"namespace_name": "", "labels": map[string]any{"app": ""}})},
		{"values of the wrong type", kube(map[string]any{"namespace_name": 1.5, "labels": "app", "list": map[string]any{"1": "x"}})},
		{"the top value is text", msgp.AppendString(nil, "flat")},
		{"the top value is an array", msgp.AppendArrayHeader(msgp.AppendString(nil, "x"), 1)},
		{"repeated keys", dup},
		{"repeated keys, the first not a map", dup2},
		{"truncated", kube(map[string]any{"namespace_name": "shop", "labels": map[string]any{"app": "web"}})[:20]},
		{"empty", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkTree(t, tree, paths, c.v) })
	}
}

func TestTreeReadsOnlyItsKey(t *testing.T) {
	for _, c := range []struct {
		name  string
		paths []string
	}{
		{"none", nil},
		{"two top-level keys", []string{"$a['x']", "$b['x']"}},
		{"a zero accessor", []string{""}},
	} {
		var paths []Accessor
		for _, s := range c.paths {
			p, _ := Parse(s)
			paths = append(paths, p)
		}
		if _, err := NewTree(paths); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// FuzzTree: one walk of the tree reads what every path's In reads, on any
// bytes.
func FuzzTree(f *testing.F) {
	for _, v := range []any{
		k8sRecord["kubernetes"],
		map[string]any{"labels": map[string]any{"app": []any{"x"}}, "list": []any{1, "y", map[string]any{"id": "z"}}},
		"text", []any{"a", "b"}, 3,
	} {
		b, err := msgp.AppendIntf(nil, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	tree, paths := mustTree(f, treePaths)
	f.Fuzz(func(t *testing.T, v []byte) { checkTree(t, tree, paths, v) })
}
