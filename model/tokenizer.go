package model

// The tokenizer: SentencePiece BPE read from tokenizer.model (protobuf), plus the special tokens and BOS
// settings of tokenizer_config.json.
//
// Written here rather than taken from github.com/eliben/go-sentencepiece v0.6.0, which refuses models with
// add_dummy_prefix or remove_extra_whitespaces, mis-encodes invalid UTF-8 and panics on a run of 40 spaces.
//
// Encoding follows sentencepiece 0.1.97 (bpe_model.cc, normalizer.cc, sentencepiece_processor.cc) and is
// checked against it by the golden vectors in testdata/golden. Deliberate differences, all on inputs
// sentencepiece itself handles oddly:
//   - Tokens that tokenizer_config.json marks special are never produced from text: a USER_DEFINED piece
//     marked special is not matched and no merge may produce it (sentencepiece would match it).
//   - A single character whose piece is CONTROL or UNKNOWN is byte-encoded (or <unk>); sentencepiece
//     silently drops it from the output.
//   - Non-special added tokens of tokenizer_config.json whose text is not a model piece are matched whole,
//     like USER_DEFINED pieces (their lstrip/rstrip/single_word flags are ignored).
//   - Decode gives "" for special tokens (so <unk>, when tokenizer_config.json marks it special) and control
//     tokens, and U+FFFD for an id with no piece; sentencepiece prints " ⁇ " for <unk> and rejects ids out of
//     range.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ilmweb/ilmweb/internal/safefile"
)

// SentencePiece piece types (ModelProto.SentencePiece.Type).
const (
	spAdded       = 0 // not a model piece: a token of tokenizer_config.json's added_tokens_decoder
	spNormal      = 1
	spUnknown     = 2
	spControl     = 3
	spUserDefined = 4
	spUnused      = 5
	spByte        = 6
)

// spModelBPE is TrainerSpec.ModelType BPE; UNIGRAM (1) is the proto default.
const spModelBPE = 2

const spSpace = "\u2581" // ▁, how sentencepiece writes a space inside pieces

