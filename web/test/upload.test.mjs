// HoistUpload against the fake service: scheduling, retries with exact backoff delays, re-signing,
// pause/resume, abort, resume bookkeeping, offline, and the errors a person sees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HoistUpload, MemoryResumeStore, backoffDelay } from '../hoist-upload.js';
import { FakeService, deferred, makeFile, optionsFor, settle } from './fake-service.mjs';

/** Waits until `cond()` holds (real time: hashing runs on Node's thread pool); fails after 10 s. */
async function until(cond, what) {
  for (const end = Date.now() + 10_000; Date.now() < end;) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** Makes every PUT wait until the test releases it; returns the list of waiting releases. */
function holdPuts(fake) {
  const held = [];
  fake.onPut = () => {
    const d = deferred();
    held.push(d);
    return d.promise.then(() => undefined);
  };
  return held;
}

/** Real time for things that must NOT happen to get their chance. */
const realDelay = (ms) => new Promise((r) => setTimeout(r, ms));

/** start()'s outcome, observed from the start so that an early rejection is not unhandled. */
function outcome(promise) {
  return promise.then((value) => ({ value }), (error) => ({ error }));
}

async function storedBytes(fake, id) {
  return new Uint8Array(await fake.uploads.get(id).object.arrayBuffer());
}

test('uploads every part once, never more than `concurrency` at a time, and completes byte-identical', async () => {
  const fake = new FakeService({ partSize: 1000 });
  fake.onPut = () => settle(Math.floor(Math.random() * 4)).then(() => undefined);
  const file = makeFile(10_500);
  const events = [];
  const up = new HoistUpload(file, optionsFor(fake, { concurrency: 3, onProgress: (p) => events.push(p) }));
  const result = await up.start();

  assert.equal(fake.maxInFlight, 3);
  assert.deepEqual(fake.putNumbers().sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  for (const batch of fake.signed()) assert.ok(batch.length <= 3, `sign batch ${batch}`);
  assert.deepEqual(fake.signed().flat().sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(await storedBytes(fake, result.id), new Uint8Array(await file.arrayBuffer()));
  assert.equal(result.key, fake.uploads.get(result.id).key);
  assert.equal(result.size, 10_500);
  const complete = fake.calls.find((c) => c.path.endsWith('/complete'));
  assert.deepEqual(complete.body.parts.map((p) => p.part_number), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  const last = events.at(-1);
  assert.equal(last.state, 'done');
  assert.equal(last.bytesDone, 10_500);
  assert.equal(last.partsDone, 11);
  for (let i = 1; i < events.length; i++) {
    if (events[i].state === 'uploading') assert.ok(events[i].parts.length <= 3);
  }
});

test('sends the checksum with the sign request, and the PUT carries exactly the signed headers', async () => {
  for (const checksum of ['crc32c', 'sha256', null]) {
    const fake = new FakeService({ partSize: 1000 });
    const up = new HoistUpload(makeFile(2500), optionsFor(fake, { checksum }));
    await up.start(); // the fake store refuses a body that does not match the signed checksum
    const create = fake.calls.find((c) => c.path === '/v1/uploads');
    assert.equal(create.body.checksum_algorithm, checksum);
    const sign = fake.calls.find((c) => c.path.endsWith('/parts'));
    assert.equal(Object.keys(sign.body.checksums ?? {}).length, checksum ? 3 : 0);
    for (const put of fake.puts) {
      const names = Object.keys(put.headers);
      assert.deepEqual(names, checksum ? [`x-amz-checksum-${checksum}`] : [], 'content-length is left to the browser');
    }
  }
});

test('the next batch is checksummed while the signed parts upload', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const held = holdPuts(fake);
  const source = makeFile(4000);
  const reads = [];
  // A File that logs which byte ranges are read, to see when part 3 and 4 are checksummed.
  const file = new (class extends File {
    slice(start, end) { reads.push(start); return super.slice(start, end); }
  })([source], source.name, { lastModified: source.lastModified });
  const up = new HoistUpload(file, optionsFor(fake, { concurrency: 2 }));
  const done = up.start();
  await until(() => held.length === 2, 'parts 1 and 2 in flight');
  await until(() => reads.includes(2000) && reads.includes(3000), 'parts 3 and 4 read for their checksums');
  assert.deepEqual(fake.signed(), [[1, 2]], 'before they are signed, while 1 and 2 are still sending');
  fake.onPut = null;
  held.forEach((d) => d.resolve());
  await done;
  assert.deepEqual(fake.signed(), [[1, 2], [3, 4]]);
});

test('a zero-byte file is one zero-byte part', async () => {
  const fake = new FakeService();
  const result = await new HoistUpload(makeFile(0), optionsFor(fake)).start();
  assert.deepEqual(fake.putNumbers(), [1]);
  assert.equal(result.size, 0);
});

test('backoffDelay is full jitter under min(cap, base·2^attempt)', () => {
  const policy = { base: 500, cap: 3000 };
  assert.deepEqual([0, 1, 2, 3, 4, 9].map((a) => backoffDelay(a, policy, () => 0.5)), [250, 500, 1000, 1500, 1500, 1500]);
  assert.equal(backoffDelay(5, policy, () => 0), 0);
  assert.ok(backoffDelay(2, policy, () => 0.999999) < 2000);
});

test('a failing part is retried with the exact backoff delays, then succeeds', async () => {
  const fake = new FakeService({ partSize: 1000 });
  let failures = 0;
  fake.onPut = ({ partNumber }) => {
    if (partNumber === 2 && failures < 4) {
      failures++;
      return { status: 503, etag: null, body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' };
    }
    return undefined;
  };
  const randoms = [0.5, 0.25, 1 - 2 ** -20, 0.1];
  const notices = [];
  const up = new HoistUpload(makeFile(3000), optionsFor(fake, {
    concurrency: 1, random: () => randoms.shift(), retry: { base: 100, cap: 1000, maxAttempts: 5 },
    onNotice: (n) => notices.push(n),
  }));
  await up.start();
  // attempt k waits random · min(1000, 100 · 2^k)
  assert.deepEqual(fake.sleeps, [50, 50, (1 - 2 ** -20) * 400, 80]);
  assert.deepEqual(fake.putNumbers(), [1, 2, 2, 2, 2, 2, 3]);
  assert.match(notices.find((n) => n.code === 'retrying').message, /Part 2: 503 SlowDown: Please reduce/);
});

test('a part that keeps failing stops the upload after maxAttempts, keeping it resumable', async () => {
  const fake = new FakeService({ partSize: 1000 });
  fake.onPut = ({ partNumber }) => (partNumber === 2 ? { status: 500, etag: null, body: '' } : undefined);
  const store = new MemoryResumeStore();
  const up = new HoistUpload(makeFile(3000), optionsFor(fake, { concurrency: 1, store, retry: { maxAttempts: 3 } }));
  await assert.rejects(up.start(), (e) => e.code === 'part_failed' && /Part 2 failed 3 times/.test(e.message));
  assert.deepEqual(fake.putNumbers(), [1, 2, 2, 2]);
  assert.equal(fake.sleeps.length, 2);
  assert.equal(store.records.size, 1, 'the resume record stays');
  assert.equal(up.state, 'failed');
  assert.ok(!fake.calls.some((c) => c.method === 'DELETE'), 'a failure does not delete the upload');
});

test('network errors are retried; a non-retryable store answer is fatal at once', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const transport = fake.transport();
  let thrown = 0;
  const put = transport.putPart;
  transport.putPart = (req) => (thrown++ < 2 ? Promise.reject(new TypeError('network error')) : put(req));
  await new HoistUpload(makeFile(1500), optionsFor(fake, { transport, concurrency: 1 })).start();
  assert.equal(fake.sleeps.length, 2);

  const fake2 = new FakeService({ partSize: 1000 });
  fake2.onPut = () => ({ status: 400, etag: null, body: '<Error><Code>InvalidPart</Code><Message>bad part</Message></Error>' });
  await assert.rejects(new HoistUpload(makeFile(1500), optionsFor(fake2, { concurrency: 1 })).start(),
    (e) => e.code === 'part_refused' && /InvalidPart: bad part/.test(e.message));
  assert.equal(fake2.puts.length, 1);
});

test('an expired URL (403) is re-signed and retried at once; a second 403 with a fresh URL is fatal', async () => {
  const fake = new FakeService({ partSize: 1000 });
  let expiredOnce = false;
  fake.onPut = ({ partNumber }) => {
    if (partNumber === 2 && !expiredOnce) {
      expiredOnce = true;
      return { status: 403, etag: null, body: '<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>' };
    }
    return undefined;
  };
  await new HoistUpload(makeFile(3000), optionsFor(fake, { concurrency: 1, signBatch: 3 })).start();
  assert.deepEqual(fake.putNumbers(), [1, 2, 2, 3]);
  assert.deepEqual(fake.signed(), [[1, 2, 3], [2]]);
  assert.deepEqual(fake.sleeps, [], 'no backoff before using a fresh URL');

  const fake2 = new FakeService({ partSize: 1000 });
  fake2.onPut = () => ({ status: 403, etag: null, body: '<Error><Code>AccessDenied</Code><Message>Denied</Message></Error>' });
  await assert.rejects(new HoistUpload(makeFile(1000), optionsFor(fake2)).start(),
    (e) => e.code === 'part_refused' && e.status === 403 && /freshly signed URL \(403 AccessDenied: Denied\)/.test(e.message));
  assert.deepEqual(fake2.putNumbers(), [1, 1]);
  assert.deepEqual(fake2.signed(), [[1], [1]]);
});

test('a URL whose expiry has passed is re-signed before it is used', async () => {
  // URLs live 60 s, each PUT takes 20 s: parts signed early would be used after expiry.
  const fake = new FakeService({ partSize: 1000, urlTtlMs: 60_000 });
  fake.onPut = () => { fake.clock += 20_000; };
  await new HoistUpload(makeFile(6000), optionsFor(fake, { concurrency: 1, signBatch: 4 })).start();
  assert.ok(fake.puts.every((p) => p.status === 200), 'no PUT met an expired URL');
  assert.deepEqual(fake.putNumbers(), [1, 2, 3, 4, 5, 6]);
  // At t=40 s parts 3 and 4 have 20 s left (< 30 s margin): signed again with the next ones.
  assert.deepEqual(fake.signed(), [[1, 2, 3, 4], [3, 4, 5, 6], [5, 6]]);
});

test('paused longer than a URL lives: PUTs refused as expired are signed again only after resume, and complete', async () => {
  const fake = new FakeService({ partSize: 1000, urlTtlMs: 60_000 });
  const held = holdPuts(fake);
  const up = new HoistUpload(makeFile(4000), optionsFor(fake, { concurrency: 2 }));
  const done = outcome(up.start());
  await until(() => held.length === 2, 'two PUTs');
  up.pause();
  fake.clock += 120_000; // the running PUTs reach the store after their URLs expired
  fake.onPut = null;
  held.forEach((d) => d.resolve());
  await until(() => fake.puts.filter((p) => p.status === 403).length === 2, 'both refused as expired');
  await realDelay(50);
  assert.equal(fake.signed().length, 1, 'nothing is signed while paused: it could expire before resume');
  fake.clock += 120_000; // still paused, longer than a URL lives
  up.resume();
  const { value, error } = await done;
  assert.equal(error, undefined, 'the upload completes');
  assert.equal(value.size, 4000);
  assert.deepEqual(fake.puts.map((p) => p.status), [403, 403, 200, 200, 200, 200]);
  assert.deepEqual(fake.putNumbers().slice(2).sort(), [1, 2, 3, 4]);
});

test('pause stops starting parts and lets running ones finish; resume continues', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const held = holdPuts(fake);
  const states = [];
  const up = new HoistUpload(makeFile(6000), optionsFor(fake, { concurrency: 2, onProgress: (p) => states.push(p.state) }));
  const done = up.start();
  await until(() => held.length === 2, 'two PUTs');
  up.pause();
  assert.equal(up.state, 'paused');
  held[0].resolve();
  held[1].resolve();
  await until(() => fake.uploads.get('up1').parts.size === 2, 'the running parts to finish');
  await realDelay(50);
  assert.equal(fake.puts.length, 2, 'no part started while paused');
  assert.equal(states.at(-1), 'paused');
  up.resume();
  fake.onPut = null;
  const result = await done;
  assert.deepEqual(fake.putNumbers(), [1, 2, 3, 4, 5, 6]);
  assert.equal(result.size, 6000);
});

test('abort cancels running PUTs, sends DELETE, starts nothing more and forgets the resume record', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const held = holdPuts(fake);
  const store = new MemoryResumeStore();
  const up = new HoistUpload(makeFile(6000), optionsFor(fake, { concurrency: 2, store }));
  const done = outcome(up.start());
  await until(() => held.length === 2, 'two PUTs');
  assert.equal(store.records.size, 1);
  const answer = await up.abort();
  assert.deepEqual(answer, { id: 'up1', state: 'aborted' });
  assert.equal((await done).error.code, 'aborted');
  held.forEach((d) => d.resolve());
  await realDelay(50);
  assert.equal(fake.puts.length, 2, 'no PUT after abort');
  assert.ok(fake.puts.every((p) => p.status === 0), 'the running PUTs were cancelled');
  assert.deepEqual(fake.calls.filter((c) => c.method === 'DELETE').map((c) => c.path), ['/v1/uploads/up1']);
  assert.ok(!fake.calls.some((c) => c.path.endsWith('/complete')));
  assert.equal(store.records.size, 0);
  assert.equal(up.state, 'aborted');
});

test('abort while paused ends the waiting workers and deletes the upload', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const held = holdPuts(fake);
  const up = new HoistUpload(makeFile(6000), optionsFor(fake, { concurrency: 2 }));
  const done = outcome(up.start());
  await until(() => held.length === 2, 'two PUTs');
  up.pause();
  held.forEach((d) => d.resolve());
  await until(() => fake.uploads.get('up1').parts.size === 2, 'the running parts to finish');
  await up.abort();
  assert.equal((await done).error.code, 'aborted');
  assert.equal(fake.puts.length, 2);
  assert.equal(fake.uploads.get('up1').state, 'aborted');
});

