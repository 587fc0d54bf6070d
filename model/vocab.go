package model

import (
	"slices"
	"strings"
)

// Vocab is the vocabulary as grammar-constrained decoding sees it: each token as the symbols it adds to the
// answer (its bytes as the client receives them; a special token is one symbol past the bytes), arranged in
// a trie so that a mask is a walk over shared prefixes rather than a scan of every token's text.
type Vocab struct {
	size    int
	tokens  [][]uint16     // by id: symbols (0-255 bytes, 256+ special tokens); nil when unusable
	special map[int]uint16 // special token id → its symbol
	stops   []int          // ids that may end an answer

	// The trie in preorder. Node 0 is the root (no symbol, depth 0).
	trie   []trieNode
	order  []int32 // token ids in trie preorder; a node's tokens and its subtree's are contiguous
	maxLen int     // symbols in the longest token
}

type trieNode struct {
	sym      uint16
	depth    int32
	skip     int32 // index of the first node after this subtree
	tokens   int32 // order[tokens:below] end at this node
	below    int32
	tokenEnd int32 // order[tokens:tokenEnd] are this subtree's tokens
}

// NewVocab builds the vocabulary of tok; stops are the ids that end an answer (generation_config's eos ids).
// The symbols of a token are what Decode gives for it in the middle of a text: "▁" is a space, a byte piece
// its byte. Special and control tokens get one symbol each, so a grammar can demand one; <unk> and tokens
// with no text are never allowed.
func NewVocab(tok *Tokenizer, stops []int) *Vocab {
	v := &Vocab{size: tok.VocabSize(), tokens: make([][]uint16, tok.VocabSize()), special: map[int]uint16{}, stops: slices.Clone(stops)}
	for id := range v.tokens {
		var text string
		switch {
		case tok.special[id] || (id < tok.modelLen && tok.types[id] == spControl):
			v.special[id] = uint16(256 + len(v.special))
			v.tokens[id] = []uint16{v.special[id]}
			continue
		case id < tok.modelLen && tok.types[id] == spByte:
			b, _ := spParseByte(tok.pieces[id])
			v.tokens[id] = []uint16{uint16(b)}
			continue
		case id < tok.modelLen && tok.types[id] == spUnknown:
			continue
		case id < tok.modelLen && tok.types[id] != spAdded:
			text = strings.ReplaceAll(tok.pieces[id], spSpace, " ")
		default:
			text = tok.pieces[id]
		}
		if text == "" {
			continue
		}
		syms := make([]uint16, len(text))
		for i := 0; i < len(text); i++ {
			syms[i] = uint16(text[i])
		}
		v.tokens[id] = syms
	}
	v.buildTrie()
	return v
}

// NewVocabFromStrings is a vocabulary of plain byte strings (id = index), for tests and benchmarks.
func NewVocabFromStrings(texts []string, stops []int) *Vocab {
	v := &Vocab{size: len(texts), tokens: make([][]uint16, len(texts)), special: map[int]uint16{}, stops: slices.Clone(stops)}
	for id, text := range texts {
		if slices.Contains(stops, id) {
			v.special[id] = uint16(256 + len(v.special))
			v.tokens[id] = []uint16{v.special[id]}
			continue
		}
		for i := 0; i < len(text); i++ {
			v.tokens[id] = append(v.tokens[id], uint16(text[i]))
		}
	}
	v.buildTrie()
	return v
}

// Size is the number of token ids.
func (v *Vocab) Size() int { return v.size }

func (v *Vocab) buildTrie() {
	ids := make([]int32, 0, len(v.tokens))
	for id, t := range v.tokens {
		if len(t) > 0 {
			ids = append(ids, int32(id))
		}
	}
	slices.SortFunc(ids, func(a, b int32) int { return slices.Compare(v.tokens[a], v.tokens[b]) })
	v.order = ids
	for _, id := range ids {
		v.maxLen = max(v.maxLen, len(v.tokens[id]))
	}
	v.trie = []trieNode{{}}
	path := []int32{0} // trie node at each depth of the current token
	for i, id := range ids {
		t := v.tokens[id]
		// Keep the common prefix with the previous token's path, close the rest.
		keep := 1
		if i > 0 {
			prev := v.tokens[ids[i-1]]
			for keep-1 < len(t) && keep-1 < len(prev) && t[keep-1] == prev[keep-1] {
				keep++
			}
		}
		for _, n := range path[keep:] {
			v.trie[n].skip, v.trie[n].tokenEnd = int32(len(v.trie)), int32(i)
		}
		path = path[:keep]
		for d := keep - 1; d < len(t); d++ {
			path = append(path, int32(len(v.trie)))
			v.trie = append(v.trie, trieNode{sym: t[d], depth: int32(d + 1), tokens: int32(i), below: int32(i)})
		}
		v.trie[path[len(path)-1]].below = int32(i + 1)
	}
	for _, n := range path {
		v.trie[n].skip, v.trie[n].tokenEnd = int32(len(v.trie)), int32(len(ids))
	}
}

// bitset is a set of token ids.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool { return b[i>>6]&(1<<(i&63)) != 0 }
func (b bitset) set(i int)      { b[i>>6] |= 1 << (i & 63) }
func (b bitset) or(c bitset) {
	for i := range b {
		b[i] |= c[i]
	}
}
