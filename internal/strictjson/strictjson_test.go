package strictjson

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type inner struct {
	Name string `json:"name"`
}

type doc struct {
	Max   int              `json:"max_tokens"`
	Items []inner          `json:"items"`
	Opt   *inner           `json:"opt"`
	Map   map[string]inner `json:"map"`
	Raw   json.RawMessage  `json:"raw"`
	Any   any              `json:"any"`
	Plain struct{ Go int } // no tag: the Go name
	Skip  int              `json:"-"`
	Extra map[string]any   `json:"extra"`
}

func TestCheck(t *testing.T) {
	typ := reflect.TypeFor[doc]()
	for _, c := range []struct{ json, err, param string }{
		{`{"max_tokens": 1, "items": [{"name": "a"}], "opt": {"name": "b"}, "unknown": {"X": 1}, "Skip": 1}`, "", ""},
		{`{"map": {"A": {"name": "x"}, "a": {"name": "y"}}, "raw": {"Name": 1}, "any": {"NAME": 1}}`, "", ""}, // map keys and raw values are not fields
		{`{"max_tokens": 1, "max_tokens": 2}`, `duplicate key "max_tokens" in req`, "max_tokens"},
		{`{"raw": {"a": 1, "a": 2}}`, `duplicate key "a" in req.raw`, "raw.a"},
		{`{"items": [{}, {"name": "a", "name": "b"}]}`, `duplicate key "name" in req.items[1]`, "items[1].name"},
		{`{"MAX_TOKENS": 1}`, `key "MAX_TOKENS" in req: keys are case-sensitive, the field is "max_tokens"`, "MAX_TOKENS"},
		{`{"opt": {"Name": "b"}}`, `key "Name" in req.opt: keys are case-sensitive, the field is "name"`, "opt.Name"},
		{`{"map": {"k": {"NAME": "x"}}}`, `key "NAME" in req.map.k`, "map.k.NAME"},
		{`{"Plain": {"go": 1}}`, `the field is "Go"`, "Plain.go"},
		{`{"max_tokens": `, "invalid req JSON: unexpected end of JSON", ""},
		{`{"any": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "nested deeper than 64 levels", ""},
	} {
		err := Check("req", []byte(c.json), typ)
		if c.err == "" {
			require.NoError(t, err, c.json)
			continue
		}
		require.ErrorContains(t, err, c.err, c.json)
		if c.param != "" {
			var ke *KeyError
			require.ErrorAs(t, err, &ke)
			require.Equal(t, c.param, ke.Param())
		}
	}
}