test('abort while the upload is being created waits for its id and deletes it', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const gate = deferred();
  fake.onCall = async ({ path }) => { if (path === '/v1/uploads') await gate.promise; };
  const up = new HoistUpload(makeFile(3000), optionsFor(fake));
  const done = outcome(up.start());
  await until(() => fake.calls.length === 1, 'the create call');
  const aborting = up.abort();
  gate.resolve();
  await aborting;
  assert.equal((await done).error.code, 'aborted');
  assert.equal(fake.uploads.get('up1').state, 'aborted');
  assert.equal(fake.puts.length, 0);
});

test('a second upload of the same file while the first runs is refused (Web Lock)', async () => {
  // navigator.locks' `ifAvailable` behaviour: the callback gets null when the name is held.
  const held = new Set();
  const locks = {
    async request(name, _options, callback) {
      if (held.has(name)) return callback(null);
      held.add(name);
      try { return await callback({ name }); } finally { held.delete(name); }
    },
  };
  const fake = new FakeService({ partSize: 1000 });
  const puts = holdPuts(fake);
  const store = new MemoryResumeStore();
  const file = makeFile(3000);
  const first = new HoistUpload(file, optionsFor(fake, { store, locks }));
  const done = first.start();
  await until(() => puts.length > 0, 'the first upload sending');
  const second = new HoistUpload(file, optionsFor(fake, { store, locks }));
  await assert.rejects(second.start(), (e) => e.code === 'busy' && /already being uploaded/.test(e.message));
  fake.onPut = null;
  puts.forEach((d) => d.resolve());
  await done;
  assert.equal(held.size, 0, 'the lock is released when the upload ends');
  assert.equal(fake.uploads.size, 1);
});

