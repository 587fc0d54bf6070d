package model

import (
	"encoding/hex"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// The tiny tokenizer and its golden vectors: see testdata/tokenizer/README.md and tools/tokenizer_goldens.py.
const (
	spTestDir      = "../testdata/tokenizer"
	spTestGolden   = "../testdata/golden/tokenizer.json"
	spTestVariants = "../testdata/golden/tokenizer_variants.json"
)

type spTestCase struct {
	Text    string `json:"text"`
	TextHex string `json:"text_hex"`
	IDs     []int  `json:"ids"`
	Decoded string `json:"decoded"`
}

type spTestVariant struct {
	Name      string       `json:"name"`
	Model     string       `json:"model"`
	AppendHex string       `json:"append_hex"`
	Encode    []spTestCase `json:"encode"`
	Decode    []spTestCase `json:"decode"`
}

var (
	spTestOnce  sync.Once
	spTestTok   *Tokenizer
	spTestErr   error
	spTestCases []spTestCase
)

func spTiny(t testing.TB) *Tokenizer {
	t.Helper()
	spTestOnce.Do(func() {
		var model, config, b []byte
		if model, spTestErr = os.ReadFile(filepath.Join(spTestDir, "tiny.model")); spTestErr != nil {
			return
		}
		if config, spTestErr = os.ReadFile(filepath.Join(spTestDir, "tokenizer_config.json")); spTestErr != nil {
			return
		}
		if spTestTok, spTestErr = NewTokenizer("tiny.model", model, "tokenizer_config.json", config); spTestErr != nil {
			return
		}
		if b, spTestErr = os.ReadFile(spTestGolden); spTestErr == nil {
			spTestErr = json.Unmarshal(b, &spTestCases)
		}
	})
	require.NoError(t, spTestErr)
	return spTestTok
}

func spTestModel(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(spTestDir, name))
	require.NoError(t, err)
	return b
}

func spTestLoadVariants(t testing.TB) []spTestVariant {
	t.Helper()
	b, err := os.ReadFile(spTestVariants)
	require.NoError(t, err)
	var v struct{ Variants []spTestVariant }
	require.NoError(t, json.Unmarshal(b, &v))
	require.NotEmpty(t, v.Variants)
	return v.Variants
}

func spTestVariantModel(t testing.TB, v spTestVariant) []byte {
	t.Helper()
	extra, err := hex.DecodeString(v.AppendHex)
	require.NoError(t, err)
	return append(spTestModel(t, v.Model), extra...)
}

// spTestStream decodes ids through a StreamDecoder, checking that every chunk is whole UTF-8.
func spTestStream(t testing.TB, tok *Tokenizer, ids []int) string {
	t.Helper()
	d := tok.NewStreamDecoder()
	var sb strings.Builder
	for _, id := range ids {
		chunk := d.Add(id)
		if !utf8.ValidString(chunk) {
			t.Fatalf("Add(%d) returned a partial character %q (ids %v)", id, chunk, ids)
		}
		sb.WriteString(chunk)
	}
	sb.WriteString(d.Flush())
	return sb.String()
}

func TestTokenizerGolden(t *testing.T) {
	tok := spTiny(t)
	require.GreaterOrEqual(t, len(spTestCases), 40)
	for _, c := range spTestCases {
		ids := tok.Encode(c.Text)
		require.Equal(t, c.IDs, ids, "Encode(%q)", c.Text)
		require.Equal(t, c.Decoded, tok.Decode(ids), "Decode(Encode(%q)) against sentencepiece", c.Text)
		if !strings.Contains(c.Text, spSpace) {
			// Identity normalizer, no dummy prefix: lossless. (A literal ▁ in the text decodes to a space.)
			require.Equal(t, c.Text, tok.Decode(ids))
		}
		require.Equal(t, tok.Decode(ids), spTestStream(t, tok, ids), "stream decoding of %q", c.Text)
		for _, id := range ids {
			require.False(t, tok.IsSpecial(id), "Encode(%q) produced special token %d", c.Text, id)
		}
	}
}

// spTestDeviation lists the goldens where this tokenizer deliberately differs from sentencepiece:
// "☃" is a CONTROL piece in the tiny+extra_pieces variant and sentencepiece drops it from the output.
func spTestDeviation(variant string, text []byte) bool {
	return variant == "tiny+extra_pieces" && strings.Contains(string(text), "☃")
}

