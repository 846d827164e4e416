package accessor

import (
	"fmt"

	"github.com/keyalert/keyalert/plugin/chunk"
)

// MaxTreePaths bounds the paths of one Tree (a bit set tracks which map
// keys a walk has found); the plugin reads at most stream.MaxLabels labels
// and a host.
const MaxTreePaths = 64

// Tree reads several paths that start at the same top-level key in one walk
// of the value under it: the paths' keys form a trie, each map on the way
// is walked once for every path through it, as far as the last key any of
// them needs, and the values nobody asked for are skipped by their msgpack
// length without being decoded. It reads exactly what each path's In reads
// (the first of repeated keys, text values only); FuzzTree checks it.
type Tree struct {
	paths []Accessor
	root  node
}

// node is one step of the trie: the value its key led to.
type node struct {
	key   string // the map key leading here from the parent
	depth int    // segments consumed to get here (1 at the root)
	ends  []int  // paths ending here
	tails []int  // paths continuing with an array index: Accessor.InAt(v, depth)
	kids  []node // paths continuing with a map key
}

// NewTree returns the tree of paths, which all start with the same
// top-level key; out[i] of In is paths[i]'s value.
func NewTree(paths []Accessor) (*Tree, error) {
	if len(paths) == 0 || len(paths) > MaxTreePaths {
		return nil, fmt.Errorf("accessor tree: %d paths, want 1 to %d", len(paths), MaxTreePaths)
	}
	t := &Tree{paths: paths, root: node{key: paths[0].Top(), depth: 1}}
	for i, p := range paths {
		if p.IsZero() || p.Top() != t.root.key {
			return nil, fmt.Errorf("accessor tree: path %q does not start with key %q", p.src, t.root.key)
		}
		n := &t.root
		for {
			if n.depth == len(p.path) {
				n.ends = append(n.ends, i)
				break
			}
			seg := p.path[n.depth]
			if seg.key == "" {
				n.tails = append(n.tails, i)
				break
			}
			n = n.kid(seg.key)
		}
	}
	return t, nil
}

// kid returns the child for key, adding it if need be.
func (n *node) kid(key string) *node {
	for i := range n.kids {
		if n.kids[i].key == key {
			return &n.kids[i]
		}
	}
	n.kids = append(n.kids, node{key: key, depth: n.depth + 1})
	return &n.kids[len(n.kids)-1]
}

// Top is the top-level key every path starts with.
func (t *Tree) Top() string { return t.root.key }

// Len is the number of paths.
func (t *Tree) Len() int { return len(t.paths) }

// In follows every path from v, the value under Top, and sets out[i] to the
// text (msgpack str or bin, in place) path i ends at; out[i] is left as it
// is when path i reads nothing (see Accessor.In). out must hold Len values.
func (t *Tree) In(v []byte, out [][]byte) {
	t.walk(&t.root, v, out)
}

func (t *Tree) walk(n *node, v []byte, out [][]byte) {
	for _, i := range n.ends {
		if text, ok := chunk.Text(v); ok {
			out[i] = text
		}
	}
	for _, i := range n.tails {
		if text, ok := t.paths[i].InAt(v, n.depth); ok {
			out[i] = text
		}
	}
	if len(n.kids) == 0 {
		return
	}
	mp, err := chunk.NewMap(v)
	if err != nil {
		return
	}
	var done uint64 // kids found: a repeated key keeps its first value
	for left := len(n.kids); left > 0; {
		k, val, ok := mp.Next()
		if !ok {
			return
		}
		for j := range n.kids {
			kid := &n.kids[j]
			if len(k) == len(kid.key) && done&(1<<j) == 0 && string(k) == kid.key {
				done |= 1 << j
				left--
				t.walk(kid, val, out)
				break
			}
		}
	}
}
