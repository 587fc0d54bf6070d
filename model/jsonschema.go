package model

// JSON and JSON Schema as grammars (see grammar.go). Answers are JSON with optional whitespace between
// tokens (a space, or a newline and up to 32 spaces of indentation); objects list their properties in the
// schema's order, each required property present; a schema's enum and const values are written compactly.
// Every answer the grammar admits validates against the schema; not every valid document is admitted.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// JSONObjectGrammar admits any JSON object (OpenAI's response_format json_object).
func JSONObjectGrammar(v *Vocab) *Grammar {
	c := newCompiler()
	root := c.b.newRule()
	end := c.b.node()
	c.b.nodes[end].final = true
	c.object(&schema{}, root, end)
	g, err := c.b.finish(v, root)
	if err != nil {
		panic(err) // a fixed grammar: cannot fail
	}
	return g
}

// SchemaGrammar compiles a JSON Schema into a grammar admitting only documents that validate against it.
// It supports type, properties, required, additionalProperties, enum, const, minLength, maxLength,
// minimum, maximum, items, minItems, maxItems and anyOf (plus annotations such as title and description);
// any other keyword is an error naming it.
func SchemaGrammar(v *Vocab, schemaJSON []byte) (*Grammar, error) {
	s, err := parseSchema(schemaJSON, "")
	if err != nil {
		return nil, err
	}
	c := newCompiler()
	root := c.b.newRule()
	end := c.b.node()
	c.b.nodes[end].final = true
	if err := c.value(s, root, end); err != nil {
		return nil, err
	}
	return c.b.finish(v, root)
}

// ToolCall is a function the model may call: its name and the JSON Schema of its parameters (nil: none).
type ToolCall struct {
	Name       string
	Parameters json.RawMessage
}

// ToolCallGrammar admits one call, in InternLM3's format, of one of tools:
//
//	<|action_start|><|plugin|>\n{"name": "NAME", "parameters": {...}}<|action_end|>
//
// where the three markers are the special tokens with ids actionStart, plugin and actionEnd.
func ToolCallGrammar(v *Vocab, tools []ToolCall, actionStart, plugin, actionEnd int) (*Grammar, error) {
	c := newCompiler()
	root := c.b.newRule()
	end := c.b.node()
	c.b.nodes[end].final = true
	head := root
	for _, id := range []int{actionStart, plugin} {
		sym, ok := v.special[id]
		if !ok {
			return nil, fmt.Errorf("token %d is not a special token", id)
		}
		next := c.b.node()
		c.b.edge(head, sym, sym, next)
		head = next
	}
	endSym, ok := v.special[actionEnd]
	if !ok {
		return nil, fmt.Errorf("token %d is not a special token", actionEnd)
	}
	head = c.b.lit(head, "\n", -1)
	for i, t := range tools {
		name, _ := json.Marshal(t.Name)
		params := &schema{types: []string{"object"}, noAdditional: true} // no parameters: {}
		if len(t.Parameters) > 0 && string(t.Parameters) != "null" {
			s, err := parseSchema(t.Parameters, "")
			if err != nil {
				return nil, fmt.Errorf("tools[%d].parameters: %w", i, err)
			}
			params = s
		}
		p := c.b.lit(head, `{"name": `+string(name)+`, "parameters": `, -1)
		q := c.b.node()
		if err := c.value(params, p, q); err != nil {
			return nil, fmt.Errorf("tools[%d].parameters: %w", i, err)
		}
		r := c.b.lit(q, "}", -1)
		c.b.edge(r, endSym, endSym, end)
	}
	return c.b.finish(v, root)
}

// schema is the parsed subset of JSON Schema.
type schema struct {
	path         string
	any          bool     // no constraint at all
	types        []string // nil: any type the other keywords allow
	props        []property
	required     []string
	additional   *schema // nil: any
	noAdditional bool    // additionalProperties: false
	enum         [][]byte
	minLen       int
	maxLen       int // -1: unbounded
	minimum      float64
	maximum      float64
	items        *schema
	minItems     int
	maxItems     int // -1: unbounded
	anyOf        []*schema
}

