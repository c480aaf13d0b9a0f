#!/usr/bin/env node
// Browser upload vs `hoist put`: the same file into the same embedded store, alternating.
//
// What it does, for each run (browser and put alternate, after one warm-up of each):
//   1. starts `hoist serve --dev` on 127.0.0.1:0 with a fresh data directory on tmpfs (so every
//      run meets an empty store, and no run's objects pile up in memory),
//   2. browser: opens the service's page in headless Chromium, picks the file through a file
//      input (Chromium reads it from disk, as a file a person picked), and runs
//        new HoistUpload(file, { endpoint, token, concurrency, checksum }).start()
//      timed inside the page from start() to its result (fingerprint, create, checksums, signing,
//      part PUTs, complete);
//   3. put: `hoist put FILE s3://hoist/bench.bin --endpoint-url STORE` with the store's own
//      credentials (DATA/store/credentials.json), timed as the process's wall time;
//   4. stops the service and deletes its data.
// Then prints per tool the median seconds and MiB/s, and browser ÷ put (the issue's target is
// ≥ 50 %). Each run's figures also go to bench/results/browser_vs_put-*.json.
//
// Browser variants: --concurrency and --checksum take comma-separated lists and --module may be
// given more than once (each a copy of hoist-upload.js); every combination is a variant of its
// own, measured in turn with put in every run, so that before/after comparisons share the
// machine's load.
//
// The page is the binary's, but hoist-upload.js is this checkout's web/hoist-upload.js (or --module; served
// from disk while the page loads, so a binary built before the module last changed still
// measures the module as it is now; the part PUTs themselves are never intercepted).
//
// Needs: a release build (cargo build --release -p hoist-cli), Chromium (Debian: apt-get install
// chromium), and `cd web && npm ci` (playwright-core).
//
// Usage: node bench/browser_vs_put.mjs [--size-mib 1024] [--runs 3] [--hoist target/release/hoist]
//          [--chromium /usr/bin/chromium] [--concurrency 4[,6]] [--checksum crc32c|sha256|none[,…]]
//          [--module web/hoist-upload.js [--module OTHER.js]]
//          [--part-size 16MiB] [--only browser,put] [--tmp /dev/shm]
//          [--store-bin HOIST --put-bin HOIST]
// --store-bin: run that binary's `hoist store` (CORS open, its bucket made with boto3) and start
// the service with --s3-endpoint pointing at it, so that the service (which only signs) can be
// a debug build while the bytes go to a release store; --put-bin: the binary for `hoist put`.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { waitForServe } from '../web/test/serve-output.mjs';
import { launchChromium, median, MiB, writeRandomFile } from './browser_common.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const { values: opt } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    runs: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    hoist: { type: 'string', default: join(ROOT, 'target', 'release', 'hoist') },
    chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    concurrency: { type: 'string', default: '4' },
    checksum: { type: 'string', default: 'crc32c' },
    module: { type: 'string', multiple: true, default: [join(ROOT, 'web', 'hoist-upload.js')] },
    'part-size': { type: 'string' },
    only: { type: 'string', default: 'browser,put' },
    'store-bin': { type: 'string' },
    'put-bin': { type: 'string' },
    tmp: { type: 'string', default: existsSync('/dev/shm') ? '/dev/shm' : '/tmp' },
  },
});
const size = Number(opt['size-mib']) * MiB;
const runs = Number(opt.runs);
const tools = opt.only.split(',');
/** The browser variants: every combination of module, concurrency and checksum. */
const variants = opt.module.flatMap((module) => opt.concurrency.split(',').flatMap((concurrency) =>
  opt.checksum.split(',').map((checksum) => ({
    name: ['browser', opt.module.length > 1 ? module : '', `c${concurrency}`, checksum].filter(Boolean).join(' '),
    module, concurrency: Number(concurrency), checksum: checksum === 'none' ? null : checksum,
  }))));
const putBin = opt['put-bin'] ?? opt.hoist;
for (const [what, path] of [['hoist binary', opt.hoist], ['Chromium', opt.chromium], ['hoist for put', putBin], ...(opt['store-bin'] ? [['hoist for the store', opt['store-bin']]] : []), ...opt.module.map((m) => ['module', m])]) {
  if (!existsSync(path)) { console.error(`${what} not found at ${path}`); process.exit(2); }
}
const require = createRequire(join(ROOT, 'web', 'package.json'));
const { chromium } = require('playwright-core');

