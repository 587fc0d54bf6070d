// Model output → safe HTML: Markdown (marked) with math (KaTeX), then sanitized (DOMPurify).
//
// Model output is text, never markup: HTML the model writes (`<img onerror=…>`, `<script>`) is escaped and
// shown as the characters it is. DOMPurify then cleans the whole result as a second line of defence, and the
// page's Content-Security-Policy forbids inline scripts as a third.

import { Marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.mjs';
import katex from './vendor/katex.mjs';

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const tex = (source, displayMode) => katex.renderToString(source, {
  displayMode,
  throwOnError: false, // a formula still being streamed, or a wrong one, shows as red source text
  trust: false, // no \href, \url, \htmlClass…
  strict: 'ignore',
  output: 'htmlAndMathml', // MathML for screen readers
});

// Math delimiters: $$…$$ and \[…\] for display, \(…\) and $…$ inline. A lone $ is money, not math:
// inline $…$ needs no space inside the delimiters and no digit right after the closing one. A bare
// \boxed{…} (how deep-thinking answers end) is typeset too.
const mathExtensions = [
  {
    name: 'displayMath',
    level: 'block',
    start: (src) => src.match(/\$\$|\\\[/)?.index,
    tokenizer(src) {
      const m = /^(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[ \t]*(?:\n|$)/.exec(src);
      if (m) return { type: 'displayMath', raw: m[0], text: (m[1] ?? m[2]).trim() };
    },
    renderer: (token) => `<div class="math-display">${tex(token.text, true)}</div>\n`,
  },
  {
    name: 'inlineMath',
    level: 'inline',
    start: (src) => src.match(/\$|\\\(|\\\[|\\boxed\{/)?.index,
    tokenizer(src) {
      const b = /^\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}/.exec(src);
      if (b) return { type: 'inlineMath', raw: b[0], text: b[0], display: false };
      const m = /^\$\$([\s\S]+?)\$\$|^\\\[([\s\S]+?)\\\]/.exec(src);
      if (m) return { type: 'inlineMath', raw: m[0], text: (m[1] ?? m[2]).trim(), display: true };
      const i = /^\\\(([\s\S]+?)\\\)|^\$(?![\s$])((?:\\\$|[^$\n])+?)(?<!\s)\$(?!\d)/.exec(src);
      if (i) return { type: 'inlineMath', raw: i[0], text: i[1] ?? i[2], display: false };
    },
    renderer: (token) => tex(token.text, token.display),
  },
];

const marked = new Marked({
  gfm: true,
  breaks: false,
  extensions: mathExtensions,
  renderer: {
    // Raw HTML in the model's output, block or inline, is shown as text.
    html: (token) => escapeHtml(token.text),
  },
});

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

// renderMarkdown returns sanitized HTML for the model's text.
export function renderMarkdown(text) {
  const html = marked.parse(text);
  return DOMPurify.sanitize(html, {
    USE_PROFILES: { html: true, mathMl: true },
    ADD_ATTR: ['target'],
    FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select'],
  });
}
