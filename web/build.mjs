// Builds the static site: node web/build.mjs NODE_MODULES OUT
//
// `make web` runs it after `npm ci` (into a build directory, from web/package-lock.json) and after putting
// engine.wasm and wasm_exec.js into OUT. It copies the page from web/, vendors the few library files the
// page imports (no CDN at run time), and stamps sw.js with the files to precache and a version made from
// their contents, so every change to the app yields a new service worker that replaces the old shell.
// There is no bundling or transpiling: what is in web/ is what the browser runs.

import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const [nodeModules, out] = process.argv.slice(2);
if (!nodeModules || !out) {
  console.error('usage: node web/build.mjs NODE_MODULES OUT');
  process.exit(2);
}
const web = dirname(fileURLToPath(import.meta.url));

// The site's own files: everything in web/ the browser loads, and nothing of the build's.
const SITE = /\.(html|js|css|webmanifest|png)$/;
for (const file of walk(web)) {
  const rel = relative(web, file);
  if (SITE.test(rel) && !rel.startsWith('node_modules')) copy(file, join(out, rel));
}

// Vendored libraries: [file in node_modules, path in the site]. Source-map comments are dropped, since
// the maps are not shipped.
const VENDOR = [
  ['marked/lib/marked.esm.js', 'vendor/marked.esm.js'],
  ['marked/LICENSE', 'vendor/licenses/marked.txt'],
  ['dompurify/dist/purify.es.mjs', 'vendor/purify.es.mjs'],
  ['dompurify/LICENSE', 'vendor/licenses/dompurify.txt'],
  ['katex/dist/katex.mjs', 'vendor/katex.mjs'],
  ['katex/dist/katex.min.css', 'vendor/katex/katex.min.css'],
  ['katex/LICENSE', 'vendor/licenses/katex.txt'],
];
for (const [from, to] of VENDOR) {
  const src = join(nodeModules, from);
  const dst = join(out, to);
  mkdirSync(dirname(dst), { recursive: true });
  writeFileSync(dst, readFileSync(src, 'utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n'));
}
// KaTeX's fonts: woff2 only, which every browser with WebGPU reads (the CSS lists it first).
const fonts = join(nodeModules, 'katex/dist/fonts');
for (const f of readdirSync(fonts).filter((f) => f.endsWith('.woff2'))) {
  copy(join(fonts, f), join(out, 'vendor/katex/fonts', f));
}

// The shell: every file of the site but the service worker itself, with a version hashed from all of them.
const shell = walk(out)
  .map((f) => relative(out, f).split(sep).join('/'))
  .filter((f) => f !== 'sw.js' && !f.startsWith('vendor/licenses/'))
  .sort();
const hash = createHash('sha256');
for (const f of shell) hash.update(f).update('\0').update(readFileSync(join(out, f))).update('\0');
const version = hash.digest('hex').slice(0, 16);
const sw = join(out, 'sw.js');
const stamped = readFileSync(sw, 'utf8')
  .replace(/^const VERSION = .*$/m, `const VERSION = '${version}';`)
  .replace(/^const SHELL = .*$/m, `const SHELL = ${JSON.stringify(shell)};`);
if (!stamped.includes(version)) throw new Error('sw.js: no VERSION line to stamp');
writeFileSync(sw, stamped);
if (!shell.includes('engine.wasm')) console.warn('build.mjs: no engine.wasm in the site: the page will not find an engine');
console.log(`built ${out}: ${shell.length} files in the shell, version ${version}`);

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

function copy(from, to) {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
}