/** Uploads parts 1..k of a file and then fails for good (as a closed tab would leave it). */
async function interruptedUpload(fake, file, store, partsBefore) {
  fake.onPut = ({ partNumber }) => (partNumber > partsBefore
    ? { status: 400, etag: null, body: '<Error><Code>Interrupted</Code><Message>tab closed</Message></Error>' }
    : undefined);
  await assert.rejects(new HoistUpload(file, optionsFor(fake, { concurrency: 1, store })).start());
  fake.onPut = null;
  fake.puts = [];
  fake.calls = [];
}

test('resume sends only the parts the store lacks (a part of the wrong size counts as missing)', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const store = new MemoryResumeStore();
  const file = makeFile(7200);
  await interruptedUpload(fake, file, store, 4);
  // A part the store holds with another size than planned is sent again.
  fake.uploads.get('up1').parts.get(3).size = 999;
  const notices = [];
  // The same file picked again: a new File object with the same content, name and time.
  const again = new File([await file.arrayBuffer()], file.name, { lastModified: file.lastModified });
  const up = new HoistUpload(again, optionsFor(fake, { concurrency: 2, store, onNotice: (n) => notices.push(n) }));
  const result = await up.start();
  assert.equal(result.id, 'up1');
  assert.deepEqual(fake.putNumbers().sort((a, b) => a - b), [3, 5, 6, 7, 8]);
  assert.ok(!fake.calls.some((c) => c.path === '/v1/uploads'), 'no new upload created');
  assert.match(notices.find((n) => n.code === 'resumed').message, /3 of 8 parts are already uploaded/);
  assert.deepEqual(await storedBytes(fake, 'up1'), new Uint8Array(await file.arrayBuffer()));
  assert.equal(store.records.size, 0, 'the record is removed on completion');
});

