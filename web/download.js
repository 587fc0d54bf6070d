// The model download manager, run inside the engine's worker (worker.js).
//
// A converted model is manifest.json plus files (tokenizer, configs, prompts) and weight shards of at most
// 64 MiB, each listed with its size and sha256. This module brings them into the browser's storage and
// hands them to the engine one at a time:
//
//   - every verified file and shard lives in Cache Storage under a key made of its sha256, so a shard is
//     downloaded once however many times the page is opened, and a new model version only fetches what changed;
//   - a download in progress is written to OPFS (the origin private file system) as it arrives, so a dropped
//     connection or a closed tab resumes with an HTTP Range request where it stopped;
//   - nothing reaches the engine unhashed: fresh downloads are checked before they are stored, and stored
//     shards are checked again as the engine reads them (a corrupted entry is deleted and fetched again).
//
// The manifest comes from whoever hosts the model, so it is checked whole before anything it lists is
// fetched: its size, the number of entries, every name, size and hash, the total against the storage
// quota. A hostile or broken one fails at once with the rule it breaks.
//
// Errors are LoadErrors with a .type the page acts on: "download-failed", "hash-mismatch",
// "quota-exceeded" and "bad-manifest".

export const MODEL_CACHE = 'ilmweb-model-v1';
const PARTIAL_DIR = 'ilmweb-partial';
const PARALLEL = 3; // shards in flight: enough to fill a fast link, few enough that each makes visible progress
const MAX_TRIES = 6; // network attempts in a row that make no progress before a download gives up
const PROGRESS_EVERY_MS = 100;

// The limits of model.ParseManifest (model/manifest.go), which the engine applies once everything is
// here: the page applies them before fetching anything. e2e/hostile_test.go checks that they are the Go
// constants.
export const MANIFEST_LIMITS = Object.freeze({
  maxManifestBytes: 16 * 2 ** 20,
  maxFiles: 32,
  maxFileBytes: 32 * 2 ** 20,
  maxShards: 4096,
  maxShardBytes: 128 * 2 ** 20,
  maxTotalBytes: 64 * 2 ** 30,
});

export class LoadError extends Error {
  constructor(type, message) {
    super(message);
    this.name = 'LoadError';
    this.type = type;
  }
}

// A network failure that is worth another try (a dropped connection, a 5xx, a stalled body).
class RetryableError extends Error {}

// openModel fetches the manifest and makes sure every file and shard is stored and verified. It reports
// progress through onProgress({phase, loaded, total, bytesPerSecond, etaSeconds, shard, shardsDone,
// shardsTotal}) and returns {manifest, files: {name: Uint8Array}, readShard(index) → Promise<Uint8Array>}.
// check(manifest), when given, runs before anything the manifest lists is fetched: the engine refuses
// there a model it cannot run (it throws), so a user never downloads gigabytes for nothing.
export async function openModel(modelUrl, { onProgress = () => {}, check = async () => {} } = {}) {
  const base = new URL(modelUrl, self.location.href);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const cache = await caches.open(MODEL_CACHE);
  const manifest = await fetchManifest(base, cache);
  await check(manifest);
  const entries = [...manifest.files, ...manifest.shards];
  await checkQuotaTotal(entries);
  const progress = new Progress(onProgress, entries, manifest.shards.length);

  // What is already here: whole verified entries in the cache, partial downloads in OPFS.
  progress.phase('verify');
  const stored = new Set((await cache.keys()).map((r) => r.url));
  const missing = [];
  for (const e of entries) {
    if (stored.has(blobKey(e.sha256))) progress.have(e, e.bytes, true);
    else {
      missing.push(e);
      progress.have(e, Math.min(await partialSize(e), e.bytes), false);
    }
  }
  await checkQuota(missing, progress);

  const store = new Store(base, cache, progress);
  if (missing.length > 0) {
    progress.phase('download');
    await pool(missing, PARALLEL, (e) => store.fetchAndStore(e));
  }
  progress.phase('verify');
  const files = {};
  for (const f of manifest.files) files[f.name] = await store.read(f);
  progress.done();
  return { manifest, files, readShard: (i) => store.read(manifest.shards[i]) };
}

