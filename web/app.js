// The chat page. It talks to the model only through engine.js, the same API other pages use.
//
// URL parameters: ?model=URL (the model directory; default ./model/), ?backend=cpu (debug: the engine's
// CPU path in wasm, for tests and browsers without WebGPU; default webgpu).

import { createEngine, EngineError } from './engine.js';
import { renderMarkdown } from './render.js';
import { listConversations, saveConversation, deleteConversation } from './store.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') || 'model/';
const BACKEND = params.get('backend') === 'cpu' ? 'cpu' : 'webgpu';
// ?prefill-chunk=N: prompt tokens per prefill step (progress and stop granularity; for tests and slow GPUs)
const PREFILL_CHUNK = Number(params.get('prefill-chunk')) || undefined;

// ---- settings (localStorage; MODEL.md's recommended sampling by default) ----

const DEFAULTS = {
  systemPrompt: '', temperature: 1, top_k: 40, top_p: 0.8, repetition_penalty: 1.005,
  max_tokens: 1024, think_max_tokens: 8192, seed: '', contextLength: 4096, mode: 'normal',
};
const SETTINGS_KEY = 'ilmweb.settings';
let settings = { ...DEFAULTS, ...JSON.parse(localStorage.getItem(SETTINGS_KEY) || '{}') };
const saveSettings = () => localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));

// ---- state ----

let engine; // the loaded Engine, or undefined while (re)loading or after an error
let conversations = []; // newest first
let current = newConversation();
let generating; // {controller, message} while an answer streams

function newConversation() {
  return { id: crypto.randomUUID(), title: 'New chat', created: Date.now(), updated: Date.now(), messages: [] };
}

// ---- engine lifecycle ----

// startEngine loads the model: in a new engine, or in previous (a reload in its worker, which keeps the GPU
// device and the compiled kernels: a settings change).
async function startEngine(previous) {
  engine = undefined;
  updateComposer();
  showNotice(null);
  showLoader({ phase: 'start' });
  $('status-engine').textContent = 'Loading the engine…';
  const options = {
    backend: BACKEND, contextLength: Number(settings.contextLength), prefillChunk: PREFILL_CHUNK, onProgress: showLoader,
  };
  try {
    if (previous) {
      await previous.reload(options);
      engine = previous;
    } else {
      engine = await createEngine({ model: MODEL_URL, ...options });
    }
  } catch (err) {
    previous?.unload();
    showLoader(null);
    showError(err, 'load');
    $('status-engine').textContent = 'Engine not loaded';
    return;
  }
  showLoader(null);
  const i = engine.info;
  $('status-engine').textContent = `${BACKEND === 'cpu' ? 'CPU (wasm, slow)' : 'WebGPU'} · ${i.adapter}`;
  $('settings-form').elements.systemPrompt.placeholder =
    `Empty: the official prompt for the mode. Normal:\n${i.systemPrompt || '(none)'}`;
  updateComposer();
  updateContext();
}

async function reloadEngine() {
  engine?.unload();
  await startEngine();
}

// ---- the first-load screen: which phase, how much, how fast, how long ----

let lastProgressAt = 0;
let stallTimer;