test('a file whose fingerprint changed is not resumed', async () => {
  const fake = new FakeService({ partSize: 1000 });
  const store = new MemoryResumeStore();
  const file = makeFile(5000, { seed: 1 });
  await interruptedUpload(fake, file, store, 3);
  // Same name, size and modification time, other bytes.
  const changed = makeFile(5000, { seed: 2 });
  const notices = [];
  const result = await new HoistUpload(changed, optionsFor(fake, { store, onNotice: (n) => notices.push(n) })).start();
  assert.equal(result.id, 'up2');
  assert.deepEqual(fake.putNumbers().sort(), [1, 2, 3, 4, 5]);
  assert.ok(notices.some((n) => n.code === 'changed'));
  assert.equal(fake.uploads.get('up1').state, 'aborted', 'the upload of the old bytes is deleted');
  assert.deepEqual(await storedBytes(fake, 'up2'), new Uint8Array(await changed.arrayBuffer()));
});

test('an upload the service no longer has (aborted, or 404) starts afresh and says so', async () => {
  for (const vanish of [(u) => { u.state = 'aborted'; }, (u, fake) => fake.uploads.delete(u.id)]) {
    const fake = new FakeService({ partSize: 1000 });
    const store = new MemoryResumeStore();
    const file = makeFile(3000);
    await interruptedUpload(fake, file, store, 1);
    vanish(fake.uploads.get('up1'), fake);
    const notices = [];
    const result = await new HoistUpload(file, optionsFor(fake, { store, onNotice: (n) => notices.push(n) })).start();
    assert.equal(result.id, 'up2');
    assert.deepEqual(fake.putNumbers().sort(), [1, 2, 3]);
    assert.match(notices.find((n) => n.code === 'restarted').message, /starting again from the beginning/);
  }
});