func TestTokenizerVariants(t *testing.T) {
	for _, v := range spTestLoadVariants(t) {
		t.Run(v.Name, func(t *testing.T) {
			// No tokenizer_config.json: plain sentencepiece semantics, so <unk> decodes to " ⁇ ".
			tok, err := NewTokenizer(v.Name, spTestVariantModel(t, v), "", nil)
			require.NoError(t, err)
			for _, c := range v.Encode {
				text, err := hex.DecodeString(c.TextHex)
				require.NoError(t, err)
				ids := tok.Encode(string(text))
				if spTestDeviation(v.Name, text) {
					require.NotEqual(t, c.IDs, ids)
					require.Equal(t, string(text), tok.Decode(ids), "text kept, as bytes")
					continue
				}
				require.Equal(t, c.IDs, ids, "Encode(%q)", text)
				require.Equal(t, c.Decoded, tok.Decode(c.IDs), "Decode(%v) of %q", c.IDs, text)
				require.Equal(t, c.Decoded, spTestStream(t, tok, c.IDs))
			}
			for _, c := range v.Decode {
				require.Equal(t, c.Decoded, tok.Decode(c.IDs), "Decode(%v)", c.IDs)
				require.Equal(t, c.Decoded, spTestStream(t, tok, c.IDs), "stream Decode(%v)", c.IDs)
			}
		})
	}
}

func TestTokenizerAPI(t *testing.T) {
	tok := spTiny(t)
	require.Equal(t, 1024, tok.VocabSize())
	require.Equal(t, 1, tok.BOS())
	require.Equal(t, 2, tok.EOS())
	require.True(t, tok.AddBOS())
	require.False(t, tok.AddEOS())
	for piece, id := range map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2, "<|im_start|>": 3, "<|im_end|>": 4, "<0x0A>": 15} {
		got, ok := tok.TokenID(piece)
		require.True(t, ok, piece)
		require.Equal(t, id, got, piece)
		require.Equal(t, piece, tok.Piece(id))
		require.Equal(t, id <= 4, tok.IsSpecial(id), piece)
		if id <= 4 {
			require.Equal(t, "", tok.Decode([]int{id}), "%s decodes to nothing", piece)
		}
	}
	id, ok := tok.TokenID("▁the")
	require.True(t, ok)
	require.Equal(t, " the", tok.Decode([]int{id}))
	_, ok = tok.TokenID("no such piece")
	require.False(t, ok)
	require.Equal(t, "", tok.Piece(-1))
	require.Equal(t, "", tok.Piece(1024))
	require.False(t, tok.IsSpecial(-1))
	require.False(t, tok.IsSpecial(1<<30))
	require.Equal(t, "\uFFFD\uFFFD\uFFFD", tok.Decode([]int{-5, 1 << 30, 1024}), "an id with no piece shows as U+FFFD")
	the, _ := tok.TokenID("▁the")
	require.Equal(t, " the\uFFFD the", tok.Decode([]int{the, 1024, the}))
	c3, _ := tok.TokenID(spBytePiece(0xC3))
	require.Equal(t, "\uFFFD\uFFFD", tok.Decode([]int{c3, 1024}), "a byte left pending is written before it")
	require.Equal(t, "\uFFFD\uFFFD", spTestStream(t, tok, []int{c3, 1024}))
	require.Empty(t, tok.Encode(""))
	require.Contains(t, tok.ChatTemplate(), "'<|im_start|>' + message['role'] + '\\n'")
	require.True(t, strings.HasPrefix(tok.ChatTemplate(), "{{ bos_token }}"))
}

func TestTokenizerSpecialTextStaysText(t *testing.T) {
	tok := spTiny(t)
	for _, s := range []string{"<|im_end|>", "<|im_start|>user\n", "<s>", "</s>", "<unk>", "x<|im_end|>\n<|im_start|>system\n"} {
		ids := tok.Encode(s)
		for _, id := range ids {
			require.False(t, tok.IsSpecial(id), "%q gave special id %d", s, id)
		}
		require.Equal(t, s, tok.Decode(ids))
	}
}

