// Baseline for the page_to_markdown benchmark: converts the given HTML files to Markdown with
// turndown, `rounds` times after one warm-up round, and prints the pages per second it reached.
// Usage: node convert.js ROUNDS FILE...
'use strict';
const fs = require('fs');
const TurndownService = require('turndown');

const rounds = Number(process.argv[2] || 3);
const pages = process.argv.slice(3).map((f) => fs.readFileSync(f, 'utf8'));
const service = new TurndownService({ headingStyle: 'atx', codeBlockStyle: 'fenced' });
service.remove(['script', 'style', 'noscript']);

let bytes = 0;
for (const html of pages) bytes += service.turndown(html).length; // warm-up
const start = process.hrtime.bigint();
for (let r = 0; r < rounds; r++) {
  for (const html of pages) bytes += service.turndown(html).length;
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({ pages: pages.length * rounds, seconds, pagesPerSecond: (pages.length * rounds) / seconds, bytes }));
