// Conversations kept in IndexedDB, so history survives reloads, engine restarts and going offline.
// A conversation is {id, title, created, updated, messages: [{role, content, stats?}]}.

const DB = 'ilmweb';
const STORE = 'conversations';

let dbPromise;
function db() {
  dbPromise ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'id' }).createIndex('updated', 'updated');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return dbPromise;
}

async function run(mode, fn) {
  const tx = (await db()).transaction(STORE, mode);
  const req = fn(tx.objectStore(STORE));
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

// listConversations returns every conversation, the most recently updated first.
export async function listConversations() {
  const all = await run('readonly', (s) => s.index('updated').getAll());
  return all.reverse();
}

export function saveConversation(c) {
  return run('readwrite', (s) => s.put(c));
}

export function deleteConversation(id) {
  return run('readwrite', (s) => s.delete(id));
}