var spModelTypeNames = map[uint64]string{1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"}

// Tokenizer turns text into InternLM3 token ids and back. It is safe for concurrent use.
type Tokenizer struct {
	pieces   []string // by id; for ids past the model, the added token's content ("" when undefined)
	types    []uint8  // piece type by id; spAdded for added_tokens_decoder entries that are not model pieces
	special  []bool   // decodes to "" and is never produced by Encode
	modelLen int      // number of pieces in tokenizer.model

	scores    []float32
	mergeable map[string]int // NORMAL, USER_DEFINED and UNUSED pieces not marked special: BPE may produce them
	byID      map[string]int // every piece and added token: TokenID
	matcher   spTrie         // pieces matched whole from text: USER_DEFINED (not special), non-special added tokens
	byteIDs   [256]int32     // <0xNN> piece ids, -1 when absent

	unkID        int
	unkSurface   string
	byteFallback bool
	dummyPrefix  bool
	removeExtra  bool
	escapeSpaces bool
	spaceSuffix  bool

	bos, eos       int
	addBOS, addEOS bool
	chatTemplate   string
	// addPrefixSpace is tokenizer_config.json's add_prefix_space: HF's InternLM3 tokenizer then drops the
	// leading "▁" of the first decoded piece even when the model adds no dummy prefix.
	addPrefixSpace bool
}

// LoadTokenizer reads dir/tokenizer.model and dir/tokenizer_config.json.
func LoadTokenizer(dir string) (*Tokenizer, error) {
	modelPath := filepath.Join(dir, "tokenizer.model")
	model, err := safefile.ReadFile(modelPath, MaxTokenizerModelBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	configPath := filepath.Join(dir, "tokenizer_config.json")
	config, err := safefile.ReadFile(configPath, MaxTokenizerConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return NewTokenizer(modelPath, model, configPath, config)
}

// NewTokenizer parses tokenizer.model bytes and tokenizer_config.json bytes; names are used in errors.
// An empty config means plain sentencepiece: no special tokens beyond the model's control pieces, BOS is
// the model's bos piece and is added.
func NewTokenizer(modelName string, model []byte, configName string, config []byte) (*Tokenizer, error) {
	var mp spModelProto
	mp.init()
	if err := mp.parse(model); err != nil {
		return nil, fmt.Errorf("%s: %w", modelName, err)
	}
	t, err := newSPTokenizer(&mp)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modelName, err)
	}
	if err := t.applyConfig(config, &mp); err != nil {
		return nil, fmt.Errorf("%s: %w", configName, err)
	}
	t.finish()
	return t, nil
}

// VocabSize is the number of token ids: the model's pieces, extended by any added token past them.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// BOS is the id of bos_token (-1 when there is none).
func (t *Tokenizer) BOS() int { return t.bos }

// EOS is the id of eos_token (-1 when there is none). Generation should stop on generation_config's ids.
func (t *Tokenizer) EOS() int { return t.eos }

// AddBOS reports add_bos_token: whether a prompt starts with BOS.
func (t *Tokenizer) AddBOS() bool { return t.addBOS && t.bos >= 0 }

// AddEOS reports add_eos_token.
func (t *Tokenizer) AddEOS() bool { return t.addEOS && t.eos >= 0 }

// ChatTemplate is tokenizer_config.json's chat_template ("" when absent).
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// IsSpecial reports whether id is a control piece or a token tokenizer_config.json marks special.
func (t *Tokenizer) IsSpecial(id int) bool { return id >= 0 && id < len(t.special) && t.special[id] }

// Piece is the text of token id as the vocabulary spells it ("▁" for a space, "<0x0A>" for a byte);
// "" for an id out of range.
func (t *Tokenizer) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// TokenID looks a piece up by its exact text: special tokens of tokenizer_config.json and every piece of
// the model, whatever its type.
func (t *Tokenizer) TokenID(piece string) (int, bool) {
	id, ok := t.byID[piece]
	return id, ok
}

// ---- tokenizer.model parsing ----

type spPiece struct {
	piece string
	score float32
	typ   uint64
}

type spModelProto struct {
	pieces []spPiece
	// trainer_spec
	modelType, unkID, bosID, eosID           int64
	byteFallback, spaceSuffix                bool
	unkSurface, unkPiece, bosPiece, eosPiece string
	// normalizer_spec
	normName                               string
	charsmap                               []byte
	dummyPrefix, removeExtra, escapeSpaces bool
	denormCharsmap                         []byte
}

// init sets the proto2 defaults of sentencepiece_model.proto.
func (m *spModelProto) init() {
	m.modelType = 1
	m.unkID, m.bosID, m.eosID = 0, 1, 2
	m.unkSurface = " \u2047 "
	m.unkPiece, m.bosPiece, m.eosPiece = "<unk>", "<s>", "</s>"
	m.dummyPrefix, m.removeExtra, m.escapeSpaces = true, true, true
}

// spFields walks the fields of one protobuf message. Repeated occurrences of a singular message field are
// merged, as protobuf does.
func spFields(b []byte, field string, names func(protowire.Number) string, fn func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%s: %v", field, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			u = uint64(x)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			if names != nil && names(num) != "" {
				return fmt.Errorf("%s: %v", names(num), protowire.ParseError(n))
			}
			return fmt.Errorf("%s: field %d: %v", field, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, u); err != nil {
			return err
		}
	}
	return nil
}

func spWant(field string, typ, want protowire.Type) error {
	if typ != want {
		return fmt.Errorf("%s: wrong wire type %d", field, typ)
	}
	return nil
}