// spTestConfig is a tokenizer_config.json with the given added_tokens_decoder entries.
func spTestConfig(entries map[int][2]any) []byte {
	dec := map[string]any{}
	for id, e := range entries {
		dec[strconv.Itoa(id)] = map[string]any{"content": e[0], "special": e[1], "lstrip": false, "rstrip": false}
	}
	b, _ := json.Marshal(map[string]any{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>", "added_tokens_decoder": dec})
	return b
}

func TestTokenizerConfigSpecials(t *testing.T) {
	var extra spTestVariant
	for _, v := range spTestLoadVariants(t) {
		if v.Name == "tiny+extra_pieces" {
			extra = v
		}
	}
	require.NotEmpty(t, extra.Name)
	model := spTestVariantModel(t, extra)
	plain, err := NewTokenizer("m", model, "c", nil)
	require.NoError(t, err)
	tool, ok := plain.TokenID("<tool>")
	require.True(t, ok)
	require.Equal(t, []int{tool}, plain.Encode("<tool>"), "USER_DEFINED pieces are matched whole")

	// The same model, with <tool> and ▁the marked special: neither may come out of Encode any more.
	the, ok := plain.TokenID("▁the")
	require.True(t, ok)
	require.Contains(t, plain.Encode(" the"), the)
	tok, err := NewTokenizer("m", model, "c", spTestConfig(map[int][2]any{
		tool: {"<tool>", true}, the: {"▁the", true},
		1100: {"<|action|>", true}, 1101: {"@@tool@@", false}, // past the model's 1030 pieces
	}))
	require.NoError(t, err)
	for _, s := range []string{"<tool>", " the", "x <tool> the <|action|>"} {
		ids := tok.Encode(s)
		require.NotContains(t, ids, tool, s)
		require.NotContains(t, ids, the, s)
		require.NotContains(t, ids, 1100, s)
		require.Equal(t, s, tok.Decode(ids))
	}
	require.True(t, tok.IsSpecial(tool))
	require.Equal(t, "", tok.Decode([]int{tool, the, 1100}))

	require.Equal(t, 1102, tok.VocabSize())
	id, ok := tok.TokenID("<|action|>")
	require.True(t, ok)
	require.Equal(t, 1100, id)
	require.Equal(t, "<|action|>", tok.Piece(1100))
	require.Equal(t, "", tok.Piece(1050), "an id in the gap")
	require.Equal(t, "\uFFFD", tok.Decode([]int{1050}), "an id in the gap has no piece")
	ids := tok.Encode("a@@tool@@b")
	require.Contains(t, ids, 1101, "non-special added tokens are matched whole")
	require.Equal(t, "a@@tool@@b", tok.Decode(ids))
	require.Equal(t, "a@@tool@@b", spTestStream(t, tok, ids))
}

// spTestProto builds a ModelProto by hand for the error tests.
func spTestProto(pieces []spPiece, trainer, normalizer []byte) []byte {
	var b []byte
	for _, p := range pieces {
		var m []byte
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendString(m, p.piece)
		m = protowire.AppendTag(m, 2, protowire.Fixed32Type)
		m = protowire.AppendFixed32(m, 0)
		m = protowire.AppendTag(m, 3, protowire.VarintType)
		m = protowire.AppendVarint(m, p.typ)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	if trainer != nil {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, trainer)
	}
	if normalizer != nil {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, normalizer)
	}
	return b
}

func spTestVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func spTestBytes(num protowire.Number, v string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func TestTokenizerBadFiles(t *testing.T) {
	tiny := spTestModel(t, "tiny.model")
	config := spTestModel(t, "tokenizer_config.json")
	bpe := spTestVarint(3, spModelBPE)
	basic := []spPiece{{"<unk>", 0, spUnknown}, {"<s>", 0, spControl}, {"</s>", 0, spControl}, {"a", 0, spNormal}}
	for _, c := range []struct {
		name   string
		model  []byte
		config []byte
		want   string
	}{
		{"truncated", tiny[:len(tiny)/2], config, "tokenizer.model: "},
		{"truncated piece", tiny[:20], config, "tokenizer.model: pieces[1]: unexpected EOF"},
		{"garbage", []byte{0xff, 0xff, 0xff}, config, "tokenizer.model: "},
		{"unigram", append(slices.Clone(tiny), spTestBytes(2, string(spTestVarint(3, 1)))...), config,
			"tokenizer.model: trainer_spec.model_type: UNIGRAM is not supported, only BPE"},
		{"no model type", spTestProto(basic, nil, nil), config, "tokenizer.model: trainer_spec.model_type: UNIGRAM"},
		{"empty vocab", spTestProto(nil, bpe, nil), config, "tokenizer.model: pieces: empty vocabulary"},
		{"empty file", nil, config, "tokenizer.model: trainer_spec.model_type"},
		{"nfkc", append(slices.Clone(tiny), spTestBytes(3, string(spTestBytes(2, "\x01\x02\x03")))...), config,
			"tokenizer.model: normalizer_spec.precompiled_charsmap: 3 bytes of \"identity\" normalization rules"},
		{"no unk", spTestProto(basic[1:], bpe, nil), nil, "tokenizer.model: pieces: no UNKNOWN piece"},
		{"duplicate", spTestProto(append(slices.Clone(basic), spPiece{"a", 0, spNormal}), bpe, nil), nil,
			"tokenizer.model: pieces[4].piece: \"a\" is already pieces[3]"},
		{"bad type", spTestProto(append(slices.Clone(basic), spPiece{"b", 0, 9}), bpe, nil), nil,
			"tokenizer.model: pieces[4].type: unknown type 9"},
		{"bytes without fallback", spTestProto(append(slices.Clone(basic), spPiece{"<0x41>", 0, spByte}), bpe, nil), nil,
			"tokenizer.model: pieces[4]: byte piece \"<0x41>\" but trainer_spec.byte_fallback is false"},
		{"missing bytes", spTestProto(append(slices.Clone(basic), spPiece{"<0x41>", 0, spByte}), append(slices.Clone(bpe), spTestVarint(35, 1)...), nil), nil,
			"tokenizer.model: trainer_spec.byte_fallback: true but byte piece <0x00> is missing"},
		{"config not json", tiny, []byte("{"), "tokenizer_config.json: not a JSON object"},
		{"config bos", tiny, []byte(`{"bos_token": "<bos>"}`), "tokenizer_config.json: bos_token: \"<bos>\" is not in the vocabulary"},
		{"config added id", tiny, []byte(`{"added_tokens_decoder": {"x": {"content": "a"}}}`), "tokenizer_config.json: added_tokens_decoder[\"x\"]: not a token id"},
		{"config add_bos", tiny, []byte(`{"add_bos_token": "yes"}`), "tokenizer_config.json: add_bos_token: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := NewTokenizer("tokenizer.model", c.model, "tokenizer_config.json", c.config)
			require.Error(t, err)
			require.Nil(t, tok)
			require.Contains(t, err.Error(), c.want)
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}

	// A tiny handmade model loads and works: no byte fallback, so unknown text becomes <unk>.
	tok, err := NewTokenizer("m", spTestProto(basic, bpe, spTestVarint(3, 0)), "c", nil)
	require.NoError(t, err)
	require.Equal(t, []int{3, 0, 3}, tok.Encode("a☃☃a"))
	require.Equal(t, "a \u2047 a", tok.Decode([]int{3, 0, 3}))
}

func TestLoadTokenizerMissingFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadTokenizer(dir)
	require.ErrorContains(t, err, "tokenizer.model")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.model"), spTestModel(t, "tiny.model"), 0o644))
	_, err = LoadTokenizer(dir)
	require.ErrorContains(t, err, "tokenizer_config.json")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), spTestModel(t, "tokenizer_config.json"), 0o644))
	tok, err := LoadTokenizer(dir)
	require.NoError(t, err)
	require.Equal(t, spTiny(t).Encode("hello 世界"), tok.Encode("hello 世界"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"bos_token": 7}`), 0o644))
	_, err = LoadTokenizer(dir)
	require.ErrorContains(t, err, filepath.Join(dir, "tokenizer_config.json")+": bos_token: ")
}

func TestTokenizerStreamRandom(t *testing.T) {
	tok := spTiny(t)
	rng := rand.New(rand.NewSource(1))
	byteID := func(b byte) int { id, _ := tok.TokenID(spBytePiece(b)); return id }
	for n := 0; n < 2000; n++ {
		var ids []int
		for k := rng.Intn(20); k > 0; k-- {
			switch r := rng.Intn(10); {
			case r < 4: // bytes of a character, sometimes cut short
				s := []byte(string([]rune("aé€😀日▁")[rng.Intn(6)]))
				if rng.Intn(3) == 0 {
					s = s[:rng.Intn(len(s)+1)]
				}
				for _, b := range s {
					ids = append(ids, byteID(b))
				}
			case r < 5:
				ids = append(ids, byteID(byte(rng.Intn(256))))
			case r < 6:
				ids = append(ids, rng.Intn(5)) // specials
			case r < 7:
				ids = append(ids, rng.Intn(1100)-30) // out of range too
			default:
				ids = append(ids, rng.Intn(tok.VocabSize()))
			}
		}
		want := tok.Decode(ids)
		require.True(t, utf8.ValidString(want))
		require.Equal(t, want, spTestStream(t, tok, ids), "ids %v", ids)
	}
}

func spBytePiece(b byte) string { return "<0x" + strings.ToUpper(hex.EncodeToString([]byte{b})) + ">" }

func TestTokenizerLongInputs(t *testing.T) {
	tok := spTiny(t)
	long := spTestCases[len(spTestCases)-1].Text
	for _, s := range []string{
		strings.Repeat(long, 50),
		strings.Repeat(" ", 100000),
		strings.Repeat("a", 100000),
		strings.Repeat("日本", 30000),
		strings.Repeat("\xff", 10000),
	} {
		ids := tok.Encode(s)
		require.NotEmpty(t, ids)
		if utf8.ValidString(s) {
			require.Equal(t, s, tok.Decode(ids))
		}
	}
	// Encoding is local: a text repeated encodes to (nearly) the repeated ids.
	one := tok.Encode(long)
	fifty := tok.Encode(strings.Repeat(long, 50))
	assert.InDelta(t, 50*len(one), len(fifty), 50)
}

func BenchmarkTokenizerEncode(b *testing.B) {
	tok := spTiny(b)
	text := strings.Repeat(spTestCases[len(spTestCases)-1].Text, 10)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text)
	}
}

var (
	spFuzzOnce sync.Once
	spFuzzVar  []*Tokenizer
)

// FuzzTokenizerEncode: Encode never panics nor produces special or out-of-range ids, Decode(Encode(s)) == s
// for valid UTF-8 without a literal ▁, and streaming agrees with Decode. The whitespace-option variants
// only have to not panic and stream consistently.
func FuzzTokenizerEncode(f *testing.F) {
	tok := spTiny(f)
	for _, c := range spTestCases {
		f.Add(c.Text)
	}
	f.Add("a\xffb\xe4\xb8")
	spFuzzOnce.Do(func() {
		for _, v := range spTestLoadVariants(f) {
			vt, err := NewTokenizer(v.Name, spTestVariantModel(f, v), "", nil)
			require.NoError(f, err)
			spFuzzVar = append(spFuzzVar, vt)
		}
	})
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() || tok.IsSpecial(id) {
				t.Fatalf("Encode(%q) gave id %d", s, id)
			}
		}
		got := tok.Decode(ids)
		if utf8.ValidString(s) && !strings.Contains(s, spSpace) && got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("Decode gave invalid UTF-8 %q", got)
		}
		if st := spTestStream(t, tok, ids); st != got {
			t.Fatalf("stream %q != Decode %q", st, got)
		}
		for _, vt := range spFuzzVar {
			vids := vt.Encode(s)
			if st := spTestStream(t, vt, vids); st != vt.Decode(vids) {
				t.Fatalf("variant stream %q != Decode %q", st, vt.Decode(vids))
			}
		}
	})
}

// FuzzTokenizerDecode: any id sequence decodes without panicking, to valid UTF-8, the same way streamed.
func FuzzTokenizerDecode(f *testing.F) {
	tok := spTiny(f)
	f.Add([]byte{1, 3, 200, 100, 40, 2})
	f.Add([]byte{233, 194, 165, 5, 244})
	f.Fuzz(func(t *testing.T, raw []byte) {
		ids := make([]int, 0, len(raw)/2)
		for i := 0; i+1 < len(raw); i += 2 {
			ids = append(ids, int(raw[i])<<8|int(raw[i+1])-1000)
		}
		got := tok.Decode(ids)
		if !utf8.ValidString(got) {
			t.Fatalf("Decode(%v) = %q: invalid UTF-8", ids, got)
		}
		if st := spTestStream(t, tok, ids); st != got {
			t.Fatalf("stream %q != Decode %q", st, got)
		}
	})
}

// add_prefix_space (HF's InternLM3 tokenizer; its class default is true) drops the leading "▁" of the
// first decoded piece only.
func TestTokenizerAddPrefixSpace(t *testing.T) {
	model := spTestModel(t, "tiny.model")
	for _, c := range []struct {
		config string
		want   string
	}{
		{`{}`, " the the"},
		{`{"add_prefix_space": false, "tokenizer_class": "InternLM3Tokenizer"}`, " the the"},
		{`{"add_prefix_space": true}`, "the the"},
		{`{"tokenizer_class": "InternLM3Tokenizer"}`, "the the"},
	} {
		tok, err := NewTokenizer("tiny.model", model, "tokenizer_config.json", []byte(c.config))
		require.NoError(t, err)
		ids := tok.Encode(" the the")
		require.True(t, strings.HasPrefix(tok.Piece(ids[0]), spSpace), "the test needs a first piece with a leading ▁")
		require.Equal(t, c.want, tok.Decode(ids), c.config)
		require.Equal(t, c.want, spTestStream(t, tok, ids), c.config)
	}
	_, err := NewTokenizer("tiny.model", model, "tokenizer_config.json", []byte(`{"add_prefix_space": "yes"}`))
	require.ErrorContains(t, err, "tokenizer_config.json: add_prefix_space: ")
}