const work = mkdtempSync(join(opt.tmp, 'hoist-bvp-'));
const file = join(work, 'bench.bin');

/** Lines of a child's output until `want` (a map name → regexp) all matched; resolves with them. */
function waitFor(proc, what, want) {
  const found = {};
  const seen = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not ready in 30 s:\n${seen.join('\n')}`)), 30_000);
    proc.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${seen.join('\n')}`)));
    for (const stream of [proc.stdout, proc.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        seen.push(line);
        for (const [name, re] of Object.entries(want)) found[name] ??= re.exec(line)?.[1];
        if (Object.keys(want).every((k) => found[k])) { clearTimeout(timer); resolve(found); }
      });
    }
  });
}

const STORE_KEYS = { access_key: 'hoistbench', secret_key: 'hoistbench-secret-key-0123456789' };

/**
 * With --store-bin: `hoist store` of that binary (CORS open, fixed keys) and its bucket, for
 * `hoist serve --s3-endpoint` to sign for. The service only signs; the bytes go to this store.
 */
async function startStore(data) {
  const proc = spawn(opt['store-bin'], ['store', '--data', join(data, 'store'), '--listen', '127.0.0.1:0', '--cors-origin', '*'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOIST_STORE_ACCESS_KEY: STORE_KEYS.access_key, HOIST_STORE_SECRET_KEY: STORE_KEYS.secret_key },
  });
  const { endpoint } = await waitFor(proc, 'hoist store', { endpoint: /listening on (http:\/\/\S+)/ });
  const mb = spawnSync('python3', ['-c', 'import sys, boto3; boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3]).create_bucket(Bucket="hoist")', endpoint, STORE_KEYS.access_key, STORE_KEYS.secret_key], { encoding: 'utf8' });
  if (mb.status !== 0) throw new Error(`creating the bucket (needs pip install boto3): ${mb.stderr}`);
  return { proc, endpoint };
}