type property struct {
	name string
	s    *schema
}

// SchemaError is a schema this engine cannot compile; Keyword names the offending keyword.
type SchemaError struct {
	Keyword, Path, Reason string
}

func (e *SchemaError) Error() string {
	at := ""
	if e.Path != "" {
		at = " at " + e.Path
	}
	return fmt.Sprintf("JSON Schema keyword '%s'%s: %s", e.Keyword, at, e.Reason)
}

var annotations = map[string]bool{"title": true, "description": true, "default": true, "examples": true,
	"$schema": true, "$comment": true, "deprecated": true, "readOnly": true, "writeOnly": true}

func parseSchema(raw []byte, path string) (*schema, error) {
	s := &schema{path: path, maxLen: -1, maxItems: -1, minimum: math.Inf(-1), maximum: math.Inf(1)}
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case "true":
		s.any = true
		return s, nil
	case "false":
		return nil, &SchemaError{"false", path, "the schema admits no value"}
	}
	var kw map[string]json.RawMessage
	if err := json.Unmarshal(raw, &kw); err != nil {
		return nil, &SchemaError{"", path, "a schema must be an object or a boolean"}
	}
	bad := func(k, format string, args ...any) error {
		return &SchemaError{k, path, fmt.Sprintf(format, args...)}
	}
	count := func(k string) (int, error) {
		var n int
		if err := json.Unmarshal(kw[k], &n); err != nil || n < 0 {
			return 0, bad(k, "must be a non-negative integer")
		}
		return n, nil
	}
	keys := make([]string, 0, len(kw))
	for k := range kw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var err error
	for _, k := range keys {
		v := kw[k]
		switch k {
		case "type":
			var one string
			if json.Unmarshal(v, &one) == nil {
				s.types = []string{one}
			} else if json.Unmarshal(v, &s.types) != nil || len(s.types) == 0 {
				return nil, bad(k, "must be a type name or a non-empty list of them")
			}
			for _, t := range s.types {
				switch t {
				case "string", "integer", "number", "boolean", "null", "object", "array":
				default:
					return nil, bad(k, "unknown type %q", t)
				}
			}
		case "properties":
			names, err := objectKeys(v)
			if err != nil {
				return nil, bad(k, "must be an object of schemas")
			}
			var props map[string]json.RawMessage
			json.Unmarshal(v, &props)
			for _, name := range names {
				ps, err := parseSchema(props[name], path+"/properties/"+name)
				if err != nil {
					return nil, err
				}
				s.props = append(s.props, property{name, ps})
			}
		case "required":
			if json.Unmarshal(v, &s.required) != nil {
				return nil, bad(k, "must be a list of property names")
			}
		case "additionalProperties":
			if string(bytes.TrimSpace(v)) == "false" {
				s.noAdditional = true
			} else if s.additional, err = parseSchema(v, path+"/additionalProperties"); err != nil {
				return nil, err
			}
		case "enum", "const":
			var vals []json.RawMessage
			if k == "const" {
				vals = []json.RawMessage{v}
			} else if json.Unmarshal(v, &vals) != nil || len(vals) == 0 {
				return nil, bad(k, "must be a non-empty list")
			}
			for _, val := range vals {
				var buf bytes.Buffer
				if err := json.Compact(&buf, val); err != nil {
					return nil, bad(k, "not JSON: %v", err)
				}
				s.enum = append(s.enum, buf.Bytes())
			}
		case "minLength":
			if s.minLen, err = count(k); err != nil {
				return nil, err
			}
		case "maxLength":
			if s.maxLen, err = count(k); err != nil {
				return nil, err
			}
		case "minItems":
			if s.minItems, err = count(k); err != nil {
				return nil, err
			}
		case "maxItems":
			if s.maxItems, err = count(k); err != nil {
				return nil, err
			}
		case "minimum", "maximum":
			var f float64
			if json.Unmarshal(v, &f) != nil {
				return nil, bad(k, "must be a number")
			}
			if math.Abs(f) > 1<<53 {
				return nil, bad(k, "%g is beyond ±2^53", f)
			}
			if k == "minimum" {
				s.minimum = f
			} else {
				s.maximum = f
			}
		case "items":
			if s.items, err = parseSchema(v, path+"/items"); err != nil {
				return nil, err
			}
		case "anyOf":
			var alts []json.RawMessage
			if json.Unmarshal(v, &alts) != nil || len(alts) == 0 {
				return nil, bad(k, "must be a non-empty list of schemas")
			}
			for i, a := range alts {
				as, err := parseSchema(a, fmt.Sprintf("%s/anyOf/%d", path, i))
				if err != nil {
					return nil, err
				}
				s.anyOf = append(s.anyOf, as)
			}
		default:
			if !annotations[k] {
				return nil, bad(k, "not supported (supported: type, properties, required, additionalProperties, enum, const, minLength, maxLength, minimum, maximum, items, minItems, maxItems, anyOf)")
			}
		}
	}
	if s.anyOf != nil && (s.types != nil || s.props != nil || s.enum != nil || s.items != nil) {
		return nil, bad("anyOf", "cannot be combined with other constraints in the same schema; move them into each alternative")
	}
	if s.enum != nil && (s.props != nil || s.required != nil || s.additional != nil || s.noAdditional || s.items != nil ||
		s.minLen > 0 || s.maxLen >= 0 || s.minItems > 0 || s.maxItems >= 0 || !math.IsInf(s.minimum, -1) || !math.IsInf(s.maximum, 1)) {
		return nil, bad("enum", "enum and const can be combined only with type; the values themselves must satisfy the rest")
	}
	for _, r := range s.required {
		if !slices.ContainsFunc(s.props, func(p property) bool { return p.name == r }) {
			return nil, bad("required", "property %q is required but not described in 'properties'", r)
		}
	}
	if s.maxLen >= 0 && s.maxLen < s.minLen {
		return nil, bad("maxLength", "%d is less than minLength %d", s.maxLen, s.minLen)
	}
	if s.maxItems >= 0 && s.maxItems < s.minItems {
		return nil, bad("maxItems", "%d is less than minItems %d", s.maxItems, s.minItems)
	}
	if s.maximum < s.minimum {
		return nil, bad("maximum", "%g is less than minimum %g", s.maximum, s.minimum)
	}
	s.any = s.types == nil && s.props == nil && s.required == nil && s.additional == nil && !s.noAdditional &&
		s.enum == nil && s.items == nil && s.anyOf == nil && s.minLen == 0 && s.maxLen < 0 && s.minItems == 0 &&
		s.maxItems < 0 && math.IsInf(s.minimum, -1) && math.IsInf(s.maximum, 1)
	return s, nil
}

