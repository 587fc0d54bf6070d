package model

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// grammarSchemas are the schemas the sampled answers must validate against ("" is json_object).
var grammarSchemas = map[string]string{
	"json_object": "",
	"person": `{"type": "object", "properties": {
		"name": {"type": "string", "minLength": 1, "maxLength": 12},
		"age": {"type": "integer", "minimum": 0, "maximum": 150},
		"tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
		"ok": {"type": "boolean"}},
		"required": ["name", "age", "ok"], "additionalProperties": false}`,
	"nested": `{"type": "object", "title": "shape", "properties": {
		"point": {"type": "object", "properties": {"x": {"type": "number", "minimum": -10, "maximum": 10.5}, "y": {"type": "number"}}, "required": ["x", "y"]},
		"label": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
		"kind": {"const": "pt"}},
		"required": ["point", "kind"]}`,
	"array": `{"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 1000}, "minItems": 2, "maxItems": 4}`,
	"map":   `{"type": "object", "additionalProperties": {"type": ["integer", "null"]}, "description": "counts"}`,
	"enum":  `{"enum": ["red", "green", 1, null, {"a": [1, 2]}]}`,
}

func compileValidator(t testing.TB, schema string) *jsonschema.Schema {
	t.Helper()
	if schema == "" {
		schema = `{"type": "object"}`
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("schema.json", doc))
	s, err := c.Compile("schema.json")
	require.NoError(t, err)
	return s
}

func grammarFor(t testing.TB, v *Vocab, schema string) *Grammar {
	t.Helper()
	if schema == "" {
		return JSONObjectGrammar(v)
	}
	g, err := SchemaGrammar(v, []byte(schema))
	require.NoError(t, err)
	return g
}

// Every answer the tiny random model gives under a grammar parses and validates against its schema, with
// sampling (temperature, top-k, top-p, seeds) and with budgets tight enough that the end must be steered.
func TestGrammarAnswersValidate(t *testing.T) {
	m := tinyModel(t)
	vocab := NewVocab(m.Tokenizer, m.Stop)
	prompt := m.Chat.Encode([]Message{{Role: "user", Content: "Answer in JSON."}}, true)
	s := NewSession(NewCPU(m.Config, m.Weights, 256), m.Config)
	answers := 0
	for name, schema := range grammarSchemas {
		validator := compileValidator(t, schema)
		g := grammarFor(t, vocab, schema)
		for seed := range 10 {
			sampling := SamplingParams{Temperature: 1, TopK: 40, TopP: 0.9, RepetitionPenalty: 1.005, Seed: uint64(seed)}
			if seed == 0 {
				sampling = Greedy()
			}
			maxTokens := 40 + 8*seed
			res, err := s.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: maxTokens, Stop: m.Stop, Sampling: sampling, Grammar: g},
				func(int) error { return nil })
			require.NoError(t, err)
			text := m.Tokenizer.Decode(res.Tokens)
			what := fmt.Sprintf("%s seed %d (%s, %d tokens): %q", name, seed, res.FinishReason, len(res.Tokens), text)
			require.LessOrEqual(t, len(res.Tokens), maxTokens, what)
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
			require.NoError(t, err, what)
			require.NoError(t, validator.Validate(inst), what)
			answers++
		}
	}
	require.GreaterOrEqual(t, answers, 50)
}

