// Package strictjson rejects the JSON that encoding/json reads loosely: an object with a repeated key
// (encoding/json keeps the last one) and a key that names a struct field only when case is ignored
// (encoding/json reads "MAX_TOKENS" as max_tokens). Decoding stays encoding/json's; Check runs first.
//
// Written here rather than decoding with github.com/go-json-experiment/json, which rejects repeated keys
// but reads a case-folded key as an unknown field and drops it silently, where a caller should be told.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// MaxDepth is how deeply objects and arrays may nest.
const MaxDepth = 64

// KeyError is a repeated or case-folded key. Path is where the object is, as a JSON path below the
// document ("" for the top, "messages[0]"); Field, for a case-folded key, the field's real name.
type KeyError struct {
	Doc, Path, Key, Field string
}

func (e *KeyError) Error() string {
	where := join(e.Doc, e.Path)
	if e.Field == "" {
		return fmt.Sprintf("duplicate key %q in %s", e.Key, where)
	}
	return fmt.Sprintf("key %q in %s: keys are case-sensitive, the field is %q", e.Key, where, e.Field)
}

// Param is the key as a path below the document ("messages[0].role").
func (e *KeyError) Param() string { return join(e.Path, e.Key) }

// Check walks data, one JSON value, as it would be decoded into a value of type t; doc names the
// document in errors. Objects decoded into a struct are checked for repeated and case-folded keys, other
// objects (maps, json.RawMessage, any) for repeated keys. Syntax errors are reported too; whatever
// follows the first value is left to the decoder.
func Check(doc string, data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(t reflect.Type, path string, depth int) error
	walk = func(t reflect.Type, path string, depth int) error {
		if depth > MaxDepth {
			return fmt.Errorf("invalid %s JSON: nested deeper than %d levels at %s", doc, MaxDepth, join(doc, path))
		}
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		tok, err := dec.Token()
		if err != nil {
			return syntax(doc, err)
		}
		switch tok {
		case json.Delim('{'):
			fields := fieldsOf(t)
			seen := map[string]bool{}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return syntax(doc, err)
				}
				key, _ := tok.(string)
				if seen[key] {
					return &KeyError{Doc: doc, Path: path, Key: key}
				}
				seen[key] = true
				var child reflect.Type
				switch {
				case fields != nil:
					var ok bool
					if child, ok = fields[key]; !ok {
						for name := range fields {
							if strings.EqualFold(name, key) {
								return &KeyError{Doc: doc, Path: path, Key: key, Field: name}
							}
						}
					}
				case t != nil && t.Kind() == reflect.Map:
					child = t.Elem()
				}
				if err := walk(child, join(path, key), depth+1); err != nil {
					return err
				}
			}
		case json.Delim('['):
			var elem reflect.Type
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
				elem = t.Elem()
			}
			for i := 0; dec.More(); i++ {
				if err := walk(elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
					return err
				}
			}
		default:
			return nil
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return syntax(doc, err)
		}
		return nil
	}
	return walk(t, "", 0)
}

// fieldsOf maps the JSON names of a struct's fields to their types; nil when t is not a struct.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// join appends a key or an [index] path to path.
func join(path, key string) string {
	if path == "" || key == "" || strings.HasPrefix(key, "[") {
		return path + key
	}
	return path + "." + key
}

func syntax(doc string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("invalid %s JSON: unexpected end of JSON", doc)
	}
	return fmt.Errorf("invalid %s JSON: %w", doc, err)
}
