// End-to-end: the page and hoist-upload.js in real headless Chromium against `hoist serve --dev`
// (service and embedded store on ephemeral ports), driven by playwright-core.
//
//   npm run test:e2e                 # needs ../target/debug/hoist (cargo build -p hoist-cli)
//   HOIST_BIN=/path/to/hoist npm run test:e2e
//   HOIST_E2E_FAKE=1 npm run test:e2e   # against test/fake-server.mjs instead (no Rust build)
//   CHROMIUM=/path/to/chromium       # default /usr/bin/chromium (Debian: apt-get install chromium)
//
// Without the binary, a binary without `serve`, or Chromium, it says so and exits 0: skipped,
// not passed.
//
// What it checks, all through the page unless said otherwise: a generated file uploads and the
// stored object is byte-identical (its multipart ETag, MD5 of the parts' MD5s, and its size
// equal what we compute from the file; the service offers no download); pause stops new part
// PUTs and resume finishes; a reload mid-upload and the same file picked again completes without
// re-sending the parts already stored (PUTs counted from the browser's own requests), and one
// can be discarded instead; a second tab cannot upload the same file at the same time; a part PUT
// that fails (connection reset injected) is retried; a part URL answered with 403 "Request has
// expired" is signed again and retried; cancel leaves the upload aborted, and the store itself
// (asked with `hoist uploads ls` and its own credentials) holds no multipart upload for it; with
// a second service whose part URLs live 2 s (--part-url-ttl), an upload paused until its URLs
// expired re-signs and completes against the real store; the module imported directly as in its
// documentation; screenshots at 360, 800 and 1280 px in test/screenshots/.
//
// The browser files under test are web/'s: when the binary embeds older copies (built before they
// changed), app.js, hoist-upload.js and style.css come from web/ while a page loads, and a line
// says so (index.html must match: rebuild if it changed).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForServe } from './serve-output.mjs';

const WEB = fileURLToPath(new URL('..', import.meta.url));
const FAKE = process.env.HOIST_E2E_FAKE === '1';
const BIN = process.env.HOIST_BIN ?? join(WEB, '..', 'target', 'debug', 'hoist');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = join(WEB, 'test', 'screenshots');
const MiB = 1024 * 1024;

/** Why the test cannot run here, or null. */
function missing() {
  if (!FAKE && !existsSync(BIN)) return `the hoist binary is not at ${BIN} (build it with cargo build -p hoist-cli, or set HOIST_BIN)`;
  if (!FAKE && spawnSync(BIN, ['serve', '--help']).status !== 0) return `${BIN} has no serve command yet (the service, issue 5)`;
  if (!existsSync(CHROMIUM)) return `Chromium is not at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM)`;
  return null;
}
const why = missing();
if (why) {
  console.log(`# e2e SKIPPED: ${why}`);
  process.exit(0);
}
const { chromium } = await import('playwright-core');

// --- the server --------------------------------------------------------------------------------

const tmp = mkdtempSync(join(tmpdir(), 'hoist-e2e-'));
/** The services this run started (killed at the end). */
const servers = [];
/** The service most tests use. @type {Server} */
let main;
let origin;
let token;
let context;

/**
 * A running `hoist serve --dev` (or the fake): its page origin, dev token, and (real service
 * only) the embedded store's endpoint and data directory.
 * @typedef {{ proc: import('node:child_process').ChildProcess, origin: string, token: string, store: string | null, data: string }} Server
 */

/**
 * Starts a service with a data directory of its own and waits for the lines that give its
 * address and dev token. `extra`: more arguments, as [real service's, fake's].
 * @returns {Promise<Server>}
 */
async function startServer([extra, fakeExtra] = [[], []]) {
  const data = mkdtempSync(join(tmp, 'data-'));
  const [cmd, args] = FAKE
    ? [process.execPath, [join(WEB, 'test', 'fake-server.mjs'), ...fakeExtra]]
    : [BIN, ['serve', '--dev', '--listen', '127.0.0.1:0', '--data', data, ...extra]];
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const srv = { proc, origin: null, token: null, store: null, data };
  servers.push(srv);
  return waitForServe(proc, { name: cmd }).then((ready) => Object.assign(srv, ready));
}

