// Check Mermaid text with mermaid's own parser: `node parse.mjs [file ...]` (stdin without files).
// Exits 0 when mermaid accepts every text, 1 with the parse errors otherwise.
// A ```mermaid fenced block (as in a README) is checked as the diagram inside the fence.
//
// mermaid sanitizes labels with DOMPurify while it parses, and DOMPurify binds to `window`
// when it is first imported, so a jsdom window must be global before mermaid is imported.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const { window } = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = window;
globalThis.document = window.document;

const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false, logLevel: 'fatal' });

const sources = process.argv.length > 2 ? process.argv.slice(2) : [0]; // 0: stdin
let failed = false;
for (const source of sources) {
  let text = readFileSync(source, 'utf8');
  const fenced = /^\s*```mermaid[^\n]*\n([\s\S]*?)\n```\s*$/.exec(text);
  if (fenced) {
    text = fenced[1];
  }
  try {
    await mermaid.parse(text);
  } catch (error) {
    failed = true;
    const name = source === 0 ? '<stdin>' : source;
    console.error(`${name}: mermaid parse error: ${error?.message ?? error}`);
  }
}
process.exit(failed ? 1 : 0);