/** Starts `hoist serve --dev` with a fresh data dir; resolves with its addresses and secrets. */
async function startService() {
  const data = mkdtempSync(join(work, 'data-'));
  const args = ['serve', '--dev', '--listen', '127.0.0.1:0', '--data', data];
  if (opt['part-size']) args.push('--part-size', opt['part-size']);
  let external = null;
  const env = { ...process.env };
  if (opt['store-bin']) {
    external = await startStore(data);
    args.push('--s3-endpoint', external.endpoint);
    Object.assign(env, { AWS_ACCESS_KEY_ID: STORE_KEYS.access_key, AWS_SECRET_ACCESS_KEY: STORE_KEYS.secret_key, AWS_REGION: 'us-east-1' });
  }
  const proc = spawn(opt.hoist, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const srv = { proc, data, origin: null, store: external?.endpoint ?? null, token: null, external };
  const ready = await waitForServe(proc, { needStore: !external, timeoutMs: 30_000 });
  Object.assign(srv, { origin: ready.origin, token: ready.token, store: srv.store ?? ready.store });
  return srv;
}

async function stopService(srv) {
  const exited = new Promise((r) => srv.proc.once('exit', r));
  srv.proc.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (srv.external) {
    const gone = new Promise((r) => srv.external.proc.once('exit', r));
    srv.external.proc.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
  }
  rmSync(srv.data, { recursive: true, force: true });
}

let browser;

/** One upload through a variant's hoist-upload.js in Chromium; returns seconds (timed in the page). */
async function runBrowser(srv, variant) {
  const page = await browser.newPage();
  const module = readFileSync(variant.module);
  const match = (url) => url.origin === srv.origin && url.pathname === '/hoist-upload.js';
  const fulfil = (route) => route.fulfill({ status: 200, headers: { 'content-type': 'text/javascript' }, body: module });
  await page.route(match, fulfil);
  await page.goto(srv.origin);
  await page.unroute(match, fulfil); // no interception of the part PUTs
  await page.evaluate(() => {
    const input = Object.assign(document.createElement('input'), { type: 'file', id: 'bench-file', hidden: true });
    document.body.append(input);
  });
  await page.setInputFiles('#bench-file', file);
  const out = await page.evaluate(async ({ token, concurrency, checksum }) => {
    const { HoistUpload } = await import('/hoist-upload.js');
    const picked = document.querySelector('#bench-file').files[0];
    const up = new HoistUpload(picked, { endpoint: location.origin, token, concurrency, checksum, store: null });
    const t0 = performance.now();
    const result = await up.start();
    return { seconds: (performance.now() - t0) / 1000, size: result.size };
  }, { token: srv.token, concurrency: variant.concurrency, checksum: variant.checksum });
  await page.close();
  if (out.size !== size) throw new Error(`browser upload stored ${out.size} bytes, not ${size}`);
  return out.seconds;
}

/** One `hoist put` of the file into the service's store; returns wall seconds. */
function runPut(srv) {
  const { access_key, secret_key } = srv.external ? STORE_KEYS : JSON.parse(readFileSync(join(srv.data, 'store', 'credentials.json'), 'utf8'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_')));
  Object.assign(env, { AWS_ACCESS_KEY_ID: access_key, AWS_SECRET_ACCESS_KEY: secret_key, HOIST_STATE_DIR: join(srv.data, 'state') });
  const t0 = performance.now();
  const res = spawnSync(putBin, ['put', file, 's3://hoist/bench.bin', '--endpoint-url', srv.store], { env, encoding: 'utf8' });
  const seconds = (performance.now() - t0) / 1000;
  if (res.status !== 0) throw new Error(`hoist put exited ${res.status}: ${res.stderr}`);
  return seconds;
}

const mibs = (seconds) => size / MiB / seconds;

try {
  writeRandomFile(file, size);
  browser = await launchChromium(chromium, opt.chromium);
  /** What each run measures, in turn: a name and a function of the service giving seconds. */
  const entries = tools.flatMap((tool) => (tool === 'browser'
    ? variants.map((v) => ({ name: v.name, run: (srv) => runBrowser(srv, v) }))
    : [{ name: tool, run: runPut }]));
  const results = Object.fromEntries(entries.map((e) => [e.name, []]));
  const warmup = Number(opt.warmup);
  console.log(`${size / MiB} MiB file in ${work}; serve: ${opt.hoist}; store: ${opt['store-bin'] ?? 'embedded in serve'}; put: ${putBin}; Chromium ${browser.version()}; browser: ${variants.map((v) => v.name).join('; ')}${opt['part-size'] ? `, part size ${opt['part-size']}` : ''}; ${warmup} warm-up + ${runs} runs each, alternating`);
  for (let i = -warmup; i < runs; i++) {
    for (const { name, run } of entries) {
      const srv = await startService();
      try {
        const seconds = await run(srv);
        console.log(`${i < 0 ? 'warm-up' : `run ${i + 1}`}  ${name.padEnd(7)} ${seconds.toFixed(2)} s  ${mibs(seconds).toFixed(0)} MiB/s`);
        if (i >= 0) results[name].push(seconds);
      } finally {
        await stopService(srv);
      }
    }
  }
  const put = results.put ? median(results.put) : null;
  console.log('\n| tool | median s | MiB/s | ÷ put | runs (s) |\n| --- | ---: | ---: | ---: | --- |');
  for (const [name, seconds] of Object.entries(results)) {
    const m = median(seconds);
    const ratio = put && name !== 'put' ? `${(100 * put / m).toFixed(0)} %` : '';
    console.log(`| ${name} | ${m.toFixed(2)} | ${mibs(m).toFixed(0)} | ${ratio} | ${seconds.map((s) => s.toFixed(2)).join(', ')} |`);
  }
  if (put && tools.includes('browser')) console.log('\n÷ put: browser throughput over hoist put\'s, medians (target ≥ 50 %)');
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  const out = join(ROOT, 'bench', 'results', `browser_vs_put-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), options: opt, sizeBytes: size, seconds: results }, null, 2));
  console.log(`results: ${out}`);
} finally {
  await browser?.close();
  rmSync(work, { recursive: true, force: true });
}