func (m *spModelProto) parse(b []byte) error {
	names := func(num protowire.Number) string {
		switch num {
		case 1:
			return fmt.Sprintf("pieces[%d]", len(m.pieces))
		case 2:
			return "trainer_spec"
		case 3:
			return "normalizer_spec"
		}
		return ""
	}
	return spFields(b, "ModelProto", names, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch num {
		case 1:
			field := fmt.Sprintf("pieces[%d]", len(m.pieces))
			if err := spWant(field, typ, protowire.BytesType); err != nil {
				return err
			}
			p := spPiece{typ: spNormal}
			err := spFields(v, field, nil, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
				switch num {
				case 1:
					if err := spWant(field+".piece", typ, protowire.BytesType); err != nil {
						return err
					}
					p.piece = string(v)
				case 2:
					if err := spWant(field+".score", typ, protowire.Fixed32Type); err != nil {
						return err
					}
					p.score = math.Float32frombits(uint32(u))
				case 3:
					if err := spWant(field+".type", typ, protowire.VarintType); err != nil {
						return err
					}
					p.typ = u
				}
				return nil
			})
			if err != nil {
				return err
			}
			m.pieces = append(m.pieces, p)
		case 2:
			if err := spWant("trainer_spec", typ, protowire.BytesType); err != nil {
				return err
			}
			return m.parseTrainer(v)
		case 3:
			if err := spWant("normalizer_spec", typ, protowire.BytesType); err != nil {
				return err
			}
			return m.parseNormalizer(v, "normalizer_spec", false)
		case 5:
			if err := spWant("denormalizer_spec", typ, protowire.BytesType); err != nil {
				return err
			}
			return m.parseNormalizer(v, "denormalizer_spec", true)
		}
		return nil
	})
}

func (m *spModelProto) parseTrainer(b []byte) error {
	return spFields(b, "trainer_spec", nil, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		varint := func(name string, dst *int64) error {
			if err := spWant("trainer_spec."+name, typ, protowire.VarintType); err != nil {
				return err
			}
			*dst = int64(int32(u)) // int32 fields: negative values are sign-extended varints
			return nil
		}
		boolean := func(name string, dst *bool) error {
			if err := spWant("trainer_spec."+name, typ, protowire.VarintType); err != nil {
				return err
			}
			*dst = u != 0
			return nil
		}
		str := func(name string, dst *string) error {
			if err := spWant("trainer_spec."+name, typ, protowire.BytesType); err != nil {
				return err
			}
			*dst = string(v)
			return nil
		}
		switch num {
		case 3:
			return varint("model_type", &m.modelType)
		case 24:
			return boolean("treat_whitespace_as_suffix", &m.spaceSuffix)
		case 35:
			return boolean("byte_fallback", &m.byteFallback)
		case 40:
			return varint("unk_id", &m.unkID)
		case 41:
			return varint("bos_id", &m.bosID)
		case 42:
			return varint("eos_id", &m.eosID)
		case 44:
			return str("unk_surface", &m.unkSurface)
		case 45:
			return str("unk_piece", &m.unkPiece)
		case 46:
			return str("bos_piece", &m.bosPiece)
		case 47:
			return str("eos_piece", &m.eosPiece)
		}
		return nil
	})
}

func (m *spModelProto) parseNormalizer(b []byte, field string, denorm bool) error {
	return spFields(b, field, nil, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		boolean := func(name string, dst *bool) error {
			if err := spWant(field+"."+name, typ, protowire.VarintType); err != nil {
				return err
			}
			if !denorm {
				*dst = u != 0
			}
			return nil
		}
		switch num {
		case 1:
			if err := spWant(field+".name", typ, protowire.BytesType); err != nil {
				return err
			}
			if !denorm {
				m.normName = string(v)
			}
		case 2:
			if err := spWant(field+".precompiled_charsmap", typ, protowire.BytesType); err != nil {
				return err
			}
			if denorm {
				m.denormCharsmap = append([]byte(nil), v...)
			} else {
				m.charsmap = append([]byte(nil), v...)
			}
		case 3:
			return boolean("add_dummy_prefix", &m.dummyPrefix)
		case 4:
			return boolean("remove_extra_whitespaces", &m.removeExtra)
		case 5:
			return boolean("escape_whitespaces", &m.escapeSpaces)
		}
		return nil
	})
}