/** The environment without AWS settings that could point `hoist uploads ls` elsewhere. */
const storeEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^AWS_/.test(k)));

/**
 * The keys of the multipart uploads the store itself still holds, as `hoist uploads ls` lists
 * them with the store's own credentials: what S3 says, not what the service remembers.
 * @param {Server} srv
 */
function storeUploads(srv) {
  const { access_key, secret_key } = JSON.parse(readFileSync(join(srv.data, 'store', 'credentials.json'), 'utf8'));
  const ls = spawnSync(BIN, ['uploads', 'ls', 's3://hoist', '--json', '--endpoint-url', srv.store], {
    encoding: 'utf8',
    env: { ...storeEnv, AWS_ACCESS_KEY_ID: access_key, AWS_SECRET_ACCESS_KEY: secret_key },
  });
  assert.equal(ls.status, 0, `hoist uploads ls failed: ${ls.stderr}`);
  return ls.stdout.split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line).key);
}

/** The files the page loads, as `hoist serve` embeds them from web/ at build time. */
const WEB_FILES = { '/app.js': 'app.js', '/hoist-upload.js': 'hoist-upload.js', '/style.css': 'style.css' };

/**
 * The files under test are web/'s. A binary built before they last changed serves older copies:
 * then the browser gets web/'s files from disk instead while a page loads (the API and the store
 * stay the real ones; see navigate), and a line says so. Rebuilding the binary makes this a no-op.
 * Not the document itself: Chromium does not know the address of a document a test fulfils, and
 * so blocks its requests to the loopback store (Local Network Access).
 * @param {Server} srv
 */
async function useWebFromDisk(srv) {
  const page = Buffer.from(await (await fetch(srv.origin)).arrayBuffer());
  if (!page.equals(readFileSync(join(WEB, 'index.html')))) {
    throw new Error(`${BIN} serves an older index.html than web/'s: rebuild it (cargo build -p hoist-cli)`);
  }
  const stale = [];
  for (const file of Object.values(WEB_FILES)) {
    const served = Buffer.from(await (await fetch(new URL(file, srv.origin))).arrayBuffer());
    if (!served.equals(readFileSync(join(WEB, file)))) stale.push(file);
  }
  if (stale.length === 0) return;
  console.log(`# ${srv.origin} serves older ${stale.join(', ')} than web/ (binary built before they changed): the browser gets web/'s copies`);
  const TYPES = { html: 'text/html', js: 'text/javascript', css: 'text/css' };
  srv.webFromDisk = {
    match: (url) => url.origin === srv.origin && url.pathname in WEB_FILES,
    handler: (route) => {
      const file = WEB_FILES[new URL(route.request().url()).pathname];
      return route.fulfill({
        status: 200,
        headers: { 'content-type': TYPES[file.split('.').pop()], 'cache-control': 'no-cache' },
        body: readFileSync(join(WEB, file)),
      });
    },
  };
}

/**
 * Runs `go` (a goto or reload of `page`, which resolves once the page and its modules loaded)
 * with web/'s files from disk if the binary's are stale. Only while loading: a route makes
 * Playwright intercept every request of the page, part PUTs too, which delays each 16 MiB PUT
 * by a second or more and turns the store's early 403 into a network error.
 */
async function navigate(page, srv, go) {
  const web = srv.webFromDisk;
  if (!web) return go();
  await page.route(web.match, web.handler);
  try {
    return await go();
  } finally {
    await page.unroute(web.match, web.handler);
  }
}