function showLoader(p) {
  const box = $('loader');
  clearInterval(stallTimer);
  if (!p) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  lastProgressAt = performance.now();
  const titles = {
    start: 'Starting the engine…',
    verify: 'Checking the stored model…',
    download: 'Downloading the model (first time only)',
    prepare: BACKEND === 'cpu' ? 'Preparing the engine…' : 'Setting up your GPU…',
    upload: BACKEND === 'cpu' ? 'Loading the model into memory' : 'Loading the model onto your GPU',
  };
  $('load-title').textContent = titles[p.phase] ?? p.phase;
  const bar = $('load-bar');
  if (p.total > 0) {
    bar.max = p.total;
    bar.value = p.loaded;
  } else {
    bar.removeAttribute('value'); // indeterminate
  }
  const numbers = [];
  if (p.total > 0) {
    numbers.push(`${formatBytes(p.loaded)} of ${formatBytes(p.total)} (${Math.floor((100 * p.loaded) / p.total)}%)`);
    if (p.bytesPerSecond > 0) numbers.push(`${formatBytes(p.bytesPerSecond)}/s`);
    if (p.etaSeconds != null && p.loaded < p.total) numbers.push(`about ${formatDuration(p.etaSeconds)} left`);
  }
  $('load-numbers').textContent = numbers.join(' · ');
  const detail = [];
  if (p.shardsTotal) detail.push(`${p.shardsDone} of ${p.shardsTotal} shards done`);
  if (p.shard && p.phase !== 'verify' && p.shardsDone < p.shardsTotal) detail.push(`now: ${p.shard}`);
  if (p.phase === 'prepare' && BACKEND !== 'cpu' && p.modelBytes > 0) {
    detail.push(`Compiling the kernels and reserving GPU memory for ${formatBytes(p.modelBytes)} of weights and the KV cache; this can take a while`);
  }
  if (p.note) detail.push(p.note);
  $('load-detail').textContent = detail.join(' · ');
  // Say so when nothing moves, rather than leaving a frozen bar.
  stallTimer = setInterval(() => {
    const idle = (performance.now() - lastProgressAt) / 1000;
    if (idle >= 10 && p.phase === 'download') {
      $('load-detail').textContent = `No data for ${Math.round(idle)} s: waiting for the network. The download resumes where it stopped.`;
    }
  }, 1000);
}

// ---- a GPU emulated on the CPU: say so before the user waits ----

// Software WebGPU adapters: Chrome's SwiftShader, Mesa's llvmpipe/lavapipe/softpipe, Windows' WARP
// ("Microsoft Basic Render Driver"). A browser may also flag them as fallback adapters.
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|\bwarp\b|basic render/i;