func newSPTokenizer(m *spModelProto) (*Tokenizer, error) {
	if m.modelType != spModelBPE {
		name := spModelTypeNames[uint64(m.modelType)]
		if name == "" {
			name = strconv.FormatInt(m.modelType, 10)
		}
		return nil, fmt.Errorf("trainer_spec.model_type: %s is not supported, only BPE", name)
	}
	if len(m.charsmap) > 0 {
		name := m.normName
		if name == "" {
			name = "custom"
		}
		return nil, fmt.Errorf("normalizer_spec.precompiled_charsmap: %d bytes of %q normalization rules; only identity normalization is supported", len(m.charsmap), name)
	}
	if len(m.denormCharsmap) > 0 {
		return nil, fmt.Errorf("denormalizer_spec.precompiled_charsmap: denormalization rules are not supported")
	}
	if len(m.pieces) == 0 {
		return nil, errors.New("pieces: empty vocabulary")
	}
	n := len(m.pieces)
	t := &Tokenizer{
		pieces:       make([]string, n),
		types:        make([]uint8, n),
		scores:       make([]float32, n),
		modelLen:     n,
		byID:         make(map[string]int, n),
		unkID:        -1,
		unkSurface:   m.unkSurface,
		byteFallback: m.byteFallback,
		dummyPrefix:  m.dummyPrefix,
		removeExtra:  m.removeExtra,
		escapeSpaces: m.escapeSpaces,
		spaceSuffix:  m.spaceSuffix,
		bos:          -1,
		eos:          -1,
		addBOS:       true,
	}
	for i := range t.byteIDs {
		t.byteIDs[i] = -1
	}
	for id, p := range m.pieces {
		field := fmt.Sprintf("pieces[%d]", id)
		if p.piece == "" {
			return nil, fmt.Errorf("%s.piece: empty", field)
		}
		if !utf8.ValidString(p.piece) {
			return nil, fmt.Errorf("%s.piece: %q is not valid UTF-8", field, p.piece)
		}
		if p.typ < spNormal || p.typ > spByte {
			return nil, fmt.Errorf("%s.type: unknown type %d", field, p.typ)
		}
		if prev, dup := t.byID[p.piece]; dup {
			return nil, fmt.Errorf("%s.piece: %q is already pieces[%d]", field, p.piece, prev)
		}
		t.byID[p.piece] = id
		t.pieces[id], t.types[id], t.scores[id] = p.piece, uint8(p.typ), p.score
		switch p.typ {
		case spUnknown:
			if t.unkID >= 0 {
				return nil, fmt.Errorf("%s.type: a second UNKNOWN piece (the first is pieces[%d])", field, t.unkID)
			}
			t.unkID = id
		case spByte:
			if !m.byteFallback {
				return nil, fmt.Errorf("%s: byte piece %q but trainer_spec.byte_fallback is false", field, p.piece)
			}
			b, ok := spParseByte(p.piece)
			if !ok {
				return nil, fmt.Errorf("%s.piece: byte piece %q is not of the form <0xNN>", field, p.piece)
			}
			t.byteIDs[b] = int32(id)
		}
	}
	if t.unkID < 0 {
		return nil, errors.New("pieces: no UNKNOWN piece (<unk>)")
	}
	if m.unkID != int64(t.unkID) {
		return nil, fmt.Errorf("trainer_spec.unk_id: %d, but the UNKNOWN piece is pieces[%d]", m.unkID, t.unkID)
	}
	if m.byteFallback {
		for b, id := range t.byteIDs {
			if id < 0 {
				return nil, fmt.Errorf("trainer_spec.byte_fallback: true but byte piece <0x%02X> is missing", b)
			}
		}
	}
	if id, ok := t.byID[m.bosPiece]; ok && m.bosID >= 0 && int64(id) == m.bosID {
		t.bos = id
	}
	if id, ok := t.byID[m.eosPiece]; ok && m.eosID >= 0 && int64(id) == m.eosID {
		t.eos = id
	}
	t.special = make([]bool, n)
	for id, typ := range t.types {
		t.special[id] = typ == spControl
	}
	return t, nil
}