// Known documents, tokenized, are accepted exactly when they are valid.
func TestGrammarAcceptsAndRejects(t *testing.T) {
	tok := spTiny(t)
	vocab := NewVocab(tok, []int{2})
	cases := []struct {
		schema, doc string
		ok          bool
	}{
		{"", `{"a": [1, -2.5e3, true, null, {"b": "x\u00e9\n"}], "c": "中文"}`, true},
		{"", `{"a": 01}`, false},
		{"", `[1]`, false},
		{"", `{"a": "\ud800"}`, false},
		{grammarSchemas["person"], `{"name": "Bo", "age": 150, "ok": false}`, true},
		{grammarSchemas["person"], `{"name": "Bo", "age": 151, "ok": false}`, false},
		{grammarSchemas["person"], `{"name": "", "age": 1, "ok": false}`, false},
		{grammarSchemas["person"], `{"name": "Bo", "ok": false}`, false},
		{grammarSchemas["person"], `{"name": "Bo", "age": 7, "tags": ["a", "c"], "ok": true}`, true},
		{grammarSchemas["person"], `{"name": "Bo", "age": 7, "tags": [], "ok": true}`, false},
		{grammarSchemas["nested"], `{"point": {"x": 9.99, "y": -1e9}, "label": null, "kind": "pt"}`, true},
		{grammarSchemas["nested"], `{"point": {"x": 10, "y": 0}, "kind": "pt"}`, true},
		{grammarSchemas["nested"], `{"point": {"x": 11, "y": 0}, "kind": "pt"}`, false},
		{grammarSchemas["nested"], `{"point": {"x": -10.5, "y": 0}, "kind": "pt"}`, false},
		{grammarSchemas["array"], `[-5, 1000]`, true},
		{grammarSchemas["array"], `[-6, 1000]`, false},
		{grammarSchemas["array"], `[1, 2, 3, 4, 5]`, false},
		{grammarSchemas["map"], `{"x": 1, "y": null}`, true},
		{grammarSchemas["enum"], `{"a":[1,2]}`, true},
		{grammarSchemas["enum"], `"blue"`, false},
	}
	for _, c := range cases {
		g := grammarFor(t, vocab, c.schema)
		m := g.NewMatcher()
		ok := true
		for _, id := range tok.Encode(c.doc) {
			if !m.Mask().has(id) {
				ok = false
				break
			}
			require.True(t, m.Accept(id))
		}
		if ok {
			ok = m.CanEnd()
		}
		require.Equal(t, c.ok, ok, "%s", c.doc)
		if c.ok {
			var v any
			require.NoError(t, json.Unmarshal([]byte(c.doc), &v))
		}
	}
}

func TestSchemaGrammarRefusesUnsupported(t *testing.T) {
	vocab := NewVocab(spTiny(t), []int{2})
	for schema, want := range map[string]string{
		`{"type": "string", "pattern": "^a"}`:                 "JSON Schema keyword 'pattern': not supported",
		`{"properties": {"a": {"$ref": "#/$defs/x"}}}`:        "JSON Schema keyword '$ref' at /properties/a: not supported",
		`{"type": "object", "required": ["a"]}`:               "JSON Schema keyword 'required': property \"a\" is required",
		`{"type": "integer", "minimum": 0.5, "maximum": 0.7}`: "JSON Schema keyword 'minimum': no integer lies between 0.5 and 0.7",
		`{"type": "strin"}`:                                   "JSON Schema keyword 'type': unknown type \"strin\"",
		`{"anyOf": [{"type": "string"}], "type": "string"}`:   "JSON Schema keyword 'anyOf': cannot be combined",
	} {
		_, err := SchemaGrammar(vocab, []byte(schema))
		require.ErrorContains(t, err, want, schema)
	}
}

// With every token allowed, SampleAllowed (top-k by heap) picks what Sample (a full sort) picks.
func TestSampleAllowedMatchesSample(t *testing.T) {
	for seed := range 40 {
		rng := rand.New(rand.NewPCG(uint64(seed), 5))
		logits := make([]float32, 300)
		for i := range logits {
			logits[i] = float32(rng.IntN(40)) / 4 // many ties
		}
		all := newBitset(len(logits))
		for i := range logits {
			all.set(i)
		}
		for _, p := range []SamplingParams{Greedy(), DefaultSampling(), {Temperature: 0.7, TopK: 1, TopP: 1, RepetitionPenalty: 1},
			{Temperature: 1.3, TopP: 0.5, RepetitionPenalty: 1.1}, {Temperature: 1, TopK: 300, TopP: 1, RepetitionPenalty: 1}} {
			p.Seed = uint64(seed)
			context := []int{3, 5, 3, 200}
			want := NewSampler(p).Sample(slices.Clone(logits), context)
			got := NewSampler(p).SampleAllowed(slices.Clone(logits), context, all)
			require.Equal(t, want, got, "seed %d, %+v", seed, p)
		}
	}
}
