// The engine's dedicated worker: the Go engine (engine.wasm) and the model download run here, so the
// page never blocks. engine.js starts it as a module worker and talks to it in messages {kind, id, payload}:
//
//   page → worker   load {modelUrl, contextLength, backend}   chat {messages, think, temperature, top_p, top_k,
//                   repetition_penalty, max_tokens, seed}     abort   reset (a new chat: stops the running answer)
//   worker → page   progress {phase: "download"|"verify"|"prepare"|"upload", loaded, total, bytesPerSecond,
//                   etaSeconds, shard, shardsDone, shardsTotal, note; "prepare" has modelBytes}
//                   loaded {adapter, backend, maxContext, vocabSize, model, systemPrompt, thinkingSystemPrompt}
//                   token {text, tokenId}   done {…the request's result}   error {type, message}
//
// Every reply carries the id of the request it answers. Error types survive the trip: the engine's own
// ("no-webgpu", "limits", "out-of-memory", "device-lost", "internal") and the download's ("download-failed",
// "hash-mismatch", "quota-exceeded", "bad-manifest").

import { openModel } from './download.js';

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
        post('done', await running(engine.chat(payload, (text, tokenId) => post('token', { text, tokenId }))));
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

async function load({ modelUrl, contextLength, backend }, onProgress) {
  const [model, eng] = await Promise.all([openModel(modelUrl, { onProgress }), startEngine()]);
  const { manifest, files, readShard } = model;
  // Until it asks for the first shard the engine sets up the device and allocates its memory (seconds for
  // an 8B model): say so, rather than leave the stored model's check standing at 100 %.
  onProgress({ phase: 'prepare', loaded: 0, total: 0, modelBytes: manifest.total_bytes, note: '' });
  const upload = uploadProgress(manifest.shards.length, onProgress);
  const info = await running(eng.load({
    manifest,
    files,
    fetchShard: (i) => {
      upload.fetching(i);
      return readShard(i);
    },
    onProgress: (phase, done, total) => upload.report(phase, Number(done), Number(total)),
    contextLength,
    backend,
  }));
  const text = (name) => (files[name] ? new TextDecoder().decode(files[name]) : '');
  return {
    ...info,
    model: manifest.source || 'internlm3-8b-instruct',
    systemPrompt: text('system-prompt.txt'),
    thinkingSystemPrompt: text('thinking-system-prompt.txt'),
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

// startEngine runs engine.wasm once per worker and resolves with the API it publishes.
let starting;
function startEngine() {
  starting ??= (async () => {
    await import('./wasm_exec.js'); // Go's support script: defines globalThis.Go
    const go = new Go();
    const ready = new Promise((resolve) => (globalThis.ilmwebReady = resolve));
    let source;
    try {
      source = await WebAssembly.instantiateStreaming(fetch(new URL('engine.wasm', import.meta.url)), go.importObject);
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
