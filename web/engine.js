// ilmweb's JS API: InternLM3 running on the user's GPU, with an OpenAI-style interface.
//
//   import { createEngine } from './engine.js';
//   const engine = await createEngine({ model: '/model/', onProgress: (p) => console.log(p.phase, p.loaded, p.total) });
//   for await (const chunk of engine.chat.completions.create({ messages, stream: true, temperature: 0.7 })) {
//     out.textContent += chunk.choices[0]?.delta?.content ?? '';
//   }
//   await engine.reload({ contextLength: 8192 }); // the same model with other options, in the same worker
//   engine.unload();
//
// The engine runs in a Web Worker (worker.js); this module is the page's side of it. The chat page
// (app.js) uses exactly this API. Failures are EngineErrors whose .type says what happened:
//   no-webgpu, limits, too-large, out-of-memory, device-lost, internal   (the engine; limits and too-large
//                                                                  come from the manifest, before any download)
//   invalid-request                                                 (options or chat parameters the engine refuses)
//   download-failed, hash-mismatch, quota-exceeded, bad-manifest    (the model download)
//   unloaded                                                        (engine.unload() was called)

export class EngineError extends Error {
  constructor(type, message) {
    super(message);
    this.name = 'EngineError';
    this.type = type;
  }
}

// createEngine starts a worker, downloads (or finds in storage) the model at `model` (the directory URL
// holding manifest.json) and loads it. onProgress receives {phase: "download"|"verify"|"prepare"|"upload",
// loaded, total, bytesPerSecond, etaSeconds, shard, shardsDone, shardsTotal, note} ("prepare": the engine
// sets up the device and allocates its memory before the first shard goes up; modelBytes is the weights'). backend "cpu" runs the
// engine's slow CPU path in wasm (for debugging and for browsers without WebGPU; a model it cannot hold in
// wasm32's 4 GiB fails with "too-large" before anything is downloaded). prefillChunk is how many prompt
// tokens run per step of a prefill: the grain of create's onPrefill and of stopping a long prompt.
// kernels {matvec, attention, matmul} forces WebGPU kernel variants (for tests and benchmarks: the
// engine measures the variants on this GPU at the first load and keeps the fastest; names it does not
// know or this GPU cannot run fail with "invalid-request"); tuneBudgetMs makes it measure again, within
// that many milliseconds. A chat's usage reports the choice (kernels) and what each candidate took (tune).
export async function createEngine({
  model,
  onProgress,
  contextLength = 4096,
  backend = 'webgpu',
  prefillChunk = 32,
  kernels,
  tuneBudgetMs,
  workerUrl = new URL('./worker.js', import.meta.url),
} = {}) {
  if (!model) throw new EngineError('internal', 'createEngine needs {model: URL of the model directory}');
  // Ask the browser not to evict a multi-gigabyte download under storage pressure. Only a page can ask
  // (the worker cannot); a refusal is fine, the model then just may have to be fetched again some day.
  navigator.storage?.persist?.().catch(() => {});
  const engine = new Engine(workerUrl);
  try {
    await engine._load({
      modelUrl: new URL(model, location.href).href,
      contextLength,
      backend,
      prefillChunk,
      kernels,
      tuneBudgetMs,
    }, onProgress);
  } catch (err) {
    engine.unload();
    throw err;
  }
  return engine;
}

let chatCounter = 0;

class Engine {
  // {adapter, backend, maxContext, vocabSize, model, systemPrompt, thinkingSystemPrompt, timings}; timings:
  // where the load's seconds went {engine, check, download, prepare, upload, readAndVerify} (worker.js)
  info;
  chat = { completions: { create: (params) => this.#create(params) } };

  #worker;
  #pending = new Map(); // request id → {resolve, reject, onEvent}
  #nextId = 1;
  #turn = Promise.resolve(); // chats run one after another: the engine holds one conversation
  #gone; // the error every request fails with once the worker is gone

  constructor(workerUrl) {
    this.#worker = new Worker(workerUrl, { type: 'module' });
    this.#worker.onmessage = ({ data: { kind, id, payload } }) => {
      const req = this.#pending.get(id);
      if (!req) return;
      if (kind === 'error') {
        this.#pending.delete(id);
        req.reject(new EngineError(payload.type, payload.message));
      } else if (kind === 'loaded' || kind === 'done') {
        this.#pending.delete(id);
        req.resolve(payload);
      } else {
        req.onEvent?.(kind, payload);
      }
    };
    // A worker that fails to start (a missing file, a syntax error) never answers: fail what waits on it.
    this.#worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.#failAll(new EngineError('internal', `The engine worker failed: ${ev.message || 'it could not start'}`));
    };
  }

