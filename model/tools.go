package model

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Function is a tool the model may call, as OpenAI's "function" object describes it.
type Function struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// ToolsMessage is the system turn that lists the functions (LMDeploy's internlm3 template puts it right
// after the system prompt).
func ToolsMessage(functions []Function) Message {
	list, _ := json.Marshal(functions)
	return Message{Role: "system", Plugin: true, Content: string(list)}
}

// CallText is a call as the model writes one (and ToolCallGrammar admits): arguments is a JSON object.
func CallText(name string, arguments json.RawMessage) string {
	n, _ := json.Marshal(name)
	return `{"name": ` + string(n) + `, "parameters": ` + string(arguments) + `}`
}

// ParseCall reads what the model wrote after <|action_start|><|plugin|>: a newline and the call's JSON. It
// returns the function's name and its arguments as compact JSON; ok is false when it is not a well-formed
// call.
func ParseCall(text string) (name string, arguments json.RawMessage, ok bool) {
	body, found := strings.CutPrefix(text, "\n")
	if !found {
		return "", nil, false
	}
	var call struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	}
	if json.Unmarshal([]byte(body), &call) != nil || call.Name == "" {
		return "", nil, false
	}
	if len(call.Parameters) == 0 || string(call.Parameters) == "null" {
		call.Parameters = json.RawMessage("{}")
	}
	var buf bytes.Buffer
	if json.Compact(&buf, call.Parameters) != nil {
		return "", nil, false
	}
	return call.Name, buf.Bytes(), true
}
