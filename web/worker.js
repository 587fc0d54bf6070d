// The engine's dedicated worker: the Go engine (engine.wasm) and the model download run here, so the
// page never blocks. engine.js starts it as a module worker and talks to it in messages {kind, id, payload}:
//
//   page → worker   load {modelUrl, contextLength, backend, prefillChunk, kernels, tuneBudgetMs}
//                   chat {messages, think, temperature, top_p, top_k, repetition_penalty, max_tokens, seed}
//                   abort   reset (a new chat: stops the running answer)
//   worker → page   progress {phase: "download"|"verify"|"prepare"|"upload", loaded, total, bytesPerSecond,
//                   etaSeconds, shard, shardsDone, shardsTotal, note; "prepare" has modelBytes}
//                   loaded {adapter, backend, maxContext, vocabSize, model, systemPrompt, thinkingSystemPrompt,
//                   timings}
//                   prefill {done, total, tokensPerSecond}   token {text, tokenId}   done {…the request's result}
//                   error {type, message}
//
// Every reply carries the id of the request it answers. Error types survive the trip: the engine's own
// ("no-webgpu", "limits", "too-large", "out-of-memory", "device-lost", "internal") and the download's
// ("download-failed", "hash-mismatch", "quota-exceeded", "bad-manifest").
//
// Before any shard is fetched the engine checks the manifest against what it can run here (wasm32's 4 GiB
// on the CPU path, the adapter's limits on WebGPU). The KV cache of a system prompt, once computed, is
// kept in Cache Storage (KV_CACHE) and loaded instead of prefilled on the next visit; the engine verifies
// a stored one (hash, size, its identity) and recomputes it when it does not check out.

import { openModel } from './download.js';

const KV_CACHE = 'ilmweb-kv-v1';
const KV_KEEP = 8; // stored system-prompt caches kept, the newest (a few MB each at 8B)

let engine; // globalThis.ilmwebEngine, once engine.wasm runs
let engineStopped; // set when the Go program exits: every later request fails with it

self.onmessage = async ({ data: { kind, id, payload } }) => {
  const post = (k, p) => self.postMessage({ kind: k, id, payload: p });
  try {
    switch (kind) {
      case 'load':
        post('loaded', await load(payload, (p) => post('progress', p)));
        break;
      case 'chat':
        if (!engine) throw Object.assign(new Error('chat before the model is loaded'), { type: 'internal' });
        post('done', await running(engine.chat(payload, (text, tokenId) => post('token', { text, tokenId }),
          (done, total, seconds) => post('prefill', { done, total, tokensPerSecond: seconds > 0 ? done / seconds : 0 }))));
        break;
      case 'abort':
      case 'reset': // the page owns the conversation; the engine's prefix cache decides what it can reuse
        engine?.abort();
        post('done', {});
        break;
      default:
        throw Object.assign(new Error(`unknown request kind ${JSON.stringify(kind)}`), { type: 'internal' });
    }
  } catch (err) {
    post('error', { type: err?.type ?? 'internal', message: err?.message ?? String(err) });
  }
};

async function load({ modelUrl, contextLength, backend, prefillChunk, kernels, tuneBudgetMs }, onProgress) {
  // Where the load's time goes, in seconds (engine.info.timings): starting engine.wasm; the check from the
  // manifest (on WebGPU: opening the device and its self-test); the model's download and check of what is
  // stored; the engine's set-up before the first shard (autotune, allocation); the shards' upload, of which
  // reading them back from storage and verifying their hashes.
  const timings = { engine: 0, check: 0, download: 0, prepare: 0, upload: 0, readAndVerify: 0 };
  let mark = performance.now();
  const lap = () => { // seconds since the last lap
    const now = performance.now();
    const seconds = (now - mark) / 1000;
    mark = now;
    return seconds;
  };
  const eng = await startEngine();
  timings.engine = lap();
  const check = async (manifest) => {
    const t0 = performance.now();
    await running(eng.check({ manifest, backend, contextLength }));
    timings.check = (performance.now() - t0) / 1000;
  };
  const { manifest, files, readShard } = await openModel(modelUrl, { onProgress, check });
  timings.download = lap() - timings.check;
  // Until it asks for the first shard the engine sets up the device and allocates its memory (seconds for
  // an 8B model): say so, rather than leave the stored model's check standing at 100 %.
  onProgress({ phase: 'prepare', loaded: 0, total: 0, modelBytes: manifest.total_bytes, note: '' });
  const upload = uploadProgress(manifest.shards.length, onProgress);
  const info = await running(eng.load({
    manifest,
    files,
    fetchShard: async (i) => {
      if (i === 0) timings.prepare = lap();
      upload.fetching(i);
      const t0 = performance.now();
      const bytes = await readShard(i);
      timings.readAndVerify += (performance.now() - t0) / 1000;
      return bytes;
    },
    onProgress: (phase, done, total) => upload.report(phase, Number(done), Number(total)),
    contextLength,
    backend,
    prefillChunk,
    kernels,
    tuneBudgetMs,
    engineVersion,
    loadPrefix: (key) => storedPrefix(modelUrl, key),
    storePrefix: (key, bytes) => storePrefix(modelUrl, key, bytes),
  }));
  timings.upload = lap();
  const text = (name) => (files[name] ? new TextDecoder().decode(files[name]) : '');
  return {
    ...info,
    model: manifest.source || 'internlm3-8b-instruct',
    systemPrompt: text('system-prompt.txt'),
    thinkingSystemPrompt: text('thinking-system-prompt.txt'),
    timings,
  };
}