func spParseByte(p string) (byte, bool) {
	if len(p) != 6 || !strings.HasPrefix(p, "<0x") || p[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(p[3:5], 16, 8)
	return byte(v), err == nil
}

// ---- tokenizer_config.json ----

type spAddedToken struct {
	Content string `json:"content"`
	Special *bool  `json:"special"`
}

func (t *Tokenizer) applyConfig(config []byte, m *spModelProto) error {
	if len(strings.TrimSpace(string(config))) == 0 {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(config, &raw); err != nil {
		return fmt.Errorf("not a JSON object: %v", err)
	}
	boolean := func(key string, dst *bool) error {
		if v, ok := raw[key]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, dst); err != nil {
				return fmt.Errorf("%s: %v", key, err)
			}
		}
		return nil
	}
	if err := boolean("add_bos_token", &t.addBOS); err != nil {
		return err
	}
	if err := boolean("add_eos_token", &t.addEOS); err != nil {
		return err
	}
	// Absent, it takes the default of the tokenizer class: true for InternLM3's, false otherwise (plain
	// sentencepiece decoding, which the goldens check).
	var class string
	json.Unmarshal(raw["tokenizer_class"], &class)
	t.addPrefixSpace = class == "InternLM3Tokenizer"
	if err := boolean("add_prefix_space", &t.addPrefixSpace); err != nil {
		return err
	}

	if v, ok := raw["added_tokens_decoder"]; ok && string(v) != "null" {
		var dec map[string]spAddedToken
		if err := json.Unmarshal(v, &dec); err != nil {
			return fmt.Errorf("added_tokens_decoder: %v", err)
		}
		keys := make([]string, 0, len(dec))
		for k := range dec {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		contentIDs := map[string]int{}
		for _, k := range keys {
			at := dec[k]
			field := fmt.Sprintf("added_tokens_decoder[%q]", k)
			id, err := strconv.Atoi(k)
			if err != nil || id < 0 {
				return fmt.Errorf("%s: not a token id", field)
			}
			if id >= t.modelLen+1<<20 {
				return fmt.Errorf("%s: token id %d is far past the %d pieces of the model", field, id, t.modelLen)
			}
			if at.Content == "" {
				return fmt.Errorf("%s.content: empty", field)
			}
			if !utf8.ValidString(at.Content) {
				return fmt.Errorf("%s.content: not valid UTF-8", field)
			}
			if prev, dup := contentIDs[at.Content]; dup {
				return fmt.Errorf("%s.content: %q is also token %d", field, at.Content, prev)
			}
			contentIDs[at.Content] = id
			for id >= len(t.pieces) {
				t.pieces = append(t.pieces, "")
				t.types = append(t.types, 0)
				t.special = append(t.special, false)
			}
			if id >= t.modelLen || m.pieces[id].piece != at.Content {
				t.types[id] = spAdded // decoded as its content, like HF
			}
			t.pieces[id] = at.Content
			t.special[id] = (at.Special != nil && *at.Special) || t.types[id] == spControl
		}
		for content, id := range contentIDs {
			t.byID[content] = id
		}
	}

	token := func(key string, dst *int) error {
		v, ok := raw[key]
		if !ok {
			return nil
		}
		if string(v) == "null" {
			*dst = -1
			return nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			var at spAddedToken // {"__type": "AddedToken", "content": ...}
			if err2 := json.Unmarshal(v, &at); err2 != nil || at.Content == "" {
				return fmt.Errorf("%s: neither a string nor an AddedToken object", key)
			}
			s = at.Content
		}
		id, ok := t.byID[s]
		if !ok {
			return fmt.Errorf("%s: %q is not in the vocabulary", key, s)
		}
		*dst = id
		return nil
	}
	if err := token("bos_token", &t.bos); err != nil {
		return err
	}
	if err := token("eos_token", &t.eos); err != nil {
		return err
	}
	var unk int
	if err := token("unk_token", &unk); err != nil {
		return err
	}

	if v, ok := raw["chat_template"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &t.chatTemplate); err != nil {
			// Newer configs may hold a list of named templates: take "default".
			var named []struct {
				Name     string `json:"name"`
				Template string `json:"template"`
			}
			if err2 := json.Unmarshal(v, &named); err2 != nil {
				return fmt.Errorf("chat_template: neither a string nor a list of named templates")
			}
			for _, n := range named {
				if n.Name == "default" {
					t.chatTemplate = n.Template
				}
			}
		}
	}
	return nil
}

