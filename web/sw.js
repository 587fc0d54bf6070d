// The service worker: keeps the app shell (page, scripts, styles, engine.wasm, vendored libraries) so the
// app opens and chats with the network off. The model's shards are not its business: the engine's worker
// keeps them in Cache Storage itself (download.js), and requests for them pass through untouched.
//
// build.mjs stamps VERSION and SHELL. A new build has a new VERSION, so the browser installs the new
// worker beside the old one; the page offers a reload, and the new worker then drops the old shell.

const VERSION = 'dev';
const SHELL = [];
const CACHE = `ilmweb-shell-${VERSION}`;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith('ilmweb-shell-') && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data === 'skip-waiting') self.skipWaiting();
});

const scope = new URL(self.registration.scope);
const shell = new Set(SHELL.map((f) => new URL(f, scope).pathname));

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== scope.origin) return;
  // The scope's root is the page, whatever its query (?backend=…, ?model=…).
  const path = url.pathname === scope.pathname ? `${scope.pathname}index.html` : url.pathname;
  if (!shell.has(path)) return;
  event.respondWith((async () => {
    const cached = await caches.match(path, { cacheName: CACHE });
    return cached ?? fetch(req);
  })());
});