  _request(kind, payload, onEvent) {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onEvent });
      this.#worker.postMessage({ kind, id, payload });
    });
  }

  #loaded; // the load request's options, for reload

  async _load(options, onProgress) {
    this.#loaded = options;
    this.info = await this._request('load', options, (kind, payload) => kind === 'progress' && onProgress?.(payload));
  }

  // reload loads the model again with some of createEngine's options changed ({contextLength, backend,
  // prefillChunk, kernels, tuneBudgetMs}, and onProgress), in the same worker: the engine, its GPU device
  // and compiled kernels stay, the model is read from storage, the old copy's GPU memory is freed first.
  // It waits for a running answer to end (stop it with resetChat). If it fails, the engine holds no model
  // until a reload succeeds.
  async reload({ onProgress, ...options } = {}) {
    const allowed = ['contextLength', 'backend', 'prefillChunk', 'kernels', 'tuneBudgetMs'];
    const unknown = Object.keys(options).filter((k) => !allowed.includes(k));
    if (unknown.length) throw new EngineError('invalid-request', `reload: unknown option ${unknown[0]} (it takes ${allowed.join(', ')})`);
    const previous = this.#turn;
    let release;
    this.#turn = new Promise((r) => (release = r));
    try {
      await previous;
      await this._load({ ...this.#loaded, ...options }, onProgress);
    } finally {
      release();
    }
  }

  // resetChat starts a new conversation: it stops an answer in progress. The next chat's messages decide
  // what the engine keeps: it reuses its cache for whatever prefix they share with the last conversation.
  resetChat() {
    return this._request('reset', {});
  }

  // unload stops the worker and frees the GPU memory it held; pending requests fail with type "unloaded".
  unload() {
    this.#worker.terminate();
    this.#failAll(new EngineError('unloaded', 'the engine was unloaded'));
  }

  // #failAll fails every pending request, and every later one: the worker is gone.
  #failAll(err) {
    this.#gone = err;
    for (const req of this.#pending.values()) req.reject(err);
    this.#pending.clear();
  }

  // #create is chat.completions.create: with stream: true it returns an async iterable of
  // chat.completion.chunk objects (also awaitable, as OpenAI's SDK returns it), else a promise of a
  // chat.completion. response_format ({type: 'json_object'} or {type: 'json_schema', json_schema: {schema}})
  // constrains the answer to JSON (model/grammar.go); tools and tool_choice work as in OpenAI's API (a call
  // comes as delta.tool_calls, finish_reason 'tool_calls'; its result goes back as a role 'tool' message). Extensions beyond OpenAI's parameters: top_k,
  // repetition_penalty, seed, think
  // (deep-thinking mode: the thinking system prompt and 8192 new tokens unless max_tokens says otherwise),
  // onPrefill({done, total, tokensPerSecond}) (called as the prompt is read, a chunk at a time, before the
  // first token: done of total prompt tokens to compute; the rest came from the cache).
  // An aborted signal ends the answer with finish_reason "abort", keeping what was generated.
  #create(params) {
    const chunks = this.#stream(params);
    if (params.stream) {
      const iterable = { [Symbol.asyncIterator]: () => chunks };
      // `for await (… of create(…))` and `for await (… of await create(…))` both work: await resolves
      // to the plain iterable (which has no then, so it does not recurse).
      return { ...iterable, then: (onOk, onErr) => Promise.resolve(iterable).then(onOk, onErr) };
    }
    return collect(chunks);
  }

  async *#stream(params) {
    const request = chatRequest(params);
    const id = `chatcmpl-${Date.now().toString(36)}-${++chatCounter}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.info?.model ?? 'ilmweb';
    const chunk = (delta, finish_reason = null, extra = {}) => ({
      id, object: 'chat.completion.chunk', created, model,
      choices: [{ index: 0, delta, finish_reason }], ...extra,
    });

    // Wait for the previous chat to finish; ours becomes the one the next waits for.
    const previous = this.#turn;
    let release;
    this.#turn = new Promise((r) => (release = r));
    await previous;

    const texts = [];
    let wake;
    let settled = false;
    let result;
    let failure;
    const abort = () => !settled && this._request('abort', {}).catch(() => {});
    try {
      if (params.signal?.aborted) {
        yield chunk({ role: 'assistant', content: '' });
        yield chunk({}, 'abort', { usage: usage({}) });
        return;
      }
      params.signal?.addEventListener('abort', abort, { once: true });
      this._request('chat', request, (kind, p) => {
        if (kind === 'token') {
          texts.push(p.text);
          wake?.();
        } else if (kind === 'prefill') {
          params.onPrefill?.(p);
        }
      }).then((r) => (result = r), (e) => (failure = e)).finally(() => {
        settled = true;
        wake?.();
      });
      yield chunk({ role: 'assistant', content: '' });
      for (;;) {
        while (texts.length > 0) yield chunk({ content: texts.shift() });
        if (settled) break;
        await new Promise((r) => (wake = r));
        wake = undefined;
      }
      if (failure) throw failure;
      if (result.tool_calls) {
        yield chunk({ tool_calls: result.tool_calls.map((call, index) => ({ index, ...call })) });
      }
      yield chunk({}, result.finish_reason, { usage: usage(result) });
    } finally {
      // A consumer that stops iterating early (break, return, a throw) also stops the engine.
      abort();
      params.signal?.removeEventListener('abort', abort);
      release();
    }
  }
}

// chatRequest checks OpenAI-style parameters and turns them into the engine's request.
function chatRequest(p) {
  if (!Array.isArray(p.messages) || p.messages.length === 0) {
    throw new EngineError('internal', 'messages must be a non-empty array');
  }
  const messages = p.messages.map((m, i) => {
    if (!['system', 'user', 'assistant', 'tool'].includes(m.role)) {
      throw new EngineError('internal', `messages[${i}].role must be system, user, assistant or tool, not ${JSON.stringify(m.role)}`);
    }
    // OpenAI also allows content as a list of parts; only text parts mean something to this model.
    const content = Array.isArray(m.content)
      ? m.content.filter((part) => part.type === 'text').map((part) => part.text).join('')
      : String(m.content ?? '');
    const calls = (m.tool_calls ?? []).map((c) => ({ function: { name: c.function.name, arguments: c.function.arguments } }));
    return { role: m.role, content, tool_calls: calls };
  });
  return {
    messages,
    think: Boolean(p.think),
    temperature: p.temperature ?? undefined,
    top_p: p.top_p ?? undefined,
    top_k: p.top_k ?? undefined,
    repetition_penalty: p.repetition_penalty ?? undefined,
    max_tokens: p.max_completion_tokens ?? p.max_tokens ?? undefined,
    seed: p.seed ?? undefined,
    response_format: p.response_format ?? undefined,
    tools: p.tools ?? undefined,
    tool_choice: p.tool_choice ?? undefined,
  };
}

// usage is OpenAI's usage object plus what the engine measured: prefilled_tokens (prompt tokens computed
// for this answer; the rest came from the cache of the previous turn or from storage), restored_tokens
// (those of the system prompt whose KV cache was loaded from storage), seconds (for the whole answer),
// first_token_seconds (the prompt's prefill and the first token) and decode_tokens_per_second (from the
// first token to the last; 0 for fewer than two); on WebGPU also encode_us_per_dispatch (CPU time
// recording one dispatch, decoding so far, its pass's begin and end included), dispatches_per_token,
// weight_bytes_per_token (what a decoded token's dispatches read), kernels (the autotune's variants) and tune (its
// candidates measured at this load: label → {us: best time of a run, bytes: weight bytes it reads}), with
// tune_skipped (the candidates its time budget left unmeasured), tune_ms (what it took) and tune_clock
// ("gpu timestamps" where the adapter has timestamp-query, else "wall time of a submit"; '' when the
// kernels came from storage or were forced).
function usage(r) {
  const prompt = r.prompt_tokens ?? 0;
  const completion = r.completion_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prefilled_tokens: r.prefilled_tokens ?? 0,
    restored_tokens: r.restored_tokens ?? 0,
    seconds: r.seconds ?? 0,
    first_token_seconds: r.first_token_seconds ?? 0,
    decode_tokens_per_second: r.decode_tokens_per_second ?? 0,
    ...(r.kernels ? {
      encode_us_per_dispatch: r.encode_us_per_dispatch, dispatches_per_token: r.dispatches_per_token,
      weight_bytes_per_token: r.weight_bytes_per_token, kernels: r.kernels,
      tune: r.tune ?? {}, tune_skipped: r.tune_skipped ?? [], tune_ms: r.tune_ms ?? 0,
      tune_clock: r.tune_clock ?? '',
    } : {}),
  };
}

async function collect(chunks) {
  let content = '';
  let last;
  const toolCalls = [];
  for await (const c of chunks) {
    content += c.choices[0].delta.content ?? '';
    for (const { index, ...call } of c.choices[0].delta.tool_calls ?? []) toolCalls[index] = call;
    last = c;
  }
  const message = { role: 'assistant', content };
  if (toolCalls.length > 0) {
    message.tool_calls = toolCalls;
    if (content === '') message.content = null;
  }
  return {
    id: last.id, object: 'chat.completion', created: last.created, model: last.model,
    choices: [{ index: 0, message, finish_reason: last.choices[0].finish_reason }],
    usage: last.usage,
  };
}
