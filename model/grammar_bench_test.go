package model

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// benchVocabSize is InternLM3's vocabulary size.
const benchVocabSize = 128512

// benchVocab is a synthetic vocabulary of InternLM3's size with the make-up of a real one: the 256 bytes,
// then words and word pieces with and without a leading space (lowercase, capitalised, digits), CJK
// characters and pairs, punctuation runs and code-like tokens mixing quotes, braces, brackets, commas and
// colons (`":`, `"},`, `[{"`), and whitespace runs. Seeded, so every run sees the same vocabulary.
func benchVocab() *Vocab {
	rng := rand.New(rand.NewPCG(7, 7))
	seen := map[string]bool{}
	texts := []string{"<s>", "</s>", "<|im_end|>"}
	add := func(s string) {
		if s != "" && !seen[s] && utf8.ValidString(s) || len(s) == 1 {
			if !seen[s] {
				seen[s] = true
				texts = append(texts, s)
			}
		}
	}
	for b := range 256 {
		add(string([]byte{byte(b)}))
	}
	letters := "etaoinshrdlcumwfgypbvkjxqz"
	word := func() string {
		n := 1 + rng.IntN(9)
		var sb strings.Builder
		for range n {
			sb.WriteByte(letters[min(rng.IntN(26), rng.IntN(26))])
		}
		return sb.String()
	}
	punct := []string{`"`, `":`, `",`, `"}`, `"]`, `},`, `}}`, `{"`, `[{"`, `"},`, `":"`, `": "`, `", "`, `],`, `]}`, `(`, `)`, `);`, `.`, `,`, `:`, `;`, `!`, `?`, `'`, `\n`, `\"`, `//`, `==`, `->`, `::`, `"\n`, `}\n`, `,\n`}
	for len(texts) < benchVocabSize {
		switch r := rng.IntN(100); {
		case r < 45:
			add(" " + word())
		case r < 65:
			add(word())
		case r < 72:
			w := word()
			add(" " + strings.ToUpper(w[:1]) + w[1:])
		case r < 84:
			var sb strings.Builder
			for range 1 + rng.IntN(3) {
				sb.WriteRune(rune(0x4e00 + rng.IntN(0x5000)))
			}
			add(sb.String())
		case r < 88:
			add(strings.Repeat("0123456789"[rng.IntN(10):][:1], 1) + string("0123456789"[rng.IntN(10)]))
		case r < 96:
			p := punct[rng.IntN(len(punct))]
			switch rng.IntN(3) {
			case 0:
				add(p + word())
			case 1:
				add(word() + p)
			default:
				add(p)
			}
		default:
			add(strings.Repeat(" ", 1+rng.IntN(16)))
		}
	}
	return NewVocabFromStrings(texts, []int{1, 2})
}

const benchNestedSchema = `{"type": "object", "properties": {
	"id": {"type": "integer", "minimum": 0},
	"user": {"type": "object", "properties": {
		"name": {"type": "string", "maxLength": 24},
		"email": {"type": "string"},
		"roles": {"type": "array", "items": {"enum": ["admin", "dev", "ops"]}, "maxItems": 3}},
		"required": ["name", "roles"]},
	"items": {"type": "array", "items": {"type": "object", "properties": {
		"sku": {"type": "string", "minLength": 3, "maxLength": 8},
		"qty": {"type": "integer", "minimum": 1, "maximum": 99},
		"price": {"type": "number", "minimum": 0}}, "required": ["sku", "qty"]}, "minItems": 1, "maxItems": 4},
	"note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
	"required": ["id", "user", "items"]}`

// BenchmarkGrammarMask measures the mask of each token (Mask, plus FitMask when the budget steers the end)
// while answers of up to 256 tokens are drawn at random among the allowed tokens, on the 128,512-token
// vocabulary, each mask computed afresh rather than taken from the cache of masks by state (which in real
// answers often hits). cold-* is the first answer on a fresh grammar (token classes built as positions are
// first reached, timed once); warm-* the five answers after it (each mask the least of three runs). The sampling itself (SampleAllowed over the logits) is reported
// beside it, as is Sample over the whole vocabulary, the unconstrained path's cost.
func BenchmarkGrammarMask(b *testing.B) {
	v := benchVocab()
	for _, c := range []struct{ name, schema string }{{"json_object", ""}, {"nested", benchNestedSchema}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				t0 := time.Now()
				g := grammarFor(b, v, c.schema)
				compile := time.Since(t0)
				var cold, warm []time.Duration
				for answer := range 6 {
					times := benchAnswer(g, uint64(answer), 256, min(answer+1, 3))
					if answer == 0 {
						cold = times
					} else {
						warm = append(warm, times...)
					}
				}
				report := func(name string, d []time.Duration) {
					slices.Sort(d)
					b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, name+"-median-µs")
					b.ReportMetric(float64(d[len(d)-1].Nanoseconds())/1e3, name+"-worst-µs")
				}
				report("cold", cold)
				report("warm", warm)
				b.ReportMetric(float64(compile.Microseconds()), "compile-µs")
			}
		})
	}
	b.Run("sampling", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 3))
		logits := make([]float32, benchVocabSize)
		allowed := newBitset(benchVocabSize)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * 3)
			if rng.IntN(10) < 9 {
				allowed.set(i)
			}
		}
		s := NewSampler(DefaultSampling())
		var full, masked time.Duration
		for range b.N {
			t0 := time.Now()
			s.Sample(slices.Clone(logits), nil)
			full += time.Since(t0)
			t0 = time.Now()
			s.SampleAllowed(slices.Clone(logits), nil, allowed)
			masked += time.Since(t0)
		}
		b.ReportMetric(float64(full.Microseconds())/float64(b.N), "Sample-µs")
		b.ReportMetric(float64(masked.Microseconds())/float64(b.N), "SampleAllowed-90%-µs")
	})
}

func randomMember(rng *rand.Rand, mask bitset) int {
	n := 0
	for _, w := range mask {
		n += bits.OnesCount64(w)
	}
	k := rng.IntN(n)
	for w, word := range mask {
		if c := bits.OnesCount64(word); k >= c {
			k -= c
			continue
		}
		for ; ; word &= word - 1 {
			if k == 0 {
				return w*64 + bits.TrailingZeros64(word)
			}
			k--
		}
	}
	panic("unreachable")
}

// benchAnswer draws one answer of at most budget tokens uniformly among the allowed ones and returns how
// long each token's mask took, computed afresh (not from the mask cache), the least of repeats runs.
func benchAnswer(g *Grammar, seed uint64, budget, repeats int) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, 11))
	m := g.NewMatcher()
	var times []time.Duration
	for left := budget; left > 0 && !m.Done(); left-- {
		// The least of repeats runs (the mask cache emptied before each): the machine is shared.
		var mask bitset
		d := time.Duration(math.MaxInt64)
		for range repeats {
			clear(g.masks)
			t0 := time.Now()
			mask = m.Mask()
			d = min(d, time.Since(t0))
		}
		id := randomMember(rng, mask)
		if !m.Fits(id, left-1) { // as sampleConstrained: narrow the mask only when the draw would not fit
			fd := time.Duration(math.MaxInt64)
			for range repeats {
				t0 := time.Now()
				mask = m.FitMask(left - 1)
				fd = min(fd, time.Since(t0))
			}
			d += fd
			id = randomMember(rng, mask)
		}
		times = append(times, d)
		if !m.Accept(id) {
			panic("a masked token was refused")
		}
	}
	if !m.CanEnd() {
		panic("the answer did not complete")
	}
	return times
}
