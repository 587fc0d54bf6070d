package model

// Grammar-constrained decoding: every step masks the tokens whose symbols cannot extend a valid prefix of
// the answer, and the answer ends as soon as the grammar is complete, so a finished answer always parses.
//
// The grammar is a set of rules, each a byte-level NFA (symbol-range edges, epsilon edges, calls of other
// rules); the matcher's state is a set of stacks of rule positions. Following XGrammar, the tokens are
// classified once per position (lazily, by one walk of the vocabulary trie): accepted whatever the stack
// below (the usual case), rejected, or context-dependent (the token runs past the end of the rule). A mask
// is then the union of the accepted sets of the stacks' tops plus a check of the few context-dependent
// tokens against the real stack, and masks are memoized by state. Written here rather than taken from a
// library: no maintained Go package compiles JSON Schema to a token-level automaton (the Go ports of
// llama.cpp's GBNF and of outlines check text, not a vocabulary).

import (
	"math"
	"slices"
	"strings"
	"sync"
)

// Grammar is a compiled constraint bound to one vocabulary. It may be used by one generation at a time
// per matcher; its lazily built tables are guarded, so several matchers may share it.
type Grammar struct {
	vocab *Vocab
	nodes []gnode
	root  int32     // start of the root rule (never called)
	clo   [][]int32 // epsilon closure of each node, itself first
	dist  []int32   // fewest symbols from a node to the end of its rule
	rets  map[int32][]int32

	sig []uint64 // positions with equal signatures have the same token class

	mu      sync.Mutex
	classes map[uint64]*tokenClass // by signature, built on first use
	masks   map[string]bitset
}

type gnode struct {
	rule  int32 // start node of the rule the node belongs to
	final bool  // the rule may end here
	eps   []int32
	edges []gedge
	calls []gcall
}

type gedge struct {
	lo, hi uint16
	to     int32
}

// gcall enters the rule starting at start; when it ends, its caller continues at ret.
type gcall struct{ start, ret int32 }

const maxGrammarNodes = 1 << 18

// gbuilder assembles a grammar's nodes, one rule at a time.
type gbuilder struct {
	nodes []gnode
	rule  int32
	err   error
}

func (b *gbuilder) newRule() int32 {
	b.rule = int32(len(b.nodes))
	return b.node()
}

func (b *gbuilder) node() int32 {
	if len(b.nodes) >= maxGrammarNodes && b.err == nil {
		b.err = errGrammarSize
	}
	b.nodes = append(b.nodes, gnode{rule: b.rule})
	return int32(len(b.nodes) - 1)
}

func (b *gbuilder) eps(from, to int32) { b.nodes[from].eps = append(b.nodes[from].eps, to) }

func (b *gbuilder) edge(from int32, lo, hi uint16, to int32) {
	b.nodes[from].edges = append(b.nodes[from].edges, gedge{lo, hi, to})
}

// lit adds the bytes of s from from, ending at to (a new node when to < 0), and returns the end.
func (b *gbuilder) lit(from int32, s string, to int32) int32 {
	for i := 0; i < len(s); i++ {
		next := to
		if i < len(s)-1 || to < 0 {
			next = b.node()
		}
		b.edge(from, uint16(s[i]), uint16(s[i]), next)
		from = next
	}
	if len(s) == 0 && to >= 0 {
		b.eps(from, to)
		return to
	}
	return from
}

func (b *gbuilder) call(from, start int32) int32 {
	ret := b.node()
	b.nodes[from].calls = append(b.nodes[from].calls, gcall{start, ret})
	return ret
}

// finish freezes the nodes into a grammar whose root rule starts at root.
func (b *gbuilder) finish(v *Vocab, root int32) (*Grammar, error) {
	if b.err != nil {
		return nil, b.err
	}
	g := &Grammar{vocab: v, nodes: b.nodes, root: root, rets: map[int32][]int32{}}
	g.clo = make([][]int32, len(g.nodes))
	for n := range g.nodes {
		seen := map[int32]bool{int32(n): true}
		todo := []int32{int32(n)}
		for i := 0; i < len(todo); i++ {
			for _, m := range g.nodes[todo[i]].eps {
				if !seen[m] {
					seen[m] = true
					todo = append(todo, m)
				}
			}
		}
		g.clo[n] = todo
		for _, c := range g.nodes[n].calls {
			g.rets[c.start] = append(g.rets[c.start], c.ret)
		}
	}
	// Shortest completion (Bellman-Ford: the graphs are small and mostly acyclic).
	g.dist = make([]int32, len(g.nodes))
	for i := range g.dist {
		g.dist[i] = math.MaxInt32 / 4
		if g.nodes[i].final {
			g.dist[i] = 0
		}
	}
	for changed := true; changed; {
		changed = false
		for i := len(g.nodes) - 1; i >= 0; i-- {
			n, d := &g.nodes[i], g.dist[i]
			for _, m := range n.eps {
				d = min(d, g.dist[m])
			}
			for _, e := range n.edges {
				d = min(d, 1+g.dist[e.to])
			}
			for _, c := range n.calls {
				d = min(d, g.dist[c.start]+g.dist[c.ret])
			}
			if d < g.dist[i] {
				g.dist[i], changed = d, true
			}
		}
	}
	if g.dist[root] >= math.MaxInt32/4 {
		return nil, errGrammarEmpty
	}
	g.sig = g.signatures(v.maxLen)
	g.classes = map[uint64]*tokenClass{}
	g.masks = map[string]bitset{}
	return g, nil
}