// finish builds the encoding tables once the special tokens are known.
func (t *Tokenizer) finish() {
	t.mergeable = make(map[string]int, t.modelLen)
	for id := 0; id < t.modelLen; id++ {
		switch t.types[id] {
		case spNormal, spUserDefined, spUnused:
			if !t.special[id] {
				t.mergeable[t.pieces[id]] = id
			}
		}
	}
	for id, p := range t.pieces {
		if t.special[id] || p == "" {
			continue
		}
		switch t.types[id] {
		case spUserDefined:
			t.matcher.add(p, id)
		case spAdded:
			t.matcher.add(t.escape(p), id)
		}
	}
}

func (t *Tokenizer) escape(s string) string {
	if t.escapeSpaces {
		return strings.ReplaceAll(s, " ", spSpace)
	}
	return s
}

// spTrie matches the longest of a set of strings at the start of a text.
type spTrie struct {
	nodes []spTrieNode
}

type spTrieNode struct {
	next map[byte]int32
	id   int32 // -1: no string ends here
}

func (tr *spTrie) add(s string, id int) {
	if len(tr.nodes) == 0 {
		tr.nodes = append(tr.nodes, spTrieNode{id: -1})
	}
	n := int32(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		nx, ok := tr.nodes[n].next[c]
		if !ok {
			if tr.nodes[n].next == nil {
				tr.nodes[n].next = map[byte]int32{}
			}
			nx = int32(len(tr.nodes))
			tr.nodes[n].next[c] = nx
			tr.nodes = append(tr.nodes, spTrieNode{id: -1})
		}
		n = nx
	}
	if tr.nodes[n].id < 0 {
		tr.nodes[n].id = int32(id)
	}
}

// match returns the length and id of the longest string that prefixes s, or 0, -1.
func (tr *spTrie) match(s string) (int, int) {
	if len(tr.nodes) == 0 {
		return 0, -1
	}
	n, best, bestID := int32(0), 0, -1
	for i := 0; i < len(s); i++ {
		nx, ok := tr.nodes[n].next[s[i]]
		if !ok {
			break
		}
		n = nx
		if id := tr.nodes[n].id; id >= 0 {
			best, bestID = i+1, int(id)
		}
	}
	return best, bestID
}

// ---- encoding ----

// normalize applies sentencepiece's identity normalizer: invalid UTF-8 bytes become U+FFFD (one per byte),
// and the whitespace options of normalizer_spec (only ASCII space counts as whitespace).
func (t *Tokenizer) normalize(text string) string {
	if text == "" {
		return ""
	}
	if t.removeExtra {
		text = strings.TrimLeft(text, " ")
		if text == "" {
			return ""
		}
	}
	space := " "
	if t.escapeSpaces {
		space = spSpace
	}
	var sb strings.Builder
	sb.Grow(len(text) + len(text)/2 + 8)
	if t.dummyPrefix && !t.spaceSuffix {
		sb.WriteString(space)
	}
	prevSpace := t.removeExtra
	for i := 0; i < len(text); {
		c := text[i]
		if c == ' ' {
			if !prevSpace {
				sb.WriteString(space)
			}
			prevSpace = t.removeExtra
			i++
			continue
		}
		prevSpace = false
		if c < utf8.RuneSelf {
			sb.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.WriteString(text[i : i+size])
		}
		i += size
	}
	out := sb.String()
	if t.removeExtra {
		for strings.HasSuffix(out, space) {
			out = out[:len(out)-len(space)]
		}
	}
	if t.dummyPrefix && t.spaceSuffix {
		out += space
	}
	return out
}