// uploadProgress turns the engine's (phase, done, total) callbacks, one after each shard, into the same
// events as the download's. The rate counts from the first shard's request, so the time the engine spent
// setting up and allocating does not inflate the ETA.
function uploadProgress(shardsTotal, onProgress) {
  let start; // performance.now() when the first shard was asked for
  let fetched = -1; // the last shard asked for: done when the engine next reports
  return {
    fetching(i) {
      start ??= performance.now();
      fetched = i;
    },
    report(phase, done, total) {
      const seconds = (performance.now() - (start ?? performance.now())) / 1000;
      const rate = seconds > 0.5 ? done / seconds : 0;
      const shardsDone = fetched + 1;
      onProgress({
        phase, loaded: done, total, bytesPerSecond: rate, etaSeconds: rate > 0 ? (total - done) / rate : null,
        shard: shardsDone < shardsTotal ? `shard ${shardsDone + 1}` : '', shardsDone, shardsTotal, note: '',
      });
    },
  };
}

// storedPrefix is the stored KV cache under key, or null.
async function storedPrefix(modelUrl, key) {
  const res = await (await caches.open(KV_CACHE)).match(prefixUrl(modelUrl, key));
  return res ? new Uint8Array(await res.arrayBuffer()) : null;
}

// storePrefix keeps bytes under key, and the newest KV_KEEP entries.
async function storePrefix(modelUrl, key, bytes) {
  const cache = await caches.open(KV_CACHE);
  const url = prefixUrl(modelUrl, key);
  await cache.delete(url);
  await cache.put(url, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } }));
  const keys = await cache.keys(); // in insertion order
  for (const old of keys.slice(0, Math.max(0, keys.length - KV_KEEP))) await cache.delete(old);
}

function prefixUrl(modelUrl, key) {
  return new URL(`kv-cache/${key}.bin`, new URL(modelUrl.endsWith('/') ? modelUrl : `${modelUrl}/`, self.location.href)).href;
}

// startEngine runs engine.wasm once per worker and resolves with the API it publishes. engineVersion is
// its sha256: a stored KV cache is only as valid as the code that computed it.
let starting;
let engineVersion;
function startEngine() {
  starting ??= (async () => {
    await import('./wasm_exec.js'); // Go's support script: defines globalThis.Go
    const go = new Go();
    const ready = new Promise((resolve) => (globalThis.ilmwebReady = resolve));
    let source;
    try {
      const res = await fetch(new URL('engine.wasm', import.meta.url));
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const bytes = await res.arrayBuffer();
      engineVersion = hex(await crypto.subtle.digest('SHA-256', bytes));
      source = await WebAssembly.instantiate(bytes, go.importObject);
    } catch (err) {
      throw Object.assign(new Error(`Could not start the engine (engine.wasm): ${err.message}`), { type: 'internal' });
    }
    globalThis.wasm = source; // the WebGPU binding's JS side reads wasm.instance.exports.mem
    go.run(source.instance).then(() => {
      // A Go program only exits here on a fatal error (a panic, or running out of memory).
      const out = recentOutput.join('\n');
      engineStopped = Object.assign(new Error(`The engine stopped: ${lastLines(out, 3) || 'no message'}`), {
        type: /out of memory/i.test(out) ? 'out-of-memory' : 'internal',
      });
      for (const reject of waiting) reject(engineStopped);
      waiting.clear();
    });
    await ready;
    engine = globalThis.ilmwebEngine;
    return engine;
  })();
  return starting;
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// running waits for an engine promise, but fails at once if the Go program dies meanwhile (its promises
// would otherwise never settle and the page would wait forever).
const waiting = new Set();
function running(promise) {
  if (engineStopped) return Promise.reject(engineStopped);
  return new Promise((resolve, reject) => {
    waiting.add(reject);
    promise.then(resolve, reject).finally(() => waiting.delete(reject));
  });
}

// The Go runtime prints panics through console.log; keep the last lines to say why the engine stopped.
const recentOutput = [];
for (const method of ['log', 'error']) {
  const original = console[method].bind(console);
  console[method] = (...args) => {
    recentOutput.push(args.join(' '));
    if (recentOutput.length > 40) recentOutput.shift();
    original(...args);
  };
}

function lastLines(text, n) {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const panic = lines.findIndex((l) => /^(panic|fatal error):/.test(l));
  return (panic >= 0 ? lines.slice(panic, panic + n) : lines.slice(-n)).join(' / ');
}