// checkAdapter asks for the adapter the engine will get and, when it is software emulation, says what that
// means while the model is still downloading: the engine's own adapter comes only after the download.
async function checkAdapter() {
  if (BACKEND === 'cpu' || !navigator.gpu) return;
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch {
    return; // the engine reports a missing adapter itself
  }
  const info = adapter?.info ?? {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  if (!adapter || !(info.isFallbackAdapter || adapter.isFallbackAdapter || SOFTWARE_ADAPTER.test(name))) return;
  $('software-gpu-text').textContent =
    `This browser's WebGPU adapter (${name || 'a fallback adapter'}) emulates a GPU on the processor. ` +
    'The model works, but very slowly: with the 8B model a short message can take ten minutes before the ' +
    'answer starts, and each further word many seconds. For normal speed, turn on hardware acceleration in ' +
    'the browser settings, update the graphics driver, or use a computer whose GPU the browser can use.';
  $('software-gpu').hidden = false;
}

// ---- errors: say what happened and what to do ----

const HELP = {
  'no-webgpu': ['This browser has no WebGPU',
    'The model runs on your GPU through WebGPU. Use Chrome or Edge 113 or newer (Windows, macOS, ChromeOS; ' +
    'Android: Chrome 121+), Safari 26 or newer, or Firefox 141+ on Windows. On Linux, Chrome needs ' +
    'chrome://flags/#enable-unsafe-webgpu and chrome://flags/#enable-vulkan. The CPU fallback works everywhere but is very slow.'],
  'no-adapter': ['WebGPU found no usable GPU',
    'This browser supports WebGPU but could not use a GPU with it: hardware acceleration may be off in the ' +
    'browser settings, or the GPU or its driver may be blocklisted. Turn hardware acceleration on, update the ' +
    'graphics driver, or try another browser. The CPU fallback works everywhere but is very slow.'],
  'too-large': ['This model is too large for the CPU fallback',
    'Without WebGPU the model runs in WebAssembly, which can address at most 4 GiB; this model needs more (see ' +
    'the details), so nothing was downloaded. Open the page in a browser with WebGPU: Chrome or Edge 113 or newer, ' +
    'Safari 26 or newer, or Firefox 141+ on Windows.'],
  limits: ['Your GPU is not big enough for this model',
    'The GPU or its driver reports limits below what the model needs (see the details). Try another browser, ' +
    'update the graphics driver, or use a computer with a larger GPU.'],
  'out-of-memory': ['Out of GPU memory',
    'Close other tabs and programs that use the GPU, or lower the context length in the settings, then reload the engine.'],
  'device-lost': ['The GPU was reset',
    'The graphics driver reset the GPU (this happens after a driver crash or when the computer sleeps). Your conversation is kept.'],
  'download-failed': ['The model download stopped',
    'Check the network connection and retry: the download resumes where it stopped.'],
  'hash-mismatch': ['A model file is damaged on the server',
    'A downloaded file did not match its checksum, so it was rejected rather than used. Retry later.'],
  'quota-exceeded': ['Not enough storage space',
    'The browser will not store the model: see the details for how much is needed.'],
  'bad-manifest': ['The model host sent an unusable manifest',
    'Its list of files breaks a rule (see the details), so nothing was downloaded. Check the model address, or tell whoever hosts the model.'],
  internal: ['Something went wrong', 'Reloading the engine usually helps. Your conversation is kept.'],
};

function showError(err, during) {
  const type = err instanceof EngineError ? err.type : 'internal';
  // A browser with WebGPU whose engine still found none has no usable GPU adapter: different advice.
  const key = type === 'no-webgpu' && 'gpu' in navigator ? 'no-adapter' : type;
  const [title, help] = HELP[key] ?? HELP.internal;
  const actions = [];
  if (type === 'no-webgpu' && BACKEND !== 'cpu') {
    actions.push(['Use the CPU (slow)', () => {
      const u = new URL(location.href);
      u.searchParams.set('backend', 'cpu');
      location.href = u.href;
    }]);
  }
  actions.push([during === 'load' ? 'Retry' : 'Reload the engine', reloadEngine]);
  showNotice({ title, text: `${help}\n\nDetails (${type}): ${err.message ?? err}`, actions, type });
}

function showNotice(n) {
  const box = $('notice');
  box.hidden = !n;
  if (!n) return;
  box.dataset.type = n.type ?? '';
  $('notice-title').textContent = n.title;
  $('notice-text').textContent = n.text;
  const actions = $('notice-actions');
  actions.replaceChildren();
  for (const [label, fn] of n.actions ?? []) {
    const b = button(label, fn);
    b.className = 'primary';
    actions.append(b);
  }
}

// ---- chatting ----

function requestMessages(conv, upTo) {
  const msgs = conv.messages.slice(0, upTo).map(({ role, content }) => ({ role, content }));
  // An empty system prompt lets the engine add the official one for the mode.
  if (settings.systemPrompt.trim()) msgs.unshift({ role: 'system', content: settings.systemPrompt });
  return msgs;
}

async function send(text) {
  current.messages.push({ role: 'user', content: text });
  if (current.messages.length === 1) current.title = text.slice(0, 60);
  renderConversation();
  persist(current);
  await answer();
}

// answer streams the assistant's reply to the current conversation as it stands.
async function answer() {
  const conv = current; // the user may switch conversations while this one streams
  const think = settings.mode === 'think';
  const message = { role: 'assistant', content: '', stats: null };
  const upTo = conv.messages.length;
  conv.messages.push(message);
  const controller = new AbortController();
  generating = { controller, message };
  const view = appendMessage(message, conv.messages.length - 1);
  updateComposer();
  const started = performance.now();
  let firstTokenAt;
  let failure;
  try {
    const stream = engine.chat.completions.create({
      messages: requestMessages(conv, upTo),
      stream: true,
      think,
      temperature: Number(settings.temperature),
      top_k: Number(settings.top_k),
      top_p: Number(settings.top_p),
      repetition_penalty: Number(settings.repetition_penalty),
      max_tokens: Number(think ? settings.think_max_tokens : settings.max_tokens),
      seed: settings.seed === '' ? undefined : Number(settings.seed),
      signal: controller.signal,
      onPrefill: (p) => {
        message.prefill = p;
        view.update();
      },
    });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c.delta.content) {
        message.prefill = undefined;
        firstTokenAt ??= performance.now();
        message.content += c.delta.content;
        view.update();
      }
      if (c.finish_reason) {
        const u = chunk.usage;
        const decodeSeconds = (performance.now() - (firstTokenAt ?? started)) / 1000;
        message.stats = {
          finish_reason: c.finish_reason,
          prompt_tokens: u.prompt_tokens,
          completion_tokens: u.completion_tokens,
          prefilled_tokens: u.prefilled_tokens,
          restored_tokens: u.restored_tokens,
          first_token_seconds: ((firstTokenAt ?? performance.now()) - started) / 1000,
          tokens_per_second: u.completion_tokens > 1 && decodeSeconds > 0 ? (u.completion_tokens - 1) / decodeSeconds : 0,
          think,
        };
      }
    }
  } catch (err) {
    failure = err;
    message.stats = { finish_reason: 'error', error: err.message, think };
  } finally {
    generating = undefined;
    message.prefill = undefined;
    view.update(true);
    conv.updated = Date.now();
    await persist(conv);
    updateComposer();
    updateContext();
  }
  if (failure) await recover(failure);
}