// objectKeys returns the keys of a JSON object in document order.
func objectKeys(raw []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not an object")
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, t.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// compiler turns schemas into grammar nodes: each method connects from to to through the text of one
// value.
type compiler struct {
	b         gbuilder
	valueRule int32 // start of the rule for any JSON value; -1 until needed
}

func newCompiler() *compiler { return &compiler{valueRule: -1} }

// ws is optional whitespace: nothing, a space, or a newline and up to 32 spaces.
func (c *compiler) ws(from, to int32) {
	b := &c.b
	b.eps(from, to)
	b.edge(from, ' ', ' ', to)
	n := b.node()
	b.edge(from, '\n', '\n', n)
	for range 32 {
		b.eps(n, to)
		next := b.node()
		b.edge(n, ' ', ' ', next)
		n = next
	}
	b.eps(n, to)
}

// anyValue is any JSON value, through a call of the shared value rule (JSON nests without bound).
func (c *compiler) anyValue(from, to int32) {
	b := &c.b
	if c.valueRule < 0 {
		saved := b.rule
		start := b.newRule()
		c.valueRule = start
		end := b.node()
		b.nodes[end].final = true
		for _, lit := range []string{"null", "true", "false"} {
			b.lit(start, lit, end)
		}
		c.number(start, end)
		c.str(0, -1, start, end)
		c.object(&schema{}, start, end)
		c.array(&schema{maxItems: -1}, start, end)
		b.rule = saved
	}
	ret := b.call(from, c.valueRule)
	b.eps(ret, to)
}

func (c *compiler) value(s *schema, from, to int32) error {
	switch {
	case s.any:
		c.anyValue(from, to)
		return nil
	case s.anyOf != nil:
		for _, a := range s.anyOf {
			if err := c.value(a, from, to); err != nil {
				return err
			}
		}
		return nil
	case s.enum != nil:
		n := 0
		for _, v := range s.enum {
			if s.types == nil || slices.Contains(s.types, jsonKind(v)) || (jsonKind(v) == "integer" && slices.Contains(s.types, "number")) {
				c.b.lit(from, string(v), to)
				n++
			}
		}
		if n == 0 {
			return &SchemaError{"enum", s.path, "no value has the schema's type"}
		}
		return nil
	}
	types := s.types
	if types == nil { // untyped: what the keywords present describe
		switch {
		case s.props != nil || s.required != nil || s.additional != nil || s.noAdditional:
			types = []string{"object"}
		case s.items != nil || s.minItems > 0 || s.maxItems >= 0:
			types = []string{"array"}
		case s.minLen > 0 || s.maxLen >= 0:
			types = []string{"string"}
		default:
			types = []string{"number"}
		}
	}
	for _, t := range types {
		switch t {
		case "null":
			c.b.lit(from, "null", to)
		case "boolean":
			c.b.lit(from, "true", to)
			c.b.lit(from, "false", to)
		case "string":
			c.str(s.minLen, s.maxLen, from, to)
		case "integer":
			if err := c.integer(s, from, to); err != nil {
				return err
			}
		case "number":
			if err := c.boundedNumber(s, from, to); err != nil {
				return err
			}
		case "object":
			if err := c.object(s, from, to); err != nil {
				return err
			}
		case "array":
			if err := c.array(s, from, to); err != nil {
				return err
			}
		}
	}
	return c.b.err
}

func jsonKind(v []byte) string {
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(v, ".eE") {
		return "number"
	}
	return "integer"
}

// object writes the properties of s in order (required ones always, optional ones when the model picks
// them); without properties, any keys with values of additionalProperties' schema (or any values).
func (c *compiler) object(s *schema, from, to int32) error {
	b := &c.b
	open := b.node()
	c.ws(b.lit(from, "{", -1), open)
	if s.props == nil {
		b.lit(open, "}", to)
		if s.noAdditional {
			return nil
		}
		entry, after := b.node(), b.node()
		b.eps(open, entry)
		if err := c.member(`"`, s.additional, entry, after); err != nil {
			return err
		}
		b.lit(after, "}", to)
		comma := b.node()
		c.ws(b.lit(after, ",", -1), comma)
		b.eps(comma, entry)
		return nil
	}
	req := func(i int) bool { return slices.Contains(s.required, s.props[i].name) }
	n := len(s.props)
	entry, after, comma := make([]int32, n), make([]int32, n), make([]int32, n)
	for i := range s.props {
		entry[i], after[i], comma[i] = b.node(), b.node(), b.node()
		c.ws(b.lit(after[i], ",", -1), comma[i])
	}
	// Property j may come first if all before it are optional, and right after i if all between are.
	for j := 0; j < n; j++ {
		name, _ := json.Marshal(s.props[j].name)
		if err := c.member(string(name), s.props[j].s, entry[j], after[j]); err != nil {
			return err
		}
		for i := j - 1; i >= -1; i-- {
			if i < 0 {
				b.eps(open, entry[j])
			} else {
				b.eps(comma[i], entry[j])
			}
			if i >= 0 && req(i) {
				break
			}
		}
	}
	// The object may close where no required property is left.
	if !slices.ContainsFunc(s.props, func(p property) bool { return slices.Contains(s.required, p.name) }) {
		b.lit(open, "}", to)
	}
	for i := n - 1; i >= 0; i-- {
		b.lit(after[i], "}", to)
		if req(i) {
			break
		}
	}
	return nil
}

// member is "key": value followed by optional whitespace; key is the JSON-encoded name, or `"` for any
// key. A nil schema means any value.
func (c *compiler) member(key string, s *schema, from, to int32) error {
	b := &c.b
	var k int32
	if key == `"` {
		k = b.node()
		c.str(0, -1, from, k)
	} else {
		k = b.lit(from, key, -1)
	}
	colon := b.node()
	c.ws(k, colon)
	val := b.node()
	c.ws(b.lit(colon, ":", -1), val)
	end := b.node()
	if s == nil {
		c.anyValue(val, end)
	} else if err := c.value(s, val, end); err != nil {
		return err
	}
	c.ws(end, to)
	return nil
}

func (c *compiler) array(s *schema, from, to int32) error {
	b := &c.b
	item := func(from, to int32) error {
		end := b.node()
		if s.items == nil {
			c.anyValue(from, end)
		} else if err := c.value(s.items, from, end); err != nil {
			return err
		}
		c.ws(end, to)
		return nil
	}
	cur := b.node()
	c.ws(b.lit(from, "[", -1), cur)
	if s.minItems == 0 {
		b.lit(cur, "]", to)
	}
	for count := 1; s.maxItems < 0 || count <= s.maxItems; count++ {
		after := b.node()
		if err := item(cur, after); err != nil {
			return err
		}
		if count >= s.minItems {
			b.lit(after, "]", to)
		}
		if count == s.maxItems {
			break
		}
		next := b.node()
		c.ws(b.lit(after, ",", -1), next)
		if s.maxItems < 0 && count >= s.minItems {
			return item(next, after) // any more items: loop
		}
		cur = next
		if b.err != nil {
			return b.err
		}
	}
	return b.err
}

// str is a JSON string of minLen to maxLen (-1: any number of) characters, counted as code points.
func (c *compiler) str(minLen, maxLen int, from, to int32) {
	b := &c.b
	last := maxLen
	if maxLen < 0 {
		last = minLen
	}
	count := make([]int32, last+1) // count[k]: k characters written
	for k := range count {
		count[k] = b.node()
	}
	b.lit(from, `"`, count[0])
	for k, n := range count {
		if k >= minLen {
			b.lit(n, `"`, to)
		}
		switch {
		case k < last:
			c.char(n, count[k+1])
		case maxLen < 0:
			c.char(n, n)
		}
		if b.err != nil {
			return
		}
	}
}

// char is one character inside a JSON string: unescaped (valid UTF-8, no control character, quote or
// backslash) or an escape; \u escapes of surrogates are left out so that every escape is one code point.
func (c *compiler) char(from, to int32) {
	b := &c.b
	b.edge(from, 0x20, 0x21, to)
	b.edge(from, 0x23, 0x5b, to)
	b.edge(from, 0x5d, 0x7f, to)
	// UTF-8: the lead byte decides the ranges of what follows (RFC 3629).
	tail1, tail2, tail3 := b.node(), b.node(), b.node() // one, two, three continuation bytes left
	b.edge(tail1, 0x80, 0xbf, to)
	b.edge(tail2, 0x80, 0xbf, tail1)
	b.edge(tail3, 0x80, 0xbf, tail2)
	b.edge(from, 0xc2, 0xdf, tail1)
	b.edge(from, 0xe1, 0xec, tail2)
	b.edge(from, 0xee, 0xef, tail2)
	b.edge(from, 0xf1, 0xf3, tail3)
	for _, r := range []struct {
		lead, lo, hi uint16
		then         int32
	}{{0xe0, 0xa0, 0xbf, tail1}, {0xed, 0x80, 0x9f, tail1}, {0xf0, 0x90, 0xbf, tail2}, {0xf4, 0x80, 0x8f, tail2}} {
		n := b.node()
		b.edge(from, r.lead, r.lead, n)
		b.edge(n, r.lo, r.hi, r.then)
	}
	esc := b.node()
	b.edge(from, '\\', '\\', esc)
	for _, e := range `"\/bfnrt` {
		b.edge(esc, uint16(e), uint16(e), to)
	}
	u := b.node()
	b.edge(esc, 'u', 'u', u)
	hex := func(from, to int32) {
		b.edge(from, '0', '9', to)
		b.edge(from, 'a', 'f', to)
		b.edge(from, 'A', 'F', to)
	}
	h2, h3, h4 := b.node(), b.node(), b.node()
	b.edge(u, '0', '9', h2)
	b.edge(u, 'a', 'c', h2)
	b.edge(u, 'A', 'C', h2)
	b.edge(u, 'e', 'f', h2)
	b.edge(u, 'E', 'F', h2)
	d := b.node()
	b.edge(u, 'd', 'd', d)
	b.edge(u, 'D', 'D', d)
	b.edge(d, '0', '7', h3)
	hex(h2, h3)
	hex(h3, h4)
	hex(h4, to)
}

// number is any JSON number.
func (c *compiler) number(from, to int32) {
	b := &c.b
	intEnd := b.node()
	c.integerPart(from, intEnd)
	x := b.node()
	b.eps(intEnd, x)
	f1, f2 := b.node(), b.node()
	b.edge(intEnd, '.', '.', f1)
	b.edge(f1, '0', '9', f2)
	b.edge(f2, '0', '9', f2)
	b.eps(f2, x)
	b.eps(x, to)
	e1, e2, e3 := b.node(), b.node(), b.node()
	b.edge(x, 'e', 'e', e1)
	b.edge(x, 'E', 'E', e1)
	b.edge(e1, '+', '+', e2)
	b.edge(e1, '-', '-', e2)
	b.eps(e1, e2)
	b.edge(e2, '0', '9', e3)
	b.edge(e3, '0', '9', e3)
	b.eps(e3, to)
}

// integerPart is -?(0|[1-9][0-9]*).
func (c *compiler) integerPart(from, to int32) {
	b := &c.b
	s := b.node()
	b.eps(from, s)
	b.edge(from, '-', '-', s)
	b.edge(s, '0', '0', to)
	d := b.node()
	b.edge(s, '1', '9', d)
	b.edge(d, '0', '9', d)
	b.eps(d, to)
}

func (c *compiler) integer(s *schema, from, to int32) error {
	lo, hi := math.Ceil(s.minimum), math.Floor(s.maximum)
	if lo > hi {
		return &SchemaError{"minimum", s.path, fmt.Sprintf("no integer lies between %g and %g", s.minimum, s.maximum)}
	}
	c.intRange(lo, hi, from, to)
	return nil
}

func (c *compiler) boundedNumber(s *schema, from, to int32) error {
	lo, hi := s.minimum, s.maximum
	if math.IsInf(lo, -1) && math.IsInf(hi, 1) {
		c.number(from, to)
		return nil
	}
	// Bounded: an integer part in range, and a fraction only where every fraction stays in range (no
	// exponent).
	ilo, ihi := math.Ceil(lo), math.Floor(hi)
	if ilo > ihi {
		return &SchemaError{"minimum", s.path, fmt.Sprintf("between %g and %g this engine can only write integers, and there are none", lo, hi)}
	}
	b := &c.b
	c.intRange(ilo, ihi, from, to)
	frac := b.node()
	f := b.node()
	b.edge(frac, '.', '.', f)
	b.edge(f, '0', '9', f)
	b.eps(f, to)
	// k.ddd with k ≥ 0 lies in [k, k+1): k from max(⌈lo⌉, 0) to ⌊hi⌋-1.
	if a, z := math.Max(ilo, 0), math.Floor(hi-1); a <= z {
		c.uintRangeTo(uint64(a), z, from, frac)
	}
	// -m.ddd with m ≥ 1 lies in (-(m+1), -m]: m from max(⌈-hi⌉, 1) to ⌊-lo⌋-1.
	if a, z := math.Max(math.Ceil(-hi), 1), math.Floor(-lo-1); a <= z {
		m := b.lit(from, "-", -1)
		c.uintRangeTo(uint64(a), z, m, frac)
	}
	return nil
}

// intRange is the integers in [lo, hi] (either may be infinite), written without leading zeros.
func (c *compiler) intRange(lo, hi float64, from, to int32) {
	if hi >= 0 {
		c.uintRangeTo(uint64(math.Max(lo, 0)), hi, from, to)
	}
	if lo < 0 {
		// -m for m in [max(-hi, 1), -lo].
		m := c.b.lit(from, "-", -1)
		c.uintRangeTo(uint64(math.Max(-hi, 1)), -lo, m, to)
	}
}

// uintRangeTo is the decimal numbers in [a, z] (z may be +Inf) from from to to.
func (c *compiler) uintRangeTo(a uint64, z float64, from, to int32) {
	b := &c.b
	if math.IsInf(z, 1) {
		d := len(strconv.FormatUint(a, 10))
		c.digitRange(strconv.FormatUint(a, 10), strings.Repeat("9", d), from, to)
		// Any number with more digits than a.
		n := b.node()
		b.edge(from, '1', '9', n)
		for range d - 1 {
			next := b.node()
			b.edge(n, '0', '9', next)
			n = next
		}
		m := b.node()
		b.edge(n, '0', '9', m)
		b.edge(m, '0', '9', m)
		b.eps(m, to)
		return
	}
	zu := uint64(z)
	for d := len(strconv.FormatUint(a, 10)); d <= len(strconv.FormatUint(zu, 10)); d++ {
		lo, hi := uint64(0), uint64(math.Pow10(d))-1
		if d > 1 {
			lo = uint64(math.Pow10(d - 1))
		}
		lo, hi = max(lo, a), min(hi, zu)
		if lo <= hi {
			c.digitRange(strconv.FormatUint(lo, 10), strconv.FormatUint(hi, 10), from, to)
		}
	}
}

// digitRange is the digit strings of one length between lo and hi (inclusive, lo ≤ hi).
func (c *compiler) digitRange(lo, hi string, from, to int32) {
	b := &c.b
	if len(lo) == 1 {
		b.edge(from, uint16(lo[0]), uint16(hi[0]), to)
		return
	}
	rest := len(lo) - 1
	if strings.Trim(lo[1:], "0") == "" && strings.Trim(hi[1:], "9") == "" {
		n := b.node()
		b.edge(from, uint16(lo[0]), uint16(hi[0]), n)
		c.digitRange(strings.Repeat("0", rest), strings.Repeat("9", rest), n, to)
		return
	}
	if lo[0] == hi[0] {
		n := b.node()
		b.edge(from, uint16(lo[0]), uint16(lo[0]), n)
		c.digitRange(lo[1:], hi[1:], n, to)
		return
	}
	n := b.node()
	b.edge(from, uint16(lo[0]), uint16(lo[0]), n)
	c.digitRange(lo[1:], strings.Repeat("9", rest), n, to)
	if lo[0]+1 <= hi[0]-1 {
		m := b.node()
		b.edge(from, uint16(lo[0]+1), uint16(hi[0]-1), m)
		c.digitRange(strings.Repeat("0", rest), strings.Repeat("9", rest), m, to)
	}
	h := b.node()
	b.edge(from, uint16(hi[0]), uint16(hi[0]), h)
	c.digitRange(strings.Repeat("0", rest), hi[1:], h, to)
}
