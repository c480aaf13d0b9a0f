// The default transport over real HTTP: HoistUpload in Node (fetch for the service and for the
// part PUTs) against test/fake-server.mjs on 127.0.0.1, the same stand-in the e2e test can use.
// The browser's XMLHttpRequest path is covered by the e2e test in Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { HoistUpload, MemoryResumeStore } from '../hoist-upload.js';

let server;
let endpoint;
let token;

before(async () => {
  server = spawn(process.execPath, [new URL('./fake-server.mjs', import.meta.url).pathname], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => {
    createInterface({ input: server.stdout }).on('line', (line) => {
      endpoint ??= /listening on (\S+)/.exec(line)?.[1];
      token ??= /dev token: (\S+)/.exec(line)?.[1];
      if (endpoint && token) resolve();
    });
  });
});

after(() => server.kill());

test('a file uploads with the default transport and the stored parts are its bytes', async () => {
  const PART = 8 * 1024 * 1024; // fake-server.mjs's part size
  const bytes = new Uint8Array(2 * PART + 4321).map((_, i) => (i * 2654435761) >>> 24);
  const file = new File([bytes], 'node.bin', { lastModified: 1 });
  const events = [];
  const result = await new HoistUpload(file, { endpoint, token, store: new MemoryResumeStore(), onProgress: (p) => events.push(p) }).start();
  const md5 = (b) => createHash('md5').update(b).digest();
  const parts = [0, 1, 2].map((i) => md5(bytes.subarray(i * PART, (i + 1) * PART)));
  assert.equal(result.etag, `"${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-3"`);
  assert.equal(result.size, bytes.length);
  assert.equal(events.at(-1).bytesDone, bytes.length);
});

test("the service's refusal comes back in its own words", async () => {
  const up = new HoistUpload(new File(['x'], 'x.bin'), { endpoint, token: 'wrong', store: null });
  await assert.rejects(up.start(), (e) => e.code === 'unauthorized' && e.status === 401 && /open the link hoist serve printed/.test(e.message));
});