test("a PUT whose ETag cannot be read names the CORS fix", async () => {
  const fake = new FakeService({ partSize: 1000 });
  fake.onPut = () => ({ status: 200, etag: null, body: '' });
  await assert.rejects(new HoistUpload(makeFile(1000), optionsFor(fake)).start(),
    (e) => e.code === 'cors_etag' && e.message.includes("the bucket's CORS rules must expose the ETag header (ExposeHeaders: ETag)"));
});

test("the service's refusals reach the caller in its own words; 5xx and 429 are retried", async () => {
  const fake = new FakeService();
  fake.onCall = ({ path }) => (path === '/v1/uploads'
    ? { status: 413, headers: { get: () => null }, body: { error: { code: 'file_too_large', message: 'Files over 5 GiB are not accepted here; ask for a higher limit.' } } }
    : undefined);
  await assert.rejects(new HoistUpload(makeFile(10), optionsFor(fake)).start(),
    (e) => e.code === 'file_too_large' && e.status === 413 && e.message === 'Files over 5 GiB are not accepted here; ask for a higher limit.');
  assert.equal(fake.calls.length, 1, 'a refusal is not retried');

  const fake2 = new FakeService();
  const answers = [
    { status: 503, headers: { get: () => null }, body: null },
    { status: 429, headers: { get: (h) => (h === 'retry-after' ? '7' : null) }, body: { error: { code: 'rate_limited', message: 'slow down' } } },
  ];
  fake2.onCall = ({ path }) => (path === '/v1/uploads' ? answers.shift() : undefined);
  await new HoistUpload(makeFile(10), optionsFor(fake2)).start();
  assert.deepEqual(fake2.sleeps, [250, 7000], 'backoff, then the Retry-After seconds');
});