/** A /v1 call from the test itself (not the page). */
async function api(method, path, body, srv = main) {
  const res = await fetch(new URL(path, srv.origin), {
    method,
    headers: { authorization: `Bearer ${srv.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

// --- files -------------------------------------------------------------------------------------

/** Deterministic bytes (xorshift32); the same source runs in the page for the module test. */
const GENERATE = `(size, seed) => {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; words[i] = x; }
  return new Uint8Array(words.buffer, 0, size);
}`;
const generate = new Function(`return ${GENERATE}`)();

/** Writes a generated file; returns its path and bytes. */
function makeFile(name, size, seed) {
  const bytes = generate(size, seed);
  const path = join(tmp, name);
  writeFileSync(path, bytes);
  return { path, bytes, size };
}

/** An ETag without the quotes S3 puts around it (services differ in passing them on). */
const unquote = (etag) => String(etag).replace(/^"|"$/g, '');

/** The S3 multipart ETag of `bytes` cut into `partSize` parts (the upload's own), unquoted. */
function multipartEtag(bytes, partSize) {
  const count = Math.max(1, Math.ceil(bytes.length / partSize));
  const digests = [];
  for (let i = 0; i < count; i++) {
    digests.push(createHash('md5').update(bytes.subarray(i * partSize, (i + 1) * partSize)).digest());
  }
  return `${createHash('md5').update(Buffer.concat(digests)).digest('hex')}-${count}`;
}

// --- the page ----------------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The part number of a presigned part URL (S3 query, or the last path segment). */
function partOf(url) {
  const u = new URL(url);
  return Number(u.searchParams.get('partNumber') ?? u.pathname.split('/').pop());
}

/**
 * Opens the page with the token in the fragment and records its traffic: part PUTs with their
 * outcome (status, 0 when failed), sign requests, and created uploads.
 */
async function openPage(srv = main) {
  const { origin, token } = srv;
  const page = await context.newPage();
  const t = { puts: [], signs: [], creates: [], page };
  page.on('request', (r) => {
    if (r.method() === 'PUT' && !r.url().startsWith(origin)) {
      t.puts.push({ part: partOf(r.url()), url: r.url(), status: null, request: r });
    } else if (r.method() === 'POST' && /\/v1\/uploads\/[^/]+\/parts$/.test(new URL(r.url()).pathname)) {
      t.signs.push(JSON.parse(r.postData()).part_numbers);
    }
  });
  const outcome = (r, status) => { const p = t.puts.find((x) => x.request === r); if (p) p.status = status; };
  // Events can arrive as a test closes its page; their lookups then fail harmlessly.
  page.on('requestfinished', async (r) => outcome(r, (await r.response().catch(() => null))?.status() ?? 0));
  page.on('requestfailed', (r) => outcome(r, 0));
  page.on('response', async (r) => {
    if (r.request().method() === 'POST' && new URL(r.url()).pathname === '/v1/uploads' && r.ok()) {
      const created = await r.json().catch(() => null);
      if (created) t.creates.push(created);
    }
  });
  page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  await navigate(page, srv, () => page.goto(`${origin}/#token=${token}`));
  return t;
}

/**
 * Holds part PUTs in the browser until release(), except those of parts `pass` lets through, so
 * that a test acts while parts are in flight whatever the machine's speed. Held requests the page
 * cancels meanwhile (reload, cancel) just go away.
 */
async function holdPuts(page, pass = () => false) {
  const { origin } = new URL(page.url()); // the page's service, whichever it is
  const held = [];
  let holding = true;
  const toStore = (url) => !url.href.startsWith(origin);
  const handler = async (route) => {
    const r = route.request();
    if (holding && r.method() === 'PUT' && !pass(partOf(r.url()))) held.push(route);
    else await route.continue().catch(() => {});
  };
  await page.route(toStore, handler);
  return {
    held,
    /** Lets the held PUTs go; later requests go straight to the network, not through the test. */
    async release() {
      holding = false;
      for (const route of held.splice(0)) route.continue().catch(() => {});
      await page.unroute(toStore, handler).catch(() => {});
    },
  };
}

async function until(cond, what, ms = 60_000) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) {
    if (await cond()) return;
  }
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

/**
 * Picks `file` in the page and returns the complete response once the upload finishes; fails as
 * soon as the page shows the upload as failed, with the page's message.
 */
async function uploadThroughPage(t, file) {
  const completed = t.page.waitForResponse((r) => r.url().endsWith('/complete') && r.request().method() === 'POST', { timeout: 180_000 });
  const failed = t.page.locator('.upload[data-state="failed"] .message').first()
    .waitFor({ timeout: 180_000 })
    .then(async () => assert.fail(`the page shows the upload as failed: ${await t.page.locator('.upload[data-state="failed"] .message').first().textContent()}`));
  failed.catch(() => {}); // observed through the race below; later rejections are not errors
  await t.page.setInputFiles('#files', file.path);
  const res = await Promise.race([completed, failed]);
  assert.equal(res.status(), 200, `complete: ${await res.text()}`);
  return res.json();
}

/** first, first + 1, …, last */
const partNumbers = (first, last) => Array.from({ length: last - first + 1 }, (_, i) => first + i);

const okParts = (t) => new Set(t.puts.filter((p) => p.status === 200).map((p) => p.part));

// --- tests -------------------------------------------------------------------------------------

let partSize;
let big; // enough bytes for at least 6 parts, and at least 64 MiB

before(async () => {
  main = await startServer();
  ({ origin, token } = main);
  // The service decides the part size: ask it, so the multi-part tests have several parts.
  const probe = await api('POST', '/v1/uploads', { filename: 'probe.bin', size: 64 * MiB, content_type: 'application/octet-stream', checksum_algorithm: 'crc32c' });
  partSize = probe.part_size;
  await api('DELETE', `/v1/uploads/${probe.id}`);
  big = makeFile('big.bin', Math.max(64 * MiB, 6 * partSize), 7);
  console.log(`# service at ${origin}; part size ${partSize / MiB} MiB; big file ${big.size / MiB} MiB`);
  context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  await useWebFromDisk(main);
});

after(async () => {
  await context?.close();
  for (const srv of servers) srv.proc.kill();
  rmSync(tmp, { recursive: true, force: true });
});

test('without a token the page says so; typed in, Retry uploads', { timeout: 120_000 }, async () => {
  const page = await context.newPage();
  await navigate(page, main, () => page.goto(origin)); // a fresh browser profile: nothing remembered yet
  assert.match(await page.textContent('#token-status'), /No token yet/);
  await page.setInputFiles('#files', [makeFile('a.txt', 10, 1).path, makeFile('b.txt', 20, 2).path, makeFile('c.txt', 30, 3).path]);
  const failed = page.locator('.upload[data-state="failed"]');
  await until(async () => (await failed.count()) === 3, 'all three files to ask for the token');
  assert.match(await failed.first().textContent(), /Enter the access token first/);
  await page.fill('#token', token);
  await page.click('#token-form button');
  for (const name of ['a.txt', 'b.txt', 'c.txt']) await page.getByRole('button', { name: `Retry ${name}` }).click();
  await until(async () => (await page.locator('#finished tbody tr').count()) === 3, 'the three files to finish');
  await page.close();
});

test('the token comes from the link, is remembered and leaves the address bar', { timeout: 60_000 }, async () => {
  const t = await openPage();
  assert.equal(await t.page.inputValue('#token'), token);
  assert.equal(new URL(t.page.url()).hash, '');
  await navigate(t.page, main, () => t.page.goto(origin));
  assert.equal(await t.page.inputValue('#token'), token);
  await t.page.close();
});

test('a 64 MiB file uploads through the page, byte-identical, each part sent once', { timeout: 240_000 }, async () => {
  const t = await openPage();
  // Every text the file's status line shows, recorded in the page as it changes (reading it from
  // Node when a part's PUT ended raced a fast upload: the handlers ran after the last part).
  await t.page.evaluate(() => {
    window.statusSeen = [];
    new MutationObserver(() => {
      const status = document.querySelector('.upload .status');
      if (status) window.statusSeen.push(status.textContent);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const result = await uploadThroughPage(t, big);
  const seenWhileSending = await t.page.evaluate(() => window.statusSeen);
  const partCount = t.creates[0].part_count;
  assert.ok(seenWhileSending.some((text) => /\d (B|KiB|MiB|GiB)\/s · \d+ (s|min)/.test(text)), `speed and time left were shown: ${seenWhileSending.join(' | ')}`);
  assert.equal(result.size, big.size);
  assert.equal(unquote(result.etag), multipartEtag(big.bytes, t.creates[0].part_size), 'the stored parts are the file\'s bytes');
  assert.deepEqual(t.puts.map((p) => p.part).sort((a, b) => a - b), partNumbers(1, partCount));
  const row = t.page.locator('#finished tbody tr').first();
  await row.waitFor();
  assert.match(await row.textContent(), new RegExp(result.key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  assert.equal((await api('GET', `/v1/uploads/${t.creates[0].id}`)).state, 'completed');
  await t.page.close();
});

test('pause stops new part PUTs; resume finishes the upload', { timeout: 240_000 }, async () => {
  const t = await openPage();
  const hold = await holdPuts(t.page);
  const file = makeFile('pause.bin', 6 * partSize, 11);
  const done = uploadThroughPage(t, file);
  await until(() => hold.held.length === 3, 'three part PUTs in flight (the page sends 3 at a time)');
  await t.page.click('.upload .pause');
  assert.equal(await t.page.textContent('.upload .pause'), 'Resume');
  await hold.release();
  await until(() => t.puts.length === 3 && t.puts.every((p) => p.status === 200), 'the running parts to finish');
  await sleep(1500);
  assert.equal(t.puts.length, 3, 'no part PUT started while paused');
  await t.page.click('.upload .pause');
  const result = await done;
  assert.equal(unquote(result.etag), multipartEtag(file.bytes, t.creates[0].part_size));
  assert.deepEqual(t.puts.map((p) => p.part).sort((a, b) => a - b), partNumbers(1, t.creates[0].part_count));
  await t.page.close();
});

test('a reload mid-upload, then the same file picked again, completes without re-sending stored parts', { timeout: 240_000 }, async () => {
  const t = await openPage();
  const hold = await holdPuts(t.page, (part) => part <= 2);
  const file = makeFile('reload.bin', 8 * partSize, 13);
  await t.page.setInputFiles('#files', file.path);
  await until(() => okParts(t).size === 2 && hold.held.length > 0, 'parts 1 and 2 stored, others in flight');
  const stored = okParts(t);
  await navigate(t.page, main, () => t.page.reload());
  await hold.release();
  const before = t.puts.length;
  assert.match(await t.page.locator('#interrupted-list').textContent(), /reload\.bin/, 'the page lists the interrupted upload');
  const result = await uploadThroughPage(t, file);
  const again = t.puts.slice(before).map((p) => p.part);
  for (const n of stored) assert.ok(!again.includes(n), `part ${n} was stored before the reload and sent again`);
  assert.deepEqual(again.sort((a, b) => a - b), partNumbers(3, t.creates[0].part_count), 'the rest were sent once each');
  assert.equal(t.creates.length, 1, 'the second pick resumed rather than created an upload');
  assert.match(await t.page.textContent('#finished'), /reload\.bin/);
  assert.equal(unquote(result.etag), multipartEtag(file.bytes, t.creates[0].part_size));
  assert.ok(await t.page.locator('#interrupted').isHidden(), 'nothing is left to resume');
  await t.page.close();
});

test('an interrupted upload can be discarded from the page', { timeout: 240_000 }, async () => {
  const t = await openPage();
  const hold = await holdPuts(t.page, (part) => part === 1);
  await t.page.setInputFiles('#files', makeFile('discard.bin', 4 * partSize, 37).path);
  await until(() => okParts(t).size === 1, 'a stored part');
  await navigate(t.page, main, () => t.page.reload());
  await hold.release();
  await t.page.getByRole('button', { name: 'Discard the interrupted upload of discard.bin' }).click();
  await t.page.locator('#interrupted').waitFor({ state: 'hidden' });
  assert.equal((await api('GET', `/v1/uploads/${t.creates[0].id}`)).state, 'aborted');
  await t.page.close();
});

test('a part PUT that fails is retried, and a part URL answered "expired" is signed again', { timeout: 240_000 }, async () => {
  const t = await openPage();
  let reset = false;
  let expired = false;
  await t.page.route((url) => !url.href.startsWith(origin), async (route) => {
    const r = route.request();
    if (r.method() === 'PUT' && partOf(r.url()) === 2 && !reset) {
      reset = true;
      return route.abort('connectionreset');
    }
    if (r.method() === 'PUT' && partOf(r.url()) === 3 && !expired) {
      expired = true;
      return route.fulfill({
        status: 403,
        headers: { 'content-type': 'application/xml', 'access-control-allow-origin': origin, 'access-control-expose-headers': 'ETag' },
        body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>',
      });
    }
    return route.continue();
  });
  const file = makeFile('flaky.bin', 4 * partSize, 17);
  const result = await uploadThroughPage(t, file);
  assert.ok(reset && expired, 'both faults were injected');
  const part2 = t.puts.filter((p) => p.part === 2);
  assert.deepEqual(part2.map((p) => p.status), [0, 200], 'part 2: failed, then retried');
  const part3 = t.puts.filter((p) => p.part === 3);
  assert.deepEqual(part3.map((p) => p.status), [403, 200], 'part 3: expired, then sent again');
  assert.notEqual(part3[0].url, part3[1].url, 'with a fresh URL');
  assert.ok(t.signs.filter((s) => s.includes(3)).length >= 2, 'part 3 was signed again');
  assert.equal(unquote(result.etag), multipartEtag(file.bytes, t.creates[0].part_size));
  await t.page.close();
});

test('the same file picked in a second tab while it uploads is refused there', { timeout: 240_000 }, async () => {
  const a = await openPage();
  await holdPuts(a.page);
  const file = makeFile('twice.bin', 4 * partSize, 41);
  await a.page.setInputFiles('#files', file.path);
  await until(() => a.puts.length >= 1, 'a first part PUT in the first tab');
  const b = await openPage();
  await b.page.setInputFiles('#files', file.path);
  const refused = b.page.locator('.upload[data-state="failed"] .message');
  await refused.waitFor();
  assert.match(await refused.textContent(), /already being uploaded in another tab/);
  assert.equal(b.creates.length, 0, 'the second tab created no upload');
  assert.equal(b.puts.length, 0, 'and sent no part');
  await a.page.click('.upload .cancel');
  await a.page.locator('#uploads .upload').waitFor({ state: 'detached' });
  await b.page.close();
  await a.page.close();
});

test('cancel stops the part PUTs and leaves no multipart upload in the store', { timeout: 240_000 }, async () => {
  const t = await openPage();
  const hold = await holdPuts(t.page, (part) => part === 1);
  const file = makeFile('cancel.bin', 6 * partSize, 19);
  await t.page.setInputFiles('#files', file.path);
  await until(() => okParts(t).size === 1 && hold.held.length > 0, 'part 1 stored, others in flight');
  const { key } = t.creates[0];
  if (!FAKE) assert.ok(storeUploads(main).includes(key), `the store lists the upload of ${key} while it runs`);
  await t.page.click('.upload .cancel');
  await t.page.locator('#uploads .upload').waitFor({ state: 'detached' });
  const sent = t.puts.length;
  await sleep(1500);
  assert.equal(t.puts.length, sent, 'no part PUT after cancel');
  const info = await api('GET', `/v1/uploads/${t.creates[0].id}`);
  assert.equal(info.state, 'aborted');
  // The service's word is not enough: ask the store itself (ListMultipartUploads).
  if (!FAKE) assert.deepEqual(storeUploads(main).filter((k) => k === key), [], `the store still holds an upload of ${key}`);
  await t.page.close();
});

test('part URLs that really expire (service with --part-url-ttl 2s): paused past expiry, the upload re-signs and completes', { timeout: 240_000 }, async () => {
  // S3 presigned URLs count whole seconds from X-Amz-Date, so "2 s" is 1 to 2 s in fact.
  const short = await startServer([['--part-url-ttl', '2s'], ['--url-ttl', '2']]);
  await useWebFromDisk(short);

  // What a browser meets: a part PUT of 16 MiB with an expired URL, straight to the store (no
  // interception), gets the store's 403 (readable through CORS), not a connection error,
  // although the store refuses it before reading the body.
  const probe = await api('POST', '/v1/uploads', { filename: 'probe.bin', size: partSize, content_type: 'application/octet-stream', checksum_algorithm: null }, short);
  const [{ url }] = (await api('POST', `/v1/uploads/${probe.id}/parts`, { part_numbers: [1] }, short)).parts;
  await sleep(2500);
  const probePage = await openPage(short);
  const answer = await probePage.page.evaluate(({ url, size }) => new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.onload = () => resolve(`${xhr.status} ${xhr.responseText}`);
    xhr.onerror = () => resolve('network error');
    xhr.send(new Blob([new Uint8Array(size)]));
  }), { url, size: partSize });
  assert.match(answer, /^403 .*Request has expired/, 'an expired URL is answered 403');
  await api('DELETE', `/v1/uploads/${probe.id}`, undefined, short);
  await probePage.page.close();

  // The page: three PUTs held in the browser, paused, released after their URLs expired, and
  // resumed after more than a URL's lifetime.
  const t = await openPage(short);
  const hold = await holdPuts(t.page);
  const file = makeFile('expiry.bin', 6 * partSize, 43);
  const done = uploadThroughPage(t, file);
  await until(() => hold.held.length === 3, 'three part PUTs in flight, held in the browser');
  await t.page.click('.upload .pause');
  await sleep(2500); // the held PUTs' URLs have expired
  await hold.release(); // they reach the store now
  await until(() => t.puts.slice(0, 3).every((p) => p.status !== null), 'the held PUTs to end');
  const first = t.puts.slice(0, 3);
  assert.deepEqual(first.map((p) => p.status), [403, 403, 403], 'the store refused the expired URLs');
  const signs = t.signs.length;
  await sleep(2500); // paused longer than a URL lives
  assert.equal(t.signs.length, signs, 'nothing was signed while paused (it would expire unused)');
  await t.page.click('.upload .pause'); // resume
  const result = await done;
  assert.equal(unquote(result.etag), multipartEtag(file.bytes, t.creates[0].part_size), 'the stored object is the file');
  const after = t.puts.slice(3);
  assert.ok(after.every((p) => p.status === 200), `after resume every PUT is accepted: ${JSON.stringify(after.map((p) => [p.part, p.status]))}`);
  assert.deepEqual(after.map((p) => p.part).sort((a, b) => a - b), partNumbers(1, t.creates[0].part_count), 'each part stored once');
  for (const p of first) assert.ok(after.some((q) => q.part === p.part && q.url !== p.url), `part ${p.part} was sent again with a fresh URL`);
  if (!FAKE) assert.deepEqual(storeUploads(short), [], 'nothing is left incomplete in the store');
  await t.page.close();
});

test('the module works imported directly, as its documentation shows', { timeout: 240_000 }, async () => {
  const t = await openPage();
  const size = 3 * partSize + 12_345;
  const out = await t.page.evaluate(async ({ token, size, GENERATE }) => {
    const { HoistUpload } = await import('/hoist-upload.js');
    const bytes = new Function(`return ${GENERATE}`)()(size, 23);
    const file = new File([bytes], 'direct.bin', { type: 'application/octet-stream' });
    let events = 0;
    const up = new HoistUpload(file, { endpoint: location.origin, token, concurrency: 4, checksum: 'crc32c', onProgress: () => { events++; } });
    const result = await up.start();
    return { result, events };
  }, { token, size, GENERATE });
  assert.equal(out.result.size, size);
  const info = await api('GET', `/v1/uploads/${out.result.id}`);
  assert.equal(unquote(out.result.etag), multipartEtag(generate(size, 23), info.part_size));
  assert.ok(out.events > 4, 'progress events were sent');
  assert.equal(info.state, 'completed');
  await t.page.close();
});

test('a video uploaded through the page is processed, followed live, and its result plays', { timeout: 240_000 }, async (ctx) => {
  if (FAKE) return ctx.skip('the fake server has no pipeline');
  if (spawnSync('ffmpeg', ['-version']).status !== 0) {
    assert.ok(!process.env.CI, 'CI must have ffmpeg (.ci/setup.sh installs it)');
    return ctx.skip('ffmpeg is not installed');
  }
  const path = join(tmp, 'clip.mp4');
  const made = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25:duration=4',
    '-f', 'lavfi', '-i', 'sine=frequency=440:duration=4', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-shortest', path]);
  assert.equal(made.status, 0, String(made.stderr));
  const t = await openPage();
  await t.page.evaluate(() => {
    window.jobSeen = [];
    new MutationObserver(() => {
      const s = document.querySelector('.job .job-state');
      if (s && window.jobSeen.at(-1) !== s.textContent) window.jobSeen.push(s.textContent);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const result = await uploadThroughPage(t, { path });
  assert.equal(result.jobs.length, 1, JSON.stringify(result));
  const job = t.page.locator(`.job[data-job="${result.jobs[0].id}"]`);
  await job.locator('video').waitFor({ timeout: 180_000 });
  assert.equal(await job.getAttribute('data-state'), 'succeeded');
  const seen = await t.page.evaluate(() => window.jobSeen);
  assert.ok(seen.some((text) => /^Processing \d+ %$/.test(text)), `progress was shown live: ${seen.join(' | ')}`);
  assert.equal(seen.at(-1), 'Ready');
  // The player loads the transcoded MP4 from the store and can play it.
  const played = await job.locator('video').evaluate((v) => new Promise((resolve) => {
    const report = () => resolve({ width: v.videoWidth, height: v.videoHeight, duration: v.duration, error: v.error?.message ?? null });
    if (v.readyState >= 1) report();
    v.addEventListener('loadedmetadata', report);
    v.addEventListener('error', report);
  }));
  assert.deepEqual([played.error, played.width, played.height], [null, 640, 360], JSON.stringify(played));
  assert.ok(played.duration > 3.5, JSON.stringify(played));
  assert.ok(await job.locator('video').getAttribute('poster'), 'the poster is shown');
  await t.page.close();
});

test('screenshots at 360, 800 and 1280 px', { timeout: 240_000 }, async () => {
  const t = await openPage();
  await holdPuts(t.page, (part) => part <= 2);
  await t.page.setInputFiles('#files', [makeFile('holiday-video-2026.mov', 6 * partSize, 29).path, makeFile('notes.txt', 1000, 31).path]);
  await until(() => okParts(t).size === 2, 'parts 1 and 2 of the video stored');
  await t.page.locator('#finished tbody tr').first().waitFor(); // notes.txt
  await t.page.click('.upload .pause');
  mkdirSync(SHOTS, { recursive: true });
  for (const width of [360, 800, 1280]) {
    await t.page.setViewportSize({ width, height: 900 });
    const path = join(SHOTS, `page-${width}.png`);
    await t.page.screenshot({ path, fullPage: true });
    const overflow = await t.page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.ok(!overflow, `no horizontal scrolling at ${width} px`);
    console.log(`# screenshot: ${path}`);
  }
  await t.page.click('.upload .cancel');
  await t.page.close();
});