// recover handles an error during an answer: a lost GPU reloads the engine by itself once (the model comes
// from storage, the conversation stays); anything else waits for the user.
let autoReloads = 0;
async function recover(err) {
  if (err instanceof EngineError && err.type === 'device-lost' && autoReloads++ < 1) {
    showNotice({ title: HELP['device-lost'][0], text: `${HELP['device-lost'][1]} Reloading the engine…`, type: 'device-lost' });
    await reloadEngine();
    if (engine) {
      showNotice({
        title: 'The engine is back', text: 'Regenerate the interrupted answer, or go on with the conversation.',
        actions: [['Regenerate', () => { showNotice(null); regenerate(); }]],
      });
    }
    return;
  }
  if (err instanceof EngineError && err.type === 'unloaded') return;
  showError(err, 'chat');
}

function stop() {
  generating?.controller.abort();
}

async function regenerate() {
  if (generating || !engine) return;
  const last = current.messages.at(-1);
  if (last?.role === 'assistant') current.messages.pop();
  if (current.messages.at(-1)?.role !== 'user') return;
  renderConversation();
  await answer();
}

async function startNewChat() {
  stop();
  await engine?.resetChat().catch(() => {});
  current = newConversation();
  renderConversation();
  renderHistory();
  updateContext();
  $('prompt').focus();
}

// ---- conversation view ----

function renderConversation() {
  const box = $('messages');
  box.replaceChildren();
  current.messages.forEach((m, i) => appendMessage(m, i));
  if (current.messages.length === 0) {
    const empty = document.createElement('div');
    empty.className = 'empty';
    empty.innerHTML = '<h2>Private chat on your own GPU</h2><p>InternLM3-8B-Instruct runs in this tab. ' +
      'Try <em>Deep thinking</em> for maths: it reasons step by step and ends with a boxed answer.</p>';
    box.append(empty);
  }
  renderHistory();
}

// appendMessage adds one message's view; update() re-renders its Markdown, at most every 50 ms while streaming.
function appendMessage(m, index) {
  $('messages').querySelector('.empty')?.remove();
  const el = document.createElement('article');
  el.className = `msg ${m.role}`;
  const body = document.createElement('div');
  body.className = 'content';
  const meta = document.createElement('div');
  meta.className = 'meta';
  el.append(body, meta);
  $('messages').append(el);

  let pending = false;
  const draw = () => {
    pending = false;
    const nearBottom = isNearBottom();
    if (m.role === 'assistant') {
      body.innerHTML = renderMarkdown(m.content) || (m === generating?.message ? '<span class="cursor"></span>' : '');
      addCodeCopyButtons(body);
    } else {
      body.textContent = m.content; // what the user typed is shown exactly as typed
    }
    el.classList.toggle('streaming', m === generating?.message);
    renderMeta(meta, m, index);
    if (nearBottom) scrollToBottom();
  };
  draw();
  return {
    update(now = false) {
      if (now) return draw();
      if (!pending) {
        pending = true;
        setTimeout(draw, 50);
      }
    },
  };
}

