// Runs the CPU engine (cmd/bench, a child process) and llama.cpp (node-llama-cpp's prebuilt linux-x64 binary,
// in this process) on the same shapes, alternating, and prints prefill and decode tok/s with the ratios
// ours ÷ llama.cpp (medians over the rounds). tools/bench-cpu.sh prepares the models and calls this:
//
//	node tools/llamacpp/bench.mjs NODE_MODULES GGUF ROUNDS PROMPT GEN THREADS -- OURS_COMMAND...
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, gguf, rounds, prompt, gen, threads] = process.argv.slice(2, 8);
const ours = process.argv.slice(process.argv.indexOf('--') + 1);
const [R, P, G, N] = [rounds, prompt, gen, threads].map(Number);
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(path.join(modules, 'node-llama-cpp/dist/index.js')).href);

const llama = await getLlama({ gpu: false, build: 'never', maxThreads: N, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });

// random prompt ids past the special and byte tokens, as cmd/bench draws random ids
let seed = 1;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const ids = Array.from({ length: P }, () => 259 + Math.floor(rand() * 100000));

// one llama.cpp run, timed like backend.Bench: prefill = prompt / time to the first token, decode = the
// next G tokens over their time (greedy)
async function runLlama() {
  const ctx = await model.createContext({ contextSize: 512, threads: N, sequences: 1 });
  const seq = ctx.getSequence();
  const start = performance.now();
  let first = 0, n = 0;
  for await (const _ of seq.evaluate(ids, { temperature: 0 })) {
    if (n++ === 0) first = performance.now();
    if (n === G + 1) break;
  }
  const end = performance.now();
  await ctx.dispose();
  if (n !== G + 1) throw new Error(`llama.cpp stopped after ${n} tokens, want ${G + 1}`);
  return { prefill: P / ((first - start) / 1000), decode: G / ((end - first) / 1000) };
}

function runOurs() {
  const r = JSON.parse(execFileSync(ours[0], ours.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
  return { prefill: r.prefill_tok_s, decode: r.decode_tok_s };
}

const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res = { ours: [], llama: [] };
const loads = [];
await runLlama(); // warm-up: page in the GGUF
console.log(`round  engine      prefill tok/s  decode tok/s  load`);
for (let i = 0; i < R; i++) {
  // alternate which engine goes first, so both see the same load on average
  for (const e of i % 2 ? ['llama', 'ours'] : ['ours', 'llama']) {
    const l = load();
    loads.push(Number(l));
    const r = e === 'ours' ? runOurs() : await runLlama();
    res[e].push(r);
    console.log(`${String(i + 1).padStart(5)}  ${e.padEnd(10)}  ${r.prefill.toFixed(1).padStart(13)}  ${r.decode.toFixed(2).padStart(12)}  ${l}`);
  }
}
const m = (e, k) => median(res[e].map((r) => r[k]));
console.log(`\n${os.cpus().length} cores (${os.cpus()[0].model}), ${N} threads, ${P}-token prompt, ${G} decoded, ${R} rounds, median`);
console.log(`1-minute load average during the runs: ${Math.min(...loads)}–${Math.max(...loads)}`);
console.log(`| engine | prefill tok/s | decode tok/s |\n|---|---|---|`);
console.log(`| ours (cmd/bench -backend cpu) | ${m('ours', 'prefill').toFixed(1)} | ${m('ours', 'decode').toFixed(2)} |`);
console.log(`| llama.cpp (node-llama-cpp) | ${m('llama', 'prefill').toFixed(1)} | ${m('llama', 'decode').toFixed(2)} |`);
console.log(`| ratio ours ÷ llama.cpp | ${(m('ours', 'prefill') / m('llama', 'prefill')).toFixed(2)} | ${(m('ours', 'decode') / m('llama', 'decode')).toFixed(2)} |`);
await model.dispose();
await llama.dispose();