type spSymbol struct {
	start, end int32 // bytes of the normalized text; start == end once merged away
	prev, next int32
	id         int32 // id of a whole-matched piece, -1 otherwise
}

type spPair struct {
	left, right int32
	size        int32
	score       float32
}

// spAgenda is a max-heap of candidate merges: highest score first, then leftmost.
type spAgenda []spPair

func (a spAgenda) less(i, j int) bool {
	if a[i].score != a[j].score {
		return a[i].score > a[j].score
	}
	return a[i].left < a[j].left
}

func (a *spAgenda) push(p spPair) {
	*a = append(*a, p)
	h := *a
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (a *spAgenda) pop() spPair {
	h := *a
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*a = h
	return top
}

// Encode turns plain user text into ids exactly as sentencepiece's BPE does. It adds no BOS and never
// produces special or control tokens, except <unk> for unknown characters in a model without byte fallback.
// Invalid UTF-8 bytes are encoded as U+FFFD each, like sentencepiece.
func (t *Tokenizer) Encode(text string) []int {
	norm := t.normalize(text)
	if norm == "" {
		return []int{}
	}

	// Split into characters, matching whole pieces first.
	syms := make([]spSymbol, 0, len(norm))
	for i := 0; i < len(norm); {
		n, id := t.matcher.match(norm[i:])
		if n == 0 {
			_, n = utf8.DecodeRuneInString(norm[i:])
		}
		k := int32(len(syms))
		syms = append(syms, spSymbol{start: int32(i), end: int32(i + n), prev: k - 1, next: k + 1, id: int32(id)})
		i += n
	}
	syms[len(syms)-1].next = -1

	var revMerge map[string][2]string // how UNUSED pieces were formed, to split them again
	agenda := make(spAgenda, 0, len(syms))
	tryPair := func(left, right int32) {
		if left < 0 || right < 0 || syms[left].id >= 0 || syms[right].id >= 0 {
			return
		}
		piece := norm[syms[left].start:syms[right].end]
		id, ok := t.mergeable[piece]
		if !ok {
			return
		}
		agenda.push(spPair{left: left, right: right, size: int32(len(piece)), score: t.scores[id]})
		if t.types[id] == spUnused {
			if revMerge == nil {
				revMerge = map[string][2]string{}
			}
			revMerge[piece] = [2]string{norm[syms[left].start:syms[left].end], norm[syms[right].start:syms[right].end]}
		}
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		tryPair(i-1, i)
	}
	for len(agenda) > 0 {
		top := agenda.pop()
		l, r := &syms[top.left], &syms[top.right]
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != top.size {
			continue // stale
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = top.left
		}
		r.start, r.end = 0, 0
		tryPair(l.prev, top.left)
		tryPair(top.left, l.next)
	}

	ids := make([]int, 0, len(syms))
	prevUnk := false
	var emit func(piece string)
	emit = func(piece string) {
		id, ok := t.mergeable[piece]
		if ok && t.types[id] == spUnused {
			if split, ok := revMerge[piece]; ok {
				emit(split[0])
				emit(split[1])
				return
			}
		}
		if ok {
			ids = append(ids, id)
			prevUnk = false
			return
		}
		if t.byteFallback {
			for i := 0; i < len(piece); i++ {
				ids = append(ids, int(t.byteIDs[piece[i]]))
			}
			prevUnk = false
			return
		}
		if !prevUnk { // a run of unknown characters is one <unk>
			ids = append(ids, t.unkID)
		}
		prevUnk = true
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		s := syms[i]
		if s.id >= 0 {
			ids = append(ids, int(s.id))
			prevUnk = false
			continue
		}
		emit(norm[s.start:s.end])
	}
	return ids
}

// ---- decoding ----

// spDecodeState carries sentencepiece's decoding context from piece to piece: pending byte pieces and
// whether the leading space of the text is still to be removed.
type spDecodeState struct {
	t         *Tokenizer
	bytes     []byte
	wroteText bool // some non-empty text has been produced
	bosWS     bool // still at the beginning: a leading ▁ may be dropped
	bosWSSeen bool // the previous piece dropped its leading ▁
}

func (t *Tokenizer) newDecodeState() spDecodeState {
	return spDecodeState{t: t, bosWS: true}
}

// add appends the text completed by id to sb. With final false, bytes that may still become a character
// are held back.
func (s *spDecodeState) add(sb *strings.Builder, id int) {
	t := s.t
	if id < 0 || id >= len(t.pieces) || t.pieces[id] == "" {
		// An id with no piece (past the tokenizer, or in a gap of its added tokens) shows as U+FFFD rather
		// than vanishing, so a model that emits one is seen to answer.
		s.flushBytes(sb, true)
		sb.WriteString("\uFFFD")
		s.wroteText = true
		return
	}
	if id < t.modelLen && t.types[id] == spByte && !t.special[id] {
		b, _ := spParseByte(t.pieces[id])
		s.bytes = append(s.bytes, b)
		s.flushBytes(sb, false)
		return
	}
	s.flushBytes(sb, true)
	if s.bosWSSeen || s.wroteText {
		s.bosWS = false
	}
	text, seen := t.decodePiece(id, s.bosWS)
	s.bosWSSeen = seen
	if text != "" {
		sb.WriteString(text)
		s.wroteText = true
	}
}

// flushBytes writes the pending bytes that form characters (or, with final or when they can no longer
// become one, U+FFFD per invalid byte, as sentencepiece does).
func (s *spDecodeState) flushBytes(sb *strings.Builder, final bool) {
	b := s.bytes
	for len(b) > 0 {
		if !final && !utf8.FullRune(b) {
			break
		}
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[:size])
		}
		s.wroteText = true
		b = b[size:]
	}
	s.bytes = append(s.bytes[:0], b...)
}