function renderMeta(meta, m, index) {
  meta.replaceChildren();
  const s = m.stats;
  const p = m === generating?.message && !m.content ? m.prefill : undefined;
  if (p) {
    // A long prompt on a slow GPU takes a while before the first word: show that it is moving.
    const info = document.createElement('span');
    info.className = 'prefill';
    const rate = p.tokensPerSecond > 0 ? ` (${p.tokensPerSecond.toFixed(p.tokensPerSecond < 10 ? 1 : 0)} tok/s)` : '';
    info.textContent = `reading your message: ${p.done} / ${p.total} tokens${rate}`;
    meta.append(info);
  }
  if (s) {
    const info = document.createElement('span');
    const parts = [];
    if (s.think) parts.push('deep thinking');
    if (s.completion_tokens != null) parts.push(count(s.completion_tokens, 'token'));
    if (s.tokens_per_second) parts.push(`${s.tokens_per_second.toFixed(1)} tok/s`);
    if (s.first_token_seconds != null) parts.push(`first token ${s.first_token_seconds.toFixed(2)} s`);
    if (s.prefilled_tokens != null && s.prompt_tokens) parts.push(`prefilled ${s.prefilled_tokens} of ${count(s.prompt_tokens, 'prompt token')}`);
    if (s.restored_tokens) parts.push(`system prompt from storage`);
    if (s.finish_reason === 'length') parts.push('stopped at the token limit');
    if (s.finish_reason === 'abort') parts.push('stopped');
    if (s.finish_reason === 'error') parts.push(`failed: ${s.error}`);
    info.textContent = parts.join(' · ');
    meta.append(info);
  }
  if (m === generating?.message) return;
  meta.append(button('Copy', (ev) => copy(m.content, ev.currentTarget)));
  if (m.role === 'assistant' && index === current.messages.length - 1) meta.append(button('Regenerate', regenerate));
}

function addCodeCopyButtons(root) {
  for (const pre of root.querySelectorAll('pre')) {
    const b = button('Copy', (ev) => copy(pre.querySelector('code')?.textContent ?? pre.textContent, ev.currentTarget));
    b.className = 'copy-code';
    pre.append(b);
  }
}

async function copy(text, btn) {
  try {
    await navigator.clipboard.writeText(text);
    btn.textContent = 'Copied';
  } catch {
    btn.textContent = 'Copy failed';
  }
  setTimeout(() => (btn.textContent = 'Copy'), 1500);
}

function isNearBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
}

function updateComposer() {
  $('send').disabled = !engine || Boolean(generating);
  $('send').hidden = Boolean(generating);
  $('stop').hidden = !generating;
}

// updateContext shows how full the context window is, from the last answer's token counts.
function updateContext() {
  const last = [...current.messages].reverse().find((m) => m.stats?.prompt_tokens != null);
  const max = engine?.info?.maxContext;
  const s = last?.stats;
  $('status-speed').textContent = s?.tokens_per_second ? `${s.tokens_per_second.toFixed(1)} tok/s` : '';
  $('status-context').textContent = s && max
    ? `context ${s.prompt_tokens + s.completion_tokens} / ${max} tokens (${Math.round((100 * (s.prompt_tokens + s.completion_tokens)) / max)}%)`
    : max ? `context 0 / ${max} tokens` : '';
}

// ---- history ----

async function persist(conv) {
  if (conv.messages.length === 0) return;
  await saveConversation(conv);
  conversations = [conv, ...conversations.filter((c) => c.id !== conv.id)];
  renderHistory();
}

