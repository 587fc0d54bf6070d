// A stand-in for the Go engine in the browser tests that do not need a model: the test server serves this
// file as /wasm_exec.js (and an empty module as /engine.wasm). Its Go.run publishes an ilmwebEngine with
// the interface of wasm/main.go, so worker.js, download.js, engine.js and the page run unchanged.
//
// load reads every shard through fetchShard and checks its size. Time it would take passes on a virtual
// clock instead (this worker's performance.now runs ahead): ten minutes of device set-up and allocation
// before the first shard, then one second per shard, so the page's upload rate and ETA come from known
// durations. chat answers from the last user message:
//   "echo:TEXT"   streams TEXT back verbatim (markup and all)
//   "count:N"     streams "1 2 … N", slowly enough to be stopped
//   "lose-device" fails the way a lost GPU does (an Error with .type "device-lost")
//   a question in SCRIPTED its answer there (for the screenshots)
//   anything else "You said: …"

const SCRIPTED = {
  'Write a Python function that tells whether a number is prime.':
    "Here is a function that checks whether a number is prime:\n\n```python\ndef is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True\n```\n\nIt tries divisors up to **√n**, so it takes `O(√n)` steps.",
  'What is the sum of the first 10 odd numbers?':
    "We need the sum of the first $n$ odd numbers.\n\n**Step 1.** Write them out: $1 + 3 + 5 + \\dots + (2n-1)$.\n\n**Step 2.** Pair the terms from both ends: each pair sums to $2n$, and there are $n/2$ pairs, so\n\n$$\\sum_{k=1}^{n} (2k-1) = \\frac{n}{2} \\cdot 2n = n^2.$$\n\n**Check.** For $n = 4$: $1+3+5+7 = 16 = 4^2$. ✓\n\nSo the sum of the first 10 odd numbers is \\boxed{100}.",
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let ahead = 0; // milliseconds this worker's clock runs ahead of the real one
const realNow = performance.now.bind(performance);
Object.defineProperty(performance, 'now', { value: () => realNow() + ahead, configurable: true });
const SETUP_MS = 10 * 60 * 1000;
const SHARD_MS = 1000;
const typed = (type, message) => Object.assign(new Error(message), { type });

function mockEngine() {
  let aborted = false;
  let maxContext = 0;
  return {
    async check() {
      return { bytes: 0 };
    },

    async load({ manifest, files, fetchShard, onProgress, contextLength, backend }) {
      for (const f of manifest.files) {
        if (files[f.name]?.length !== f.bytes) throw typed('internal', `mock: file ${f.name} missing or of the wrong size`);
      }
      const total = manifest.shards.reduce((n, s) => n + s.bytes, 0);
      let done = 0;
      ahead += SETUP_MS;
      for (let i = 0; i < manifest.shards.length; i++) {
        const bytes = await fetchShard(i);
        ahead += SHARD_MS;
        if (!(bytes instanceof Uint8Array) || bytes.length !== manifest.shards[i].bytes) {
          throw typed('internal', `mock: shard ${i} has ${bytes?.length} bytes, want ${manifest.shards[i].bytes}`);
        }
        done += bytes.length;
        onProgress('upload', done, total);
      }
      maxContext = contextLength || 4096;
      return { adapter: 'mock adapter', backend, maxContext, vocabSize: 1000 };
    },

    async chat(req, onToken) {
      aborted = false;
      const start = performance.now();
      const last = req.messages.at(-1).content;
      const prompt = req.messages.reduce((n, m) => n + m.content.length, 0);
      if (last === 'lose-device') throw typed('device-lost', 'mock: the GPU device was lost');
      let pieces;
      let delay = 2;
      if (last.startsWith('echo:')) pieces = last.slice(5).match(/\s*\S+\s*/g) ?? [];
      else if (last.startsWith('count:')) {
        pieces = Array.from({ length: Number(last.slice(6)) }, (_, i) => `${i + 1} `);
        delay = 40;
      } else pieces = (SCRIPTED[last] ?? `You said: ${last}`).match(/\s*\S+\s*/g);
      const max = req.max_tokens || 1024;
      let n = 0;
      let finish = 'stop';
      for (const p of pieces) {
        if (aborted) {
          finish = 'abort';
          break;
        }
        if (n === max) {
          finish = 'length';
          break;
        }
        await sleep(delay);
        onToken(p, n++);
      }
      return {
        finish_reason: finish, prompt_tokens: prompt, completion_tokens: n,
        prefilled_tokens: prompt, seconds: (performance.now() - start) / 1000,
      };
    },

    abort() {
      aborted = true;
    },

    tokenize(text) {
      return Array.from(text, (c) => c.codePointAt(0));
    },
  };
}

globalThis.Go = class {
  importObject = {};
  run() {
    globalThis.ilmwebEngine = mockEngine();
    globalThis.ilmwebReady?.();
    return new Promise(() => {}); // like a Go program, it runs as long as the worker
  }
};