// fetchManifest always asks the server first (the model may have been updated); offline it falls back to
// the copy kept from the last successful start, so a loaded app keeps working without a network.
async function fetchManifest(base, cache) {
  const url = new URL('manifest.json', base).href;
  let text;
  try {
    const res = await fetch(url, { cache: 'no-cache' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    text = await readCapped(res, MANIFEST_LIMITS.maxManifestBytes, url);
  } catch (err) {
    if (err instanceof LoadError) throw err;
    const kept = await cache.match(url);
    if (!kept) {
      throw new LoadError('download-failed',
        `Could not fetch the model's manifest from ${url} (${err.message}). Check the connection and the model address, then retry.`);
    }
    return parseManifest(await kept.text(), url);
  }
  const manifest = parseManifest(text, url);
  const previous = await cache.match(url);
  if (previous) await forgetReplaced(cache, parseManifest(await previous.text(), url), manifest);
  await cache.put(url, new Response(text, { headers: { 'Content-Type': 'application/json' } }));
  return manifest;
}

// readCapped reads a response's text, refusing more than max bytes (announced or sent) without holding them.
async function readCapped(res, max, url) {
  const tooLarge = (n) => new LoadError('bad-manifest', `${url} is ${n} bytes or more, over the limit of ${max}; nothing was downloaded.`);
  const announced = Number(res.headers.get('Content-Length'));
  if (announced > max) throw tooLarge(announced);
  const chunks = [];
  let n = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if ((n += value.length) > max) {
      reader.cancel();
      throw tooLarge(n);
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(await new Blob(chunks).arrayBuffer());
}

// parseManifest checks what the download relies on, by model.ParseManifest's rules (the engine checks the
// rest, the tensors, once the files are here): a LoadError "bad-manifest" names the first rule broken.
function parseManifest(text, url) {
  const bad = (msg) => new LoadError('bad-manifest', `${url}: ${msg}; nothing was downloaded.`);
  const L = MANIFEST_LIMITS;
  let m;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON (${err.message})`);
  }
  if (m?.format !== 'ilmweb' || m.version !== 1) {
    throw bad(`not an ilmweb version 1 manifest (format ${JSON.stringify(m?.format)}, version ${JSON.stringify(m?.version)})`);
  }
  const limits = { files: [L.maxFiles, L.maxFileBytes], shards: [L.maxShards, L.maxShardBytes] };
  for (const [list, [maxCount, maxBytes]] of Object.entries(limits)) {
    const entries = m[list];
    if (!Array.isArray(entries)) throw bad(`field "${list}" is missing`);
    if (entries.length > maxCount) throw bad(`field "${list}": ${entries.length} entries, over the limit of ${maxCount}`);
    const seen = new Set();
    entries.forEach((e, i) => {
      const what = `field "${list}": entry ${i} (${JSON.stringify(e?.name)?.slice(0, 80)})`;
      if (typeof e !== 'object' || e === null) throw bad(`${what} is not an object`);
      if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw bad(`${what}: sha256 is not 64 lowercase hex digits`);
      if (list === 'shards') {
        const want = `shard-${String(i).padStart(5, '0')}-${e.sha256.slice(0, 16)}.bin`;
        if (e.name !== want) throw bad(`${what}: want the name ${want}`);
      } else if (!isPlainName(e.name)) {
        throw bad(`${what} is not a plain file name`);
      }
      if (seen.has(e.name)) throw bad(`${what} is listed twice`);
      seen.add(e.name);
      if (!Number.isSafeInteger(e.bytes) || e.bytes < (list === 'shards' ? 1 : 0)) throw bad(`${what}: bad size ${JSON.stringify(e.bytes)}`);
      if (e.bytes > maxBytes) throw bad(`${what}: ${e.bytes} bytes, over the limit of ${maxBytes}`);
    });
  }
  const total = m.shards.reduce((n, e) => n + e.bytes, 0); // ≤ maxShards · maxShardBytes: exact in a double
  if (total > L.maxTotalBytes) throw bad(`field "shards": ${total} bytes in all, over the limit of ${L.maxTotalBytes}`);
  if (m.total_bytes !== total) throw bad(`field "total_bytes": ${JSON.stringify(m.total_bytes)}, but the shards add up to ${total}`);
  return m;
}

// isPlainName: a file name beside the manifest, as model.ParseManifest's checkFiles accepts it.
function isPlainName(name) {
  return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !/[/\\:]/.test(name) &&
    name !== 'manifest.json' && !name.startsWith('shard-');
}

// forgetReplaced deletes the stored entries an updated manifest no longer lists, so updates do not pile
// up old weights in the user's storage.
async function forgetReplaced(cache, old, current) {
  const keep = new Set([...current.files, ...current.shards].map((e) => e.sha256));
  for (const e of [...old.files, ...old.shards]) {
    if (!keep.has(e.sha256)) await cache.delete(blobKey(e.sha256));
  }
}

// blobKey is the Cache Storage key of the bytes with this sha256. Keys must be URLs; this one is never fetched.
function blobKey(sha256) {
  return new URL(`/.ilmweb-blob/sha256/${sha256}`, self.location.origin).href;
}

// checkQuotaTotal fails at once when the whole model is larger than the site's storage quota: nothing else
// needs to be looked at for that.
async function checkQuotaTotal(entries) {
  const total = entries.reduce((n, e) => n + e.bytes, 0);
  const { quota } = (await navigator.storage?.estimate?.()) ?? {};
  if (quota !== undefined && total > quota) {
    throw new LoadError('quota-exceeded',
      `Not enough storage for the model: it takes ${formatBytes(total)}, but this browser lets this site store at most ` +
      `${formatBytes(quota)}. Browsers size the quota from the free disk space: free some space (or leave private browsing), then retry.`);
  }
}

// checkQuota fails before anything is downloaded when the browser will not let the site store what is missing.
async function checkQuota(missing, progress) {
  const needed = missing.reduce((n, e) => n + e.bytes - progress.haveBytes(e), 0);
  if (needed === 0 || !navigator.storage?.estimate) return;
  const { quota, usage } = await navigator.storage.estimate();
  if (quota === undefined || usage === undefined) return;
  const available = Math.max(0, quota - usage);
  if (needed > available) {
    throw new LoadError('quota-exceeded',
      `Not enough storage for the model: ${formatBytes(needed)} more are needed, but this browser lets this site store only ` +
      `${formatBytes(available)} more (${formatBytes(usage)} used of ${formatBytes(quota)}). Browsers size the quota from the ` +
      `free disk space: free some space (or leave private browsing), then retry.`);
  }
}

// quotaError is what a write refused for lack of space becomes: the estimate said there was room, but
// browsers may grant less than they estimate.
function quotaError(e) {
  return new LoadError('quota-exceeded',
    `The browser refused to store ${e.name} (${formatBytes(e.bytes)}): the site's storage quota is used up. ` +
    `Free some disk space, then retry; what was already stored is kept.`);
}

// Store fetches entries into the cache and reads them back verified.
class Store {
  constructor(base, cache, progress) {
    Object.assign(this, { base, cache, progress });
  }

  // read returns the verified bytes of e, fetching it again if the stored copy is missing or corrupted.
  async read(e) {
    const res = await this.cache.match(blobKey(e.sha256));
    if (res) {
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.length === e.bytes && (await sha256Hex(bytes)) === e.sha256) return bytes;
      console.warn(`ilmweb: stored ${e.name} is corrupted; fetching it again`);
      await this.cache.delete(blobKey(e.sha256));
    }
    this.progress.have(e, 0, false);
    this.progress.phase('download');
    return this.fetchAndStore(e);
  }

  // fetchAndStore downloads e (resuming a partial download), verifies it and stores it. A hash mismatch
  // is retried once from scratch, since a partial left by an earlier session may be what is wrong;
  // a second mismatch means the server's file is not the one the manifest names.
  async fetchAndStore(e) {
    return withLock(`ilmweb-blob-${e.sha256}`, async () => {
      // Another tab may have finished this entry while we waited for the lock.
      const done = await this.cache.match(blobKey(e.sha256));
      if (done) {
        const bytes = new Uint8Array(await done.arrayBuffer());
        if ((await sha256Hex(bytes)) === e.sha256) {
          this.progress.have(e, e.bytes, true);
          return bytes;
        }
      }
      for (let attempt = 1; ; attempt++) {
        const partial = await Partial.open(e.sha256);
        let bytes;
        try {
          bytes = await this.download(e, partial);
        } finally {
          partial.close();
        }
        // bytes (at most MANIFEST_LIMITS.maxShardBytes) are held to be hashed, since WebCrypto has no
        // incremental sha256; the cache is filled from the OPFS file, which the browser streams from disk.
        const got = await sha256Hex(bytes);
        if (got === e.sha256) {
          await this.put(e, (await Partial.file(e.sha256)) ?? bytes);
          await Partial.remove(e.sha256);
          this.progress.have(e, e.bytes, true);
          return bytes;
        }
        await Partial.remove(e.sha256);
        this.progress.have(e, 0, false);
        if (attempt === 2) {
          throw new LoadError('hash-mismatch',
            `${e.name} failed its sha256 check twice and was not stored (expected ${e.sha256.slice(0, 16)}…, got ${got.slice(0, 16)}…): ` +
            `the file on the server does not match the model's manifest. Retry later, or tell whoever hosts the model.`);
        }
        console.warn(`ilmweb: ${e.name} failed its sha256 check; downloading it again from the start`);
      }
    });
  }

  async put(e, body) {
    try {
      await this.cache.put(blobKey(e.sha256), new Response(body, {
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(e.bytes) },
      }));
    } catch (err) {
      throw err?.name === 'QuotaExceededError' ? quotaError(e) : err;
    }
  }

  // download brings partial up to e.bytes and returns its contents. Each request asks for the bytes the
  // partial lacks; a 200 where a 206 was asked for means the server ignored the range, so it starts over.
  async download(e, partial) {
    const url = new URL(encodeURIComponent(e.name), this.base).href;
    let failures = 0;
    this.progress.have(e, partial.size, false);
    while (partial.size < e.bytes) {
      const from = partial.size;
      try {
        const res = await fetch(url, {
          headers: from > 0 ? { Range: `bytes=${from}-` } : {},
          cache: 'no-store', // Cache Storage keeps the bytes; the HTTP cache would keep a second copy
        });
        if (res.status === 206) {
          const start = Number(/^bytes (\d+)-/.exec(res.headers.get('Content-Range') ?? '')?.[1]);
          if (start !== from) {
            partial.truncate(0); // not the range we asked for: start over with the next request
            throw new RetryableError(`unexpected Content-Range ${res.headers.get('Content-Range')}`);
          }
        } else if (res.status === 200) {
          if (from > 0) partial.truncate(0);
        } else if (res.status === 416) {
          partial.truncate(0); // our partial is longer than the file: it is not this file
          throw new RetryableError('range not satisfiable');
        } else if ([408, 425, 429, 500, 502, 503, 504].includes(res.status)) {
          throw new RetryableError(`HTTP ${res.status}`);
        } else {
          throw new LoadError('download-failed', `Downloading ${e.name} failed: HTTP ${res.status} from ${url}.`);
        }
        this.progress.have(e, partial.size, false);
        const reader = res.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (partial.size + value.length > e.bytes) {
            partial.truncate(0);
            this.progress.have(e, 0, false);
            throw new RetryableError(`the server sent more than the ${e.bytes} bytes the manifest lists`);
          }
          partial.append(value);
          this.progress.add(e, value.length);
          failures = 0; // a connection that delivers is not failing, however often it drops
        }
        if (partial.size < e.bytes) throw new RetryableError('the connection closed early');
      } catch (err) {
        if (err instanceof LoadError) throw err;
        if (err?.name === 'QuotaExceededError') throw quotaError(e);
        if (++failures >= MAX_TRIES) {
          throw new LoadError('download-failed',
            `Downloading ${e.name} failed after ${MAX_TRIES} tries (${err.message}). ${formatBytes(partial.size)} of ` +
            `${formatBytes(e.bytes)} are kept: retry to resume from there.`);
        }
        this.progress.stalled(`${err.message}; retrying`);
        await sleep(Math.min(500 * 2 ** (failures - 1), 8000));
      }
    }
    partial.flush();
    return partial.readAll();
  }
}

