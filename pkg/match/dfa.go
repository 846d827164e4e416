package match

import (
	"fmt"
	"unsafe"
)

// hit kinds: what a pattern ending at the current byte means.
const (
	hitSubstring uint8 = iota // the keyword is found
	hitWord                   // found if the occurrence has word boundaries
	hitGate                   // the keyword's regex must run on this text
)

// hit is one output of an automaton state.
type hit struct {
	kw   int32 // keyword index
	n    int32 // pattern length in bytes
	kind uint8
	bit  uint8 // hitGate: which of the regex's gates this literal belongs to
}

// pattern is one byte string fed into an automaton.
type pattern struct {
	text string
	hit  hit
}

// dfa is an Aho-Corasick automaton compiled to a dense table over byte
// classes.
type dfa struct {
	// class maps a byte to its equivalence class: each byte used by a pattern
	// has its own class, all other bytes share class 0. In the folding
	// automaton 'A'..'Z' share the class of 'a'..'z', which is all case
	// folding costs.
	class [256]uint8
	nc    uint32 // number of classes
	// trans[st+class] is the next state; trans[st+nc] is the state's depth,
	// the length of the longest pattern prefix it tracks. States are
	// premultiplied by stride = nc+1, so a step is one load (see step in
	// match.go, which relies on every entry being a row's offset).
	// States with outputs are numbered last, so "has output" is
	// st >= matchMin.
	trans []uint32
	// col[b] is &trans[class[b]], so that the scan loops step with one
	// load: trans[st+class[b]] is at col[b] + 4*st (see step).
	col      [256]unsafe.Pointer
	stride   uint32
	matchMin uint32
	// outStart[st/stride-firstMatch] .. outStart[...+1] indexes outs: the
	// patterns ending at that state, including those reached through failure
	// links.
	firstMatch uint32
	outStart   []uint32
	outs       []hit
	states     int
	maxLen     int // longest pattern in bytes
}

// maxTable bounds the transition table (entries of 4 bytes) so a huge keyword
// set fails to compile instead of exhausting memory or overflowing state ids.
const maxTable = 1 << 26

// buildDFA compiles patterns (already ASCII-lowercased when fold) into a DFA.
func buildDFA(pats []pattern, fold bool) (*dfa, error) {
	d := &dfa{}
	var used [256]bool
	for _, p := range pats {
		for i := 0; i < len(p.text); i++ {
			used[p.text[i]] = true
		}
	}
	next := 1
	for b := range 256 {
		if used[b] {
			d.class[b] = uint8(next)
			next++
		}
	}
	if fold {
		for b := 'A'; b <= 'Z'; b++ {
			d.class[b] = d.class[b+'a'-'A']
		}
	}
	nc := next
	d.nc, d.stride = uint32(nc), uint32(nc+1)

	// Trie over classes; -1 is "no edge".
	goTo := make([]int32, nc)
	for i := range goTo {
		goTo[i] = -1
	}
	own := [][]hit{nil}
	depth := []int32{0}
	for _, p := range pats {
		s := int32(0)
		for i := 0; i < len(p.text); i++ {
			c := int(d.class[p.text[i]])
			if goTo[int(s)*nc+c] < 0 {
				if (len(own)+1)*(nc+1) > maxTable {
					return nil, fmt.Errorf("keyword set too large: automaton over %d states x %d byte classes", len(own), nc)
				}
				goTo[int(s)*nc+c] = int32(len(own))
				own = append(own, nil)
				depth = append(depth, int32(i+1))
				for range nc {
					goTo = append(goTo, -1)
				}
			}
			s = goTo[int(s)*nc+c]
		}
		own[s] = append(own[s], p.hit)
	}
	n := len(own)

	// Breadth-first: a state's failure target is shallower, so its row and
	// outputs are final when the state is reached.
	delta := make([]int32, n*nc)
	fail := make([]int32, n)
	outs := make([][]hit, n)
	queue := make([]int32, 0, n)
	for c := range nc {
		if ch := goTo[c]; ch >= 0 {
			delta[c] = ch
			queue = append(queue, ch)
		}
	}
	for qi := 0; qi < len(queue); qi++ {
		s := queue[qi]
		f := fail[s]
		outs[s] = append(append([]hit(nil), own[s]...), outs[f]...)
		for c := range nc {
			if ch := goTo[int(s)*nc+c]; ch >= 0 {
				fail[ch] = delta[int(f)*nc+c]
				delta[int(s)*nc+c] = ch
				queue = append(queue, ch)
			} else {
				delta[int(s)*nc+c] = delta[int(f)*nc+c]
			}
		}
	}

	d.finish(delta, outs, depth, append([]int32{0}, queue...))
	for _, p := range pats {
		d.maxLen = max(d.maxLen, len(p.text))
	}
	return d, nil
}