function renderHistory() {
  const list = $('history');
  list.replaceChildren();
  for (const c of conversations) {
    const li = document.createElement('li');
    li.classList.toggle('active', c.id === current.id);
    const open = button(c.title, () => openConversation(c));
    open.className = 'title';
    open.title = c.title;
    const del = button('×', async () => {
      await deleteConversation(c.id);
      conversations = conversations.filter((x) => x.id !== c.id);
      if (c.id === current.id) current = newConversation();
      renderConversation();
    });
    del.className = 'icon';
    del.setAttribute('aria-label', `Delete “${c.title}”`);
    li.append(open, del);
    list.append(li);
  }
}

function openConversation(c) {
  if (generating) stop();
  current = c;
  renderConversation();
  updateContext();
  document.body.classList.remove('sidebar-open');
}

// ---- settings dialog ----

function openSettings() {
  const f = $('settings-form').elements;
  for (const k of Object.keys(DEFAULTS)) if (f[k]) f[k].value = settings[k];
  $('settings').showModal();
}

function readSettingsForm() {
  const f = $('settings-form').elements;
  const next = { ...settings };
  for (const k of Object.keys(DEFAULTS)) {
    if (!f[k]) continue;
    next[k] = typeof DEFAULTS[k] === 'number' ? Number(f[k].value) : f[k].value;
  }
  return next;
}

// ---- small helpers ----

function button(label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

// count is "1 token", "2 tokens".
function count(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function formatBytes(n) {
  if (n < 1000) return `${Math.round(n)} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let i = -1;
  do {
    n /= 1000;
    i++;
  } while (n >= 1000 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[i]}`;
}

function formatDuration(s) {
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

// ---- wiring ----

function wire() {
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('prompt').value.trim();
    if (!text || !engine || generating) return;
    $('prompt').value = '';
    send(text);
  });
  $('prompt').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('stop').addEventListener('click', stop);
  $('new-chat').addEventListener('click', startNewChat);
  $('toggle-sidebar').addEventListener('click', () => document.body.classList.toggle('sidebar-open'));
  for (const r of document.querySelectorAll('input[name=mode]')) {
    r.checked = r.value === settings.mode;
    r.addEventListener('change', () => {
      settings.mode = r.value;
      saveSettings();
    });
  }
  $('open-settings').addEventListener('click', openSettings);
  $('settings-defaults').addEventListener('click', () => {
    const f = $('settings-form').elements;
    for (const k of Object.keys(DEFAULTS)) if (f[k] && k !== 'mode') f[k].value = DEFAULTS[k];
  });
  $('settings').addEventListener('close', () => {
    if ($('settings').returnValue !== 'save') return;
    const next = readSettingsForm();
    const reload = Number(next.contextLength) !== Number(settings.contextLength);
    settings = next;
    saveSettings();
    if (reload && !generating) startEngine(engine); // the same model with the new context length
  });
}

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  try {
    const reg = await navigator.serviceWorker.register('sw.js');
    // A new version waits until it is told to take over, so a page never runs half old, half new files.
    const offerUpdate = (sw) => showNotice({
      title: 'An update is ready', text: 'Reload to use the new version of the app (the model stays downloaded).',
      actions: [['Reload', () => {
        navigator.serviceWorker.addEventListener('controllerchange', () => location.reload(), { once: true });
        sw.postMessage('skip-waiting');
      }]],
    });
    if (reg.waiting && navigator.serviceWorker.controller) offerUpdate(reg.waiting);
    reg.addEventListener('updatefound', () => {
      const sw = reg.installing;
      sw?.addEventListener('statechange', () => {
        if (sw.state === 'installed' && navigator.serviceWorker.controller) offerUpdate(sw);
      });
    });
  } catch (err) {
    console.warn('ilmweb: no offline support:', err);
  }
}

async function main() {
  wire();
  try {
    conversations = await listConversations();
  } catch (err) {
    console.warn('ilmweb: conversation history unavailable:', err);
  }
  if (conversations[0]) current = conversations[0];
  renderConversation();
  registerServiceWorker();
  checkAdapter();
  await startEngine();
}

main();