// Partial is a download in progress: an OPFS file written through a synchronous access handle (only
// dedicated workers have those), or memory where OPFS is not available (some private modes): then a
// closed tab restarts the shard, but a dropped connection still resumes.
class Partial {
  static async open(sha256) {
    const dir = await partialDir();
    if (!dir) return new MemoryPartial();
    const file = await dir.getFileHandle(sha256, { create: true });
    // A worker of a tab that was just closed may still hold the handle for a moment.
    for (let i = 0; ; i++) {
      try {
        return new OpfsPartial(await file.createSyncAccessHandle());
      } catch (err) {
        if (err?.name !== 'NoModificationAllowedError' || i === 50) throw err;
        await sleep(100);
      }
    }
  }

  // file is the finished download as a File (read from disk when used), or null without OPFS.
  static async file(sha256) {
    const dir = await partialDir();
    return dir ? (await dir.getFileHandle(sha256)).getFile() : null;
  }

  static async remove(sha256) {
    const dir = await partialDir();
    await dir?.removeEntry(sha256).catch(() => {});
  }
}

class OpfsPartial {
  #h;
  #unflushed = 0;
  constructor(handle) {
    this.#h = handle;
  }
  get size() {
    return this.#h.getSize();
  }
  append(chunk) {
    this.#h.write(chunk, { at: this.#h.getSize() });
    // Flushing now and then bounds what a browser crash can lose; a closed tab loses nothing written.
    if ((this.#unflushed += chunk.length) >= 8 << 20) this.flush();
  }
  truncate(n) {
    this.#h.truncate(n);
  }
  flush() {
    this.#h.flush();
    this.#unflushed = 0;
  }
  readAll() {
    const buf = new Uint8Array(this.#h.getSize());
    this.#h.read(buf, { at: 0 });
    return buf;
  }
  close() {
    this.#h.close();
  }
}

class MemoryPartial {
  #chunks = [];
  size = 0;
  append(chunk) {
    this.#chunks.push(chunk);
    this.size += chunk.length;
  }
  truncate(n) {
    if (n !== 0) throw new Error('MemoryPartial truncates only to 0');
    this.#chunks = [];
    this.size = 0;
  }
  flush() {}
  readAll() {
    const buf = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.#chunks) {
      buf.set(c, at);
      at += c.length;
    }
    return buf;
  }
  close() {}
}

let partialDirPromise;
function partialDir() {
  partialDirPromise ??= (async () => {
    try {
      const root = await navigator.storage.getDirectory();
      const dir = await root.getDirectoryHandle(PARTIAL_DIR, { create: true });
      // Probe for sync access handles: some browsers have OPFS without them in this context.
      const probe = await dir.getFileHandle('.probe', { create: true });
      if (typeof probe.createSyncAccessHandle !== 'function') return null;
      return dir;
    } catch {
      return null;
    }
  })();
  return partialDirPromise;
}

async function partialSize(e) {
  const dir = await partialDir();
  if (!dir) return 0;
  try {
    return (await (await dir.getFileHandle(e.sha256)).getFile()).size;
  } catch {
    return 0;
  }
}

// withLock serializes work on one entry across tabs, so two open tabs never download the same shard twice.
function withLock(name, fn) {
  return navigator.locks ? navigator.locks.request(name, fn) : fn();
}

// pool runs fn over items with at most n in flight; the first failure stops new work and is thrown once
// the work in flight has settled (so no download keeps writing after the error is reported).
async function pool(items, n, fn) {
  let next = 0;
  let failure;
  const worker = async () => {
    while (next < items.length && !failure) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failure) throw failure;
}

// Progress turns per-entry byte counts into the overall events the page shows: bytes, rate, ETA and
// which shard is moving, at most every PROGRESS_EVERY_MS.
export class Progress {
  #emit;
  #bytes = new Map(); // entry → bytes present
  #complete = new Set();
  #phase = 'verify';
  #shard = '';
  #samples = []; // [time, downloaded bytes] over the last seconds, for the rate
  #downloaded = 0;
  #lastEmit = 0;
  #note = '';
  #shardSet;
  total;

  constructor(emit, entries, shardCount) {
    this.#emit = emit;
    this.total = entries.reduce((n, e) => n + e.bytes, 0);
    this.#shardSet = new Set(entries.slice(entries.length - shardCount));
  }

  phase(p) {
    this.#phase = p;
    this.#samples = [];
    this.#emitNow();
  }

  haveBytes(e) {
    return this.#bytes.get(e) ?? 0;
  }

  have(e, bytes, complete) {
    this.#bytes.set(e, bytes);
    if (complete) this.#complete.add(e);
    else this.#complete.delete(e);
    this.#maybeEmit();
  }

  add(e, n) {
    this.#bytes.set(e, this.haveBytes(e) + n);
    this.#downloaded += n;
    this.#shard = e.name;
    this.#note = '';
    this.#maybeEmit();
  }

  stalled(note) {
    this.#note = note;
    this.#emitNow();
  }

  done() {
    this.#emitNow();
  }

  #maybeEmit() {
    if (performance.now() - this.#lastEmit >= PROGRESS_EVERY_MS) this.#emitNow();
  }

  #emitNow() {
    const now = performance.now();
    this.#lastEmit = now;
    let loaded = 0;
    for (const n of this.#bytes.values()) loaded += n;
    // The rate over the last 5 seconds follows changes in the link quickly without jumping on every chunk.
    this.#samples.push([now, this.#downloaded]);
    while (this.#samples.length > 2 && now - this.#samples[0][0] > 5000) this.#samples.shift();
    const [t0, b0] = this.#samples[0];
    const rate = now - t0 >= 500 ? ((this.#downloaded - b0) * 1000) / (now - t0) : 0;
    const left = this.total - loaded;
    let shardsDone = 0;
    for (const e of this.#complete) if (this.#shardSet.has(e)) shardsDone++;
    this.#emit({
      phase: this.#phase,
      loaded,
      total: this.total,
      bytesPerSecond: rate,
      etaSeconds: rate > 0 ? left / rate : null,
      shard: this.#shard,
      shardsDone,
      shardsTotal: this.#shardSet.size,
      note: this.#note,
    });
  }
}

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[i]}`;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