// finish fills the table from delta (state numbers, n rows of nc), the
// per-state outputs and depths. States are renumbered in breadth-first order (given,
// root first), those without outputs first, then the rest: shallow states,
// where a scan spends most steps, share cache lines and pages.
func (d *dfa) finish(delta []int32, outs [][]hit, depth []int32, bfs []int32) {
	n, nc, stride := len(outs), int(d.nc), int(d.stride)
	d.states = n
	id := make([]uint32, n)
	var k uint32
	for _, s := range bfs {
		if len(outs[s]) == 0 {
			id[s] = k
			k++
		}
	}
	d.firstMatch = k
	d.outStart = make([]uint32, 0, uint32(n)-k+1)
	for _, s := range bfs {
		if len(outs[s]) > 0 {
			id[s] = k
			k++
			d.outStart = append(d.outStart, uint32(len(d.outs)))
			d.outs = append(d.outs, outs[s]...)
		}
	}
	d.outStart = append(d.outStart, uint32(len(d.outs)))
	d.matchMin = d.firstMatch * d.stride
	d.trans = make([]uint32, n*stride)
	for s := range n {
		row := d.trans[int(id[s])*stride : int(id[s]+1)*stride]
		for c := range nc {
			row[c] = id[delta[s*nc+c]] * d.stride
		}
		row[nc] = uint32(depth[s])
	}
	for b, c := range d.class {
		d.col[b] = unsafe.Pointer(&d.trans[c])
	}
}

// product combines two automata into one that tracks both states, so the
// scan loop steps one table instead of two. Its classes are the distinct
// (class in a, class in b) pairs. Only pairs reachable from the two roots
// become states, which in practice is about as many as a and b have
// together; ok is false when there would be more than maxStates.
func product(a, b *dfa, maxStates int) (_ *dfa, ok bool) {
	d := &dfa{maxLen: max(a.maxLen, b.maxLen)}
	pairClass := map[[2]uint8]uint8{{0, 0}: 0}
	var classPair [][2]uint8 = [][2]uint8{{0, 0}}
	for c := range 256 {
		pc := [2]uint8{a.class[c], b.class[c]}
		id, seen := pairClass[pc]
		if !seen {
			if len(classPair) == 256 {
				return nil, false
			}
			id = uint8(len(classPair))
			pairClass[pc] = id
			classPair = append(classPair, pc)
		}
		d.class[c] = id
	}
	nc := len(classPair)
	d.nc, d.stride = uint32(nc), uint32(nc+1)
	if maxStates*(nc+1) > maxTable {
		maxStates = maxTable / (nc + 1)
	}

	// States are pairs of premultiplied states of a and b.
	type pair struct{ a, b uint32 }
	guess := a.states + b.states
	ids := make(map[uint64]int32, guess)
	ids[0] = 0
	states := make([]pair, 1, guess)
	delta := make([]int32, 0, guess*nc)
	for si := 0; si < len(states); si++ {
		st := states[si]
		for _, pc := range classPair {
			next := pair{a.trans[st.a+uint32(pc[0])], b.trans[st.b+uint32(pc[1])]}
			key := uint64(next.a)<<32 | uint64(next.b)
			id, seen := ids[key]
			if !seen {
				if len(states) == maxStates {
					return nil, false
				}
				id = int32(len(states))
				ids[key] = id
				states = append(states, next)
			}
			delta = append(delta, id)
		}
	}
	outs := make([][]hit, len(states))
	depth := make([]int32, len(states))
	for i, st := range states {
		depth[i] = int32(max(a.depth(st.a), b.depth(st.b)))
		if st.a >= a.matchMin {
			outs[i] = append(outs[i], a.hits(st.a)...)
		}
		if st.b >= b.matchMin {
			outs[i] = append(outs[i], b.hits(st.b)...)
		}
	}
	bfs := make([]int32, len(states))
	for i := range bfs {
		bfs[i] = int32(i) // pairs were discovered breadth-first
	}
	d.finish(delta, outs, depth, bfs)
	return d, true
}

// hits returns the patterns ending in state st (premultiplied, >= matchMin).
func (d *dfa) hits(st uint32) []hit {
	i := st/d.stride - d.firstMatch
	return d.outs[d.outStart[i]:d.outStart[i+1]]
}

// depth is the length of the longest pattern prefix state st tracks: no
// occurrence still in progress started more than depth bytes back.
func (d *dfa) depth(st uint32) uint32 { return d.trans[st+d.nc] }
