package model

import (
	_ "embed"
	"fmt"
	"slices"
)

// The official system prompts InternLM3 was tuned with (copies of ../shared/model/).
var (
	//go:embed prompts/system-prompt.txt
	SystemPrompt string
	//go:embed prompts/thinking-system-prompt.txt
	ThinkingSystemPrompt string
)

// Message is one chat turn. Role is "system", "user" or "assistant".
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Tokens, when set on an assistant message, are the ids the model generated for Content: the turn is
	// rendered with them rather than by re-tokenizing Content, so the KV cache of the conversation so far
	// still matches and the next turn prefills only its new tokens.
	Tokens []int `json:"-"`
	// Plugin marks a turn addressed to or from the tools: its heading is "{role} name=<|plugin|>" (the
	// system turn listing the tools, the environment turn holding a tool's result).
	Plugin bool `json:"-"`
	// Calls are the tool calls of an assistant turn, each the JSON {"name": ..., "parameters": ...},
	// rendered after Content as <|action_start|><|plugin|>\n{call}<|action_end|>.
	Calls []string `json:"-"`
}

// ChatFormat renders InternLM3's chat template straight to token ids:
//
//	<s><|im_start|>{role}\n{content}<|im_end|>\n … <|im_start|>assistant\n
//
// Markers are inserted by id; role and content go through the tokenizer as plain text, so a user typing
// "<|im_end|>" gets the characters, never the marker.
type ChatFormat struct {
	tok              *Tokenizer
	imStart, imEnd   int
	newline          []int
	assistantHeading []int
	tools            *ToolTokens // nil when the tokenizer lacks them
}

// ToolTokens are the special tokens of InternLM3's tool format, read from the tokenizer.
type ToolTokens struct {
	Plugin, ActionStart, ActionEnd, Interpreter int
}

// NewChatFormat looks up the chat markers in tok.
func NewChatFormat(tok *Tokenizer) (*ChatFormat, error) {
	start, ok := tok.TokenID("<|im_start|>")
	if !ok {
		return nil, fmt.Errorf("tokenizer: no <|im_start|> token")
	}
	end, ok := tok.TokenID("<|im_end|>")
	if !ok {
		return nil, fmt.Errorf("tokenizer: no <|im_end|> token")
	}
	f := &ChatFormat{tok: tok, imStart: start, imEnd: end,
		newline: tok.Encode("\n"), assistantHeading: tok.Encode("assistant\n")}
	var tt ToolTokens
	ok = true
	for _, m := range []struct {
		piece string
		id    *int
	}{{"<|plugin|>", &tt.Plugin}, {"<|action_start|>", &tt.ActionStart}, {"<|action_end|>", &tt.ActionEnd}, {"<|interpreter|>", &tt.Interpreter}} {
		id, found := tok.TokenID(m.piece)
		ok = ok && found && tok.IsSpecial(id)
		*m.id = id
	}
	if ok {
		f.tools = &tt
	}
	return f, nil
}

// Tools returns the tool-format tokens, or nil when the tokenizer lacks them (then the model cannot call
// tools).
func (f *ChatFormat) Tools() *ToolTokens { return f.tools }

// EndOfTurn is the id of <|im_end|>.
func (f *ChatFormat) EndOfTurn() int { return f.imEnd }

// Encode renders messages; with generationPrompt it ends with the assistant's heading, ready to generate.
func (f *ChatFormat) Encode(messages []Message, generationPrompt bool) []int {
	var ids []int
	if f.tok.AddBOS() {
		ids = append(ids, f.tok.BOS())
	}
	for _, m := range messages {
		ids = append(ids, f.imStart)
		if m.Role == "assistant" && m.Tokens != nil {
			ids = append(ids, f.assistantHeading...)
			ids = append(ids, m.Tokens...)
		} else if m.Plugin && f.tools != nil {
			ids = append(ids, f.tok.Encode(m.Role+" name=")...)
			ids = append(ids, f.tools.Plugin)
			ids = append(ids, f.tok.Encode("\n"+m.Content)...)
		} else {
			ids = append(ids, f.tok.Encode(m.Role+"\n"+m.Content)...)
		}
		for _, call := range m.Calls {
			if f.tools == nil {
				break
			}
			ids = append(ids, f.tools.ActionStart, f.tools.Plugin)
			ids = append(ids, f.tok.Encode("\n"+call)...)
			ids = append(ids, f.tools.ActionEnd)
		}
		ids = append(ids, f.imEnd)
		ids = append(ids, f.newline...)
	}
	if generationPrompt {
		ids = append(ids, f.imStart)
		ids = append(ids, f.assistantHeading...)
	}
	return ids
}

// WithSystemPrompt returns messages with the official system prompt (normal or deep-thinking) in front,
// unless they already start with a system message.
func WithSystemPrompt(messages []Message, thinking bool) []Message {
	if len(messages) > 0 && messages[0].Role == "system" {
		return messages
	}
	prompt := SystemPrompt
	if thinking {
		prompt = ThinkingSystemPrompt
	}
	return append([]Message{{Role: "system", Content: prompt}}, messages...)
}

// Fit renders messages with the generation prompt so that at least reserve tokens of room remain within
// limit, dropping the oldest turns (never the system prompt, never the last message) until they fit.
// It returns the messages kept and their ids.
func (f *ChatFormat) Fit(messages []Message, limit, reserve int) ([]Message, []int, error) {
	keepFrom := 0
	if len(messages) > 0 && messages[0].Role == "system" {
		keepFrom = 1
	}
	for {
		ids := f.Encode(messages, true)
		if len(ids)+reserve <= limit {
			return messages, ids, nil
		}
		if len(messages)-keepFrom <= 1 {
			return nil, nil, fmt.Errorf("the prompt needs %d tokens plus %d to answer, over the context length %d", len(ids), reserve, limit)
		}
		// Drop the oldest message, and any assistant replies left leading, so the kept part opens with a user turn.
		drop := keepFrom + 1
		for drop < len(messages)-1 && messages[drop].Role != "user" {
			drop++
		}
		messages = append(messages[:keepFrom:keepFrom], messages[drop:]...)
	}
}

// Replies remembers the ids of recent answers by their text, for clients that send the conversation back
// as text (the web page, the OpenAI API): Attach puts the ids back on the assistant messages.
type Replies struct {
	ids   map[string][]int
	order []string
}

const maxReplies = 64

// Remember records that the model answered text with ids.
func (r *Replies) Remember(text string, ids []int) {
	if r.ids == nil {
		r.ids = map[string][]int{}
	}
	if _, ok := r.ids[text]; !ok {
		r.order = append(r.order, text)
		if len(r.order) > maxReplies {
			delete(r.ids, r.order[0])
			r.order = r.order[1:]
		}
	}
	r.ids[text] = slices.Clone(ids)
}

// Attach returns messages with Tokens set on every assistant message whose text is a remembered answer.
func (r *Replies) Attach(messages []Message) []Message {
	out := slices.Clone(messages)
	for i, m := range out {
		if ids, ok := r.ids[m.Content]; ok && m.Role == "assistant" && m.Tokens == nil {
			out[i].Tokens = ids
		}
	}
	return out
}