test('offline: nothing is sent until the network is back, and waiting is not a failed attempt', async () => {
  const fake = new FakeService({ partSize: 1000 });
  let online = true;
  let back = deferred();
  const network = { isOnline: () => online, waitOnline: () => back.promise };
  const transport = fake.transport();
  const put = transport.putPart;
  // The first PUT of part 2 fails because the network went away.
  let dropped = false;
  transport.putPart = (req) => {
    if (!dropped && req.url.includes('/2?')) {
      dropped = true;
      online = false;
      return Promise.reject(new TypeError('network error'));
    }
    return put(req);
  };
  const states = [];
  const up = new HoistUpload(makeFile(3000), optionsFor(fake, {
    transport, network, concurrency: 1, retry: { maxAttempts: 1 }, onProgress: (p) => states.push(p.state),
  }));
  const done = up.start();
  await until(() => states.includes('offline'), 'the offline state');
  await realDelay(50);
  assert.deepEqual(fake.putNumbers(), [1], 'nothing sent while offline');
  online = true;
  back.resolve();
  await done; // maxAttempts 1: had the offline failure counted, this would have failed
  assert.deepEqual(fake.putNumbers(), [1, 2, 3]);
  assert.deepEqual(fake.sleeps, []);
});

test('progress reports speed and ETA from the clock', async () => {
  const fake = new FakeService({ partSize: 1000 });
  fake.onPut = () => { fake.clock += 1000; }; // 1000 bytes per second
  const events = [];
  await new HoistUpload(makeFile(4000), optionsFor(fake, { concurrency: 1, onProgress: (p) => events.push(p) })).start();
  const mid = events.find((e) => e.state === 'uploading' && e.partsDone === 2);
  assert.equal(mid.bytesDone, 2000);
  assert.equal(mid.speed, 1000);
  assert.equal(mid.eta, 2);
});
