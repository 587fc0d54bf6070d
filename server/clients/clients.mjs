// Drives serve -api with the official openai and ollama npm clients (run by server/clients_test.go, which
// validates what this prints). ILMWEB_URL is the server; ILMWEB_TOOLS and ILMWEB_SCHEMA are JSON.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';

const base = process.env.ILMWEB_URL;
const tools = JSON.parse(process.env.ILMWEB_TOOLS);
const schema = JSON.parse(process.env.ILMWEB_SCHEMA);
const model = 'internlm3-8b-instruct';
const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Weather in Paris?' }];
const out = { schemaAnswers: [], jsonAnswers: [] };

const openai = new OpenAI({ baseURL: base + '/v1', apiKey: 'none', maxRetries: 0 });

// A forced call, then its result sent back for the next turn.
const called = await openai.chat.completions.create({ model, messages, tools, tool_choice: 'required', seed: 1, max_tokens: 80 });
assert.equal(called.choices[0].finish_reason, 'tool_calls');
assert.equal(called.choices[0].message.role, 'assistant');
out.calls = called.choices[0].message.tool_calls;
const reply = await openai.chat.completions.create({
  model, tools, max_tokens: 4, seed: 2,
  messages: [...messages, called.choices[0].message, { role: 'tool', tool_call_id: out.calls[0].id, content: '{"temp": 21}' }],
});
assert.equal(typeof reply.choices[0].message.content, 'string');

// A named call, streamed: the deltas' tool_calls put together as clients do.
const stream = await openai.chat.completions.create({
  model, messages, tools, tool_choice: { type: 'function', function: { name: 'add' } }, seed: 3, max_tokens: 80, stream: true,
});
const streamed = [];
let finish;
for await (const chunk of stream) {
  for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) {
    const acc = (streamed[tc.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
    acc.id ||= tc.id ?? '';
    acc.function.name += tc.function?.name ?? '';
    acc.function.arguments += tc.function?.arguments ?? '';
  }
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
assert.equal(finish, 'tool_calls');
out.streamedCalls = streamed;

// Structured output, whole and streamed.
for (const seed of [4, 5]) {
  const format = { type: 'json_schema', json_schema: { name: 'answer', strict: true, schema } };
  const whole = await openai.chat.completions.create({ model, messages, response_format: format, seed, max_tokens: 60 });
  out.schemaAnswers.push(whole.choices[0].message.content);
  let text = '';
  for await (const chunk of await openai.chat.completions.create({ model, messages, response_format: format, seed, max_tokens: 60, stream: true })) {
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  out.schemaAnswers.push(text);
}

// Ollama: chat streamed and not, format as a schema and "json", generate, tags, show, version.
const ollama = new Ollama({ host: base });
let chatText = '';
let last;
for await (const part of await ollama.chat({ model, messages, stream: true, options: { seed: 1, num_predict: 8, temperature: 0.7, top_k: 20 } })) {
  chatText += part.message.content;
  last = part;
}
assert.equal(last.done, true);
assert.equal(last.eval_count, 8);
out.ollamaStreamed = chatText;
const whole = await ollama.chat({ model, messages, stream: false, options: { seed: 1, num_predict: 8, temperature: 0.7, top_k: 20 } });
assert.equal(whole.message.content, chatText, 'the same seed gives the same answer streamed or not');
for (const seed of [6, 7]) {
  const r = await ollama.chat({ model, messages, stream: false, format: schema, options: { seed, num_predict: 60 } });
  out.schemaAnswers.push(r.message.content);
  const j = await ollama.chat({ model, messages, stream: false, format: 'json', options: { seed, num_predict: 60 } });
  out.jsonAnswers.push(j.message.content);
}
const gen = await ollama.generate({ model, prompt: 'Hello', stream: false, options: { num_predict: 3 } });
assert.equal(gen.done, true);
assert.equal(typeof gen.response, 'string');
const tags = await ollama.list();
assert.equal(tags.models[0].name, model);
const show = await ollama.show({ model });
assert.ok(show.capabilities.includes('tools'));
const version = await ollama.version();
assert.match(version.version, /^\d+\.\d+\.\d+$/);
await assert.rejects(ollama.chat({ model: 'llama3', messages }), /not found/);

console.log(JSON.stringify(out));
