#!/usr/bin/env node
// How fast headless Chromium sends part bodies of a picked file, with no store and no service:
// the parts of a random file are PUT by XMLHttpRequest (or fetch) to a Node server on 127.0.0.1
// that reads and discards them. It separates the browser's own upload path from everything
// hoist-upload.js and the store do.
//
// Body kinds (each variant is KIND:CONCURRENCY; all alternate, after one warm-up round):
//   blob      the part's Blob slice of the picked File (what hoist-upload.js sends)
//   blobcrc   the same, after reading the slice in 8 MiB chunks and computing its CRC32C with
//             this checkout's web/hoist-upload.js (what the module's checksum pass adds, but
//             in every worker rather than one at a time)
//   bytes     the slice read into a Uint8Array, sent by XHR
//   fetch     the same Uint8Array, sent by fetch
//   memblob   a new Blob made of the read bytes, sent by XHR
// Prints MiB/s per run and the median per variant.
//
// Usage: node bench/browser_body_sink.mjs [--size-mib 1024] [--part-mib 16] [--runs 3]
//          [--variants blob:4,bytes:4,blob:6,memblob:4,blobcrc:4] [--chromium /usr/bin/chromium]
//          [--tmp /dev/shm]
// Needs Chromium (Debian: apt-get install chromium) and `cd web && npm ci` (playwright-core).

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { launchChromium, median, MiB, writeRandomFile } from './browser_common.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: opt } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'part-mib': { type: 'string', default: '16' },
    runs: { type: 'string', default: '3' },
    variants: { type: 'string', default: 'blob:4,bytes:4,blob:6,memblob:4,blobcrc:4' },
    chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    tmp: { type: 'string', default: existsSync('/dev/shm') ? '/dev/shm' : '/tmp' },
  },
});
const size = Number(opt['size-mib']) * MiB;
const variants = opt.variants.split(',');
const { chromium } = createRequire(join(ROOT, 'web', 'package.json'))('playwright-core');

const work = mkdtempSync(join(opt.tmp, 'hoist-sink-'));
const file = join(work, 'bench.bin');
writeRandomFile(file, size);

const module = readFileSync(join(ROOT, 'web', 'hoist-upload.js'));
const server = createServer((req, res) => {
  if (req.method === 'PUT') {
    req.resume().on('end', () => { res.writeHead(200, { etag: '"sink"' }); res.end(); });
  } else if (req.url === '/hoist-upload.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(module);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><input type="file" id="file">');
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

const browser = await launchChromium(chromium, opt.chromium);
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.setInputFiles('#file', file);
  console.log(`${size / MiB} MiB file, ${opt['part-mib']} MiB parts, Chromium ${browser.version()}`);
  const results = Object.fromEntries(variants.map((v) => [v, []]));
  for (let run = 0; run <= Number(opt.runs); run++) {
    for (const variant of variants) {
      const [kind, concurrency] = variant.split(':');
      const seconds = await page.evaluate(async ({ kind, concurrency, partSize }) => {
        const { crc32c } = await import('/hoist-upload.js');
        const picked = document.querySelector('#file').files[0];
        const xhr = (body) => new Promise((resolve, reject) => {
          const x = new XMLHttpRequest();
          x.open('PUT', '/part');
          x.onload = resolve;
          x.onerror = reject;
          x.send(body);
        });
        const bytes = async (blob) => new Uint8Array(await blob.arrayBuffer());
        const send = {
          blob: (slice) => xhr(slice),
          async blobcrc(slice) {
            for (let at = 0; at < slice.size; at += 8 * 1024 * 1024) {
              crc32c(await bytes(slice.slice(at, at + 8 * 1024 * 1024)));
            }
            await xhr(slice);
          },
          bytes: async (slice) => xhr(await bytes(slice)),
          fetch: async (slice) => (await fetch('/part', { method: 'PUT', body: await bytes(slice) })).arrayBuffer(),
          memblob: async (slice) => xhr(new Blob([await bytes(slice)])),
        }[kind];
        let next = 0;
        const t0 = performance.now();
        await Promise.all(Array.from({ length: concurrency }, async () => {
          for (let at = next * partSize; at < picked.size; at = next * partSize) {
            next += 1;
            await send(picked.slice(at, at + partSize));
          }
        }));
        return (performance.now() - t0) / 1000;
      }, { kind, concurrency: Number(concurrency), partSize: Number(opt['part-mib']) * MiB });
      console.log(`${run === 0 ? 'warm-up' : `run ${run}`}  ${variant.padEnd(10)} ${(size / MiB / seconds).toFixed(0)} MiB/s`);
      if (run > 0) results[variant].push(size / MiB / seconds);
    }
  }
  console.log('\n| variant | median MiB/s | runs |\n| --- | ---: | --- |');
  for (const [variant, xs] of Object.entries(results)) {
    console.log(`| ${variant} | ${median(xs).toFixed(0)} | ${xs.map((x) => x.toFixed(0)).join(', ')} |`);
  }
} finally {
  await browser.close();
  server.close();
  rmSync(work, { recursive: true, force: true });
}