// decodePiece is sentencepiece's DecodeSentencePiece: the surface of one non-byte piece, and whether it
// consumed the leading ▁ of the text.
func (t *Tokenizer) decodePiece(id int, bosWS bool) (string, bool) {
	if t.special[id] {
		return "", false
	}
	piece := t.pieces[id]
	switch t.types[id] {
	case spControl:
		return "", false
	case spUnknown:
		return t.unkSurface, false
	case spAdded: // its content as is
		return piece, false
	}
	seen := false
	if bosWS && (t.dummyPrefix || t.removeExtra || t.addPrefixSpace) {
		if strings.HasPrefix(piece, spSpace) {
			piece = piece[len(spSpace):]
			seen = !t.removeExtra // removing extra whitespace strips every leading ▁
		}
	}
	return strings.ReplaceAll(piece, spSpace, " "), seen
}

// Decode turns ids back into text like sentencepiece: "▁" becomes a space (the leading one dropped when the
// model adds a dummy prefix or removes extra whitespace), runs of byte pieces are reassembled into UTF-8
// (U+FFFD for each byte that forms no character), special and control tokens give "", an id with no piece
// U+FFFD.
func (t *Tokenizer) Decode(ids []int) string {
	var sb strings.Builder
	s := t.newDecodeState()
	for _, id := range ids {
		s.add(&sb, id)
	}
	s.flushBytes(&sb, true)
	return sb.String()
}

// StreamDecoder decodes ids one at a time, for streaming output. The concatenation of everything Add and
// Flush return equals Decode of all the ids.
type StreamDecoder struct {
	state spDecodeState
	sb    strings.Builder
}

// NewStreamDecoder starts decoding a new sequence.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{state: t.newDecodeState()}
}

// Add decodes one more id and returns the text it completes; bytes of an unfinished UTF-8 character are
// held back until the character is complete (or cannot be).
func (d *StreamDecoder) Add(id int) string {
	d.sb.Reset()
	d.state.add(&d.sb, id)
	return d.sb.String()
}

// Flush returns what is held back, each byte of an incomplete character as U+FFFD, like sentencepiece.
func (d *StreamDecoder) Flush() string {
	d.sb.Reset()
	d.state.flushBytes(&d.sb, true)
	return d.sb.String()
}