// signatures hashes what each position can do over the next depth symbols (its rule, where it may end,
// its edges and calls, recursively), so that positions no token can tell apart share one token class:
// the character counts of a long string, repeated items. Equal hashes mean equal classes because a token
// is at most depth symbols long and a position's class depends only on those symbols' paths (and, past
// the rule's end, on the rule, which is part of the hash).
func (g *Grammar) signatures(depth int) []uint64 {
	mix := func(a, b uint64) uint64 {
		h := (a ^ 0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
		h = (h ^ b ^ h>>31) * 0x94d049bb133111eb
		return h ^ h>>29
	}
	h, next := make([]uint64, len(g.nodes)), make([]uint64, len(g.nodes))
	for i := range h {
		h[i] = mix(uint64(g.nodes[i].rule), 1)
	}
	for range depth {
		for i := range g.nodes {
			final, sum := uint64(0), uint64(0)
			for _, m := range g.clo[i] {
				n := &g.nodes[m]
				if n.final {
					final = 1
				}
				for _, e := range n.edges { // a sum: the order of edges does not matter
					sum += mix(uint64(e.lo)<<16|uint64(e.hi), h[e.to])
				}
				for _, c := range n.calls {
					sum += mix(1<<40|uint64(c.start), h[c.ret])
				}
			}
			next[i] = mix(mix(uint64(g.nodes[i].rule), final), sum)
		}
		h, next = next, h
	}
	return h
}

type grammarError string

func (e grammarError) Error() string { return string(e) }

const (
	errGrammarSize  = grammarError("the schema is too large: its automaton needs more than 262144 states")
	errGrammarEmpty = grammarError("the schema admits no value")
)

// frame is one level of a matcher stack: a position in a rule, above the frames of its callers (whose
// nodes are where they continue). Stacks are persistent: a step shares the frames below its top.
type frame struct {
	node   int32
	parent *frame
}

// Two sentinel bottoms used while classifying tokens for one position: popping into escape means the
// token runs past the end of that rule; the walk then goes on over every place the rule returns to,
// and popping out of those (into deep) gives up: the token depends on the stack.
var escape, deep = &frame{node: -1}, &frame{node: -2}

// stepper advances a set of stacks by one symbol. Walks over the trie take their frames from an arena
// (reset per walk) so that a walk allocates almost nothing; a matcher's own state uses the heap.
type stepper struct {
	g     *Grammar
	out   []*frame
	deep  bool // some path popped into deep
	arena [][]frame
	used  int // frames handed out of the arena since the last reset
}

const arenaChunk = 4096

func (s *stepper) frame(node int32, parent *frame) *frame {
	if s.arena == nil {
		return &frame{node, parent}
	}
	c, i := s.used/arenaChunk, s.used%arenaChunk
	if c == len(s.arena) {
		s.arena = append(s.arena, make([]frame, arenaChunk))
	}
	s.used++
	f := &s.arena[c][i]
	*f = frame{node, parent}
	return f
}

func (s *stepper) advance(f *frame, sym uint16) {
	for _, m := range s.g.clo[f.node] {
		n := &s.g.nodes[m]
		for _, e := range n.edges {
			if e.lo <= sym && sym <= e.hi {
				s.push(e.to, f.parent)
			}
		}
		for _, c := range n.calls {
			s.advance(s.frame(c.start, s.frame(c.ret, f.parent)), sym)
		}
		if n.final {
			switch f.parent {
			case nil: // the end of the answer: nothing may follow
			case escape:
				for _, r := range s.g.rets[n.rule] {
					s.advance(s.frame(r, deep), sym)
				}
			case deep:
				s.deep = true
			default:
				s.advance(f.parent, sym)
			}
		}
	}
}

// push adds the stack (node over parent) unless an identical one is already there.
func (s *stepper) push(node int32, parent *frame) {
	for _, o := range s.out {
		if o.node == node && o.parent == parent {
			return
		}
	}
	s.out = append(s.out, s.frame(node, parent))
}

// step advances in by sym, appending the result to out[:0].
func (s *stepper) step(in []*frame, sym uint16, out []*frame) []*frame {
	s.out, s.deep = out[:0], false
	for _, f := range in {
		s.advance(f, sym)
	}
	return s.out
}

// walk visits the vocabulary trie from the stacks start, with one reusable buffer per depth. visit is
// called for every trie node some path reaches (next non-empty), and for a node no path reaches but where
// a path popped into deep; it returns false to skip the node's subtree.
func (s *stepper) walk(start []*frame, visit func(t *trieNode, next []*frame, deep bool) bool) {
	v := s.g.vocab
	if s.arena == nil {
		s.arena = [][]frame{make([]frame, arenaChunk)}
	}
	s.used = 0
	levels := make([][]*frame, v.maxLen+1)
	deeps := make([]bool, v.maxLen+1)
	levels[0] = start
	for i := 1; i < len(v.trie); {
		t := &v.trie[i]
		d := int(t.depth)
		levels[d] = s.step(levels[d-1], t.sym, levels[d])
		deeps[d] = deeps[d-1] || s.deep
		if (len(levels[d]) == 0 && !deeps[d]) || !visit(t, levels[d], deeps[d]) || len(levels[d]) == 0 {
			i = int(t.skip)
			continue
		}
		i++
	}
	s.used = 0
}

// tokenClass is what one position knows about every token without looking at the stack below it.
type tokenClass struct {
	accepted  bitset  // valid whatever the stack below
	dependent []int32 // valid or not depending on the stack below
}

// class returns the token class of node n, building it on first use by walking the vocabulary trie from
// a stack holding n alone.
func (g *Grammar) class(n int32) *tokenClass {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.classes[g.sig[n]]; c != nil {
		return c
	}
	v := g.vocab
	c := &tokenClass{accepted: newBitset(v.size)}
	s := stepper{g: g}
	s.walk([]*frame{{n, escape}}, func(t *trieNode, next []*frame, dp bool) bool {
		if len(next) == 0 { // nothing more is known inside: the whole subtree depends on the stack
			c.dependent = append(c.dependent, v.order[t.tokens:t.tokenEnd]...)
			return false
		}
		if t.below > t.tokens {
			inside := slices.ContainsFunc(next, func(f *frame) bool { return bottom(f) == escape })
			for _, id := range v.order[t.tokens:t.below] {
				if inside {
					c.accepted.set(int(id))
				} else {
					c.dependent = append(c.dependent, id)
				}
			}
		}
		return true
	})
	g.classes[g.sig[n]] = c
	return c
}

func bottom(f *frame) *frame {
	for f.parent != nil && f.parent != escape && f.parent != deep {
		f = f.parent
	}
	return f.parent
}

// Matcher follows one answer through a grammar.
type Matcher struct {
	g      *Grammar
	stacks []*frame
	s      stepper
}

// NewMatcher starts an answer.
func (g *Grammar) NewMatcher() *Matcher {
	return &Matcher{g: g, stacks: []*frame{{node: g.root}}, s: stepper{g: g}}
}

// Accept advances past token id and reports whether the grammar allowed it.
func (m *Matcher) Accept(id int) bool {
	if id < 0 || id >= m.g.vocab.size {
		return false
	}
	if slices.Contains(m.g.vocab.stops, id) && m.CanEnd() {
		m.stacks = nil
		return true
	}
	st, ok := m.run(m.stacks, m.g.vocab.tokens[id])
	if ok {
		m.stacks = st
	}
	return ok
}

func (m *Matcher) run(st []*frame, syms []uint16) ([]*frame, bool) {
	if len(syms) == 0 {
		return nil, false
	}
	for _, sym := range syms {
		if st = m.s.step(st, sym, nil); len(st) == 0 {
			return nil, false
		}
	}
	return st, true
}

// CanEnd reports whether the answer so far is complete (a stop token may end it).
func (m *Matcher) CanEnd() bool {
	return slices.ContainsFunc(m.stacks, func(f *frame) bool { return m.g.remaining(f) == 0 })
}

// Done reports whether the answer is complete and nothing may follow: generation ends here.
func (m *Matcher) Done() bool {
	if len(m.stacks) == 0 {
		return true
	}
	for _, f := range m.stacks {
		if m.g.remaining(f) != 0 || m.g.extensible(f) {
			return false
		}
	}
	return true
}

// remaining is the fewest symbols that complete the answer from stack f.
func (g *Grammar) remaining(f *frame) int {
	d := 0
	for ; f != nil; f = f.parent {
		d += int(g.dist[f.node])
	}
	return d
}

// extensible reports whether stack f may consume another symbol.
func (g *Grammar) extensible(f *frame) bool {
	for _, m := range g.clo[f.node] {
		n := &g.nodes[m]
		if len(n.edges) > 0 || len(n.calls) > 0 || (n.final && f.parent != nil && g.extensible(f.parent)) {
			return true
		}
	}
	return false
}

// Remaining is the fewest symbols (so, with a vocabulary that has a token per byte, tokens) that complete
// the answer.
func (m *Matcher) Remaining() int {
	best := math.MaxInt32
	for _, f := range m.stacks {
		best = min(best, m.g.remaining(f))
	}
	return best
}

// key identifies the state for the mask cache.
func (m *Matcher) key() string {
	var sb strings.Builder
	for _, f := range m.stacks {
		for ; f != nil; f = f.parent {
			n := f.node
			sb.WriteByte(byte(n))
			sb.WriteByte(byte(n >> 8))
			sb.WriteByte(byte(n >> 16))
		}
		sb.WriteByte(0xff)
	}
	return sb.String()
}

const maxCachedMasks = 128 // 2 MB per grammar at 128,512 tokens

// Mask returns the tokens allowed next (stop ids when the answer may end). The result is shared: do not
// modify it.
func (m *Matcher) Mask() bitset {
	g := m.g
	key := m.key()
	g.mu.Lock()
	mask, ok := g.masks[key]
	g.mu.Unlock()
	if ok {
		return mask
	}
	mask = newBitset(g.vocab.size)
	for _, f := range m.stacks {
		mask.or(g.class(f.node).accepted)
	}
	for _, f := range m.stacks {
		for _, id := range g.class(f.node).dependent {
			if !mask.has(int(id)) {
				if _, ok := m.run([]*frame{f}, g.vocab.tokens[id]); ok {
					mask.set(int(id))
				}
			}
		}
	}
	if m.CanEnd() {
		for _, id := range g.vocab.stops {
			mask.set(id)
		}
	}
	g.mu.Lock()
	if len(g.masks) >= maxCachedMasks {
		clear(g.masks)
	}
	g.masks[key] = mask
	g.mu.Unlock()
	return mask
}

// Fits reports whether after token id the answer can still be completed within left more tokens
// (counting one token per remaining symbol).
func (m *Matcher) Fits(id, left int) bool {
	if slices.Contains(m.g.vocab.stops, id) {
		return m.CanEnd()
	}
	st, ok := m.run(m.stacks, m.g.vocab.tokens[id])
	if !ok {
		return false
	}
	best := math.MaxInt32
	for _, f := range st {
		best = min(best, m.g.remaining(f))
	}
	return best <= left
}

// FitMask returns the allowed tokens after which the answer can still be completed within left more
// tokens (counting a token per remaining symbol: a vocabulary with byte pieces has one): the mask used
// when the token budget is about to run out. If no token leaves room, it returns those that bring the
// end closest. It walks the trie from the state, skipping subtrees whose tokens are all too short to
// come back within reach.
func (m *Matcher) FitMask(left int) bitset {
	g, v := m.g, m.g.vocab
	mask := newBitset(v.size)
	fits := false
	best, closest := math.MaxInt32, []int32(nil) // the fewest symbols left after a token, and those tokens
	s := stepper{g: g}
	s.walk(m.stacks, func(t *trieNode, next []*frame, _ bool) bool {
		rem := math.MaxInt32
		for _, f := range next {
			rem = min(rem, g.remaining(f))
		}
		if ends := v.order[t.tokens:t.below]; len(ends) > 0 {
			if rem <= left {
				fits = true
				for _, id := range ends {
					mask.set(int(id))
				}
			}
			if rem < best {
				best, closest = rem, closest[:0]
			}
			if rem == best {
				closest = append(closest, ends...)
			}
		}
		// Each further symbol brings the end at most one symbol closer.
		return rem-(v.maxLen-int(t.depth)) <= max(left, best)
	})
	if !fits {
		for _, id := range closest {
			mask.set(int(id))
		}
	}
	if m.CanEnd() {
		for _, id := range v.stops {
			mask.set(id)
		}
	}
	return mask
}
