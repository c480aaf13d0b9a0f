// A fake Hoist service and S3 store behind the Transport interface of hoist-upload.js, for the
// unit tests. It keeps to the /v1 contract (create, sign, list parts, complete, delete, get) and
// behaves like the store where it matters: a part PUT is refused with 403 once its URL has
// expired, and refused with 400 when its body does not match the signed checksum header. It
// records every call, so tests can count PUTs and sign requests and watch concurrency.
// Time is a fake clock the tests move; nothing here sleeps for real.

import { crc32c } from '../hoist-upload.js';

/** A promise with its resolve function outside, for holding PUTs until a test lets them go. */
export function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

/** Lets pending promise callbacks run (a few macrotask turns). */
export async function settle(turns = 5) {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** A file of `size` bytes with a recognisable pattern. */
export function makeFile(size, { name = 'data.bin', lastModified = 1_700_000_000_000, seed = 1 } = {}) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return new File([bytes], name, { lastModified });
}

function crc32cBase64(bytes) {
  const c = crc32c(bytes);
  return btoa(String.fromCharCode(c >>> 24, (c >>> 16) & 0xff, (c >>> 8) & 0xff, c & 0xff));
}

function json(status, body, headers = {}) {
  const h = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
  return { status, headers: { get: (k) => h.get(k.toLowerCase()) ?? null }, body, text: JSON.stringify(body) };
}

function apiError(status, code, message, headers) {
  return json(status, { error: { code, message } }, headers);
}

export class FakeService {
  /**
   * @param {object} [o]
   * @param {number} [o.partSize]
   * @param {number} [o.urlTtlMs] validity of a signed URL
   * @param {number} [o.start] the clock's start (ms)
   */
  constructor({ partSize = 1000, urlTtlMs = 15 * 60_000, start = Date.UTC(2026, 0, 1) } = {}) {
    this.partSize = partSize;
    this.urlTtlMs = urlTtlMs;
    this.clock = start;
    this.token = 'tok';
    /** @type {Map<string, any>} */
    this.uploads = new Map();
    /** Every service call: { method, path, body }. */
    this.calls = [];
    /** Every part PUT that reached the store: { id, partNumber, status }. */
    this.puts = [];
    this.inFlight = 0;
    this.maxInFlight = 0;
    /** Optional hook run when a PUT arrives; it may return a response to send instead. */
    this.onPut = null;
    /** Optional hook run for each service call; it may return a response to send instead. */
    this.onCall = null;
    /** Delays handed to sleep(). */
    this.sleeps = [];
    this.nextId = 1;
  }

  now = () => this.clock;

  /** A sleep that records the delay and moves the clock, without waiting. */
  sleep = async (ms, signal) => {
    this.sleeps.push(ms);
    this.clock += ms;
    await settle(1);
  };

  /** Sign requests, as lists of part numbers. */
  signed() {
    return this.calls.filter((c) => c.method === 'POST' && /\/parts$/.test(c.path)).map((c) => c.body.part_numbers);
  }

  /** Part numbers of the PUTs that reached the store, in order. */
  putNumbers() {
    return this.puts.map((p) => p.partNumber);
  }

  transport() {
    return {
      fetchJson: async (req) => {
        await settle(1);
        const path = new URL(req.url).pathname;
        this.calls.push({ method: req.method, path, body: req.body });
        const hooked = await this.onCall?.({ method: req.method, path, body: req.body });
        if (hooked) return hooked;
        if (req.headers.authorization !== `Bearer ${this.token}`) {
          return apiError(401, 'unauthorized', 'The token is missing or wrong.');
        }
        return this.#route(req.method, path, req.body);
      },
      putPart: (req) => this.#put(req),
    };
  }

  #route(method, path, body) {
    const date = { date: new Date(this.clock).toUTCString() };
    if (method === 'POST' && path === '/v1/uploads') {
      const id = `up${this.nextId++}`;
      const part_count = Math.max(1, Math.ceil(body.size / this.partSize));
      const u = {
        id, key: `uploads/${id}/${body.filename}`, filename: body.filename, size: body.size,
        content_type: body.content_type, checksum_algorithm: body.checksum_algorithm,
        part_size: this.partSize, part_count, state: 'created', parts: new Map(),
        expires_at: new Date(this.clock + 86_400_000).toISOString(),
      };
      this.uploads.set(id, u);
      return json(201, { id, key: u.key, part_size: u.part_size, part_count, expires_at: u.expires_at }, date);
    }
    const m = /^\/v1\/uploads\/([^/]+)(\/parts|\/complete)?$/.exec(path);
    const u = m && this.uploads.get(m[1]);
    if (!u) return apiError(404, 'upload_not_found', 'No such upload.');
    const live = u.state === 'created' || u.state === 'uploading';
    if (method === 'GET' && !m[2]) {
      const { parts, checksum_algorithm, ...info } = u;
      return json(200, info, date);
    }
    if (method === 'DELETE' && !m[2]) {
      u.state = 'aborted';
      u.parts.clear();
      return json(200, { id: u.id, state: 'aborted' }, date);
    }
    if (!live) return apiError(409, 'upload_not_active', `The upload is ${u.state}.`);
    if (method === 'POST' && m[2] === '/parts') {
      const expires_at = new Date(this.clock + this.urlTtlMs).toISOString();
      const parts = body.part_numbers.map((n) => {
        const headers = {};
        if (u.checksum_algorithm === 'crc32c') headers['x-amz-checksum-crc32c'] = body.checksums[n];
        if (u.checksum_algorithm === 'sha256') headers['x-amz-checksum-sha256'] = body.checksums[n];
        // The store would set this itself; listed here to check that the module leaves it out.
        headers['content-length'] = String(this.sizeOf(u, n));
        const exp = this.clock + this.urlTtlMs;
        return { part_number: n, url: `https://store.test/${u.id}/${n}?exp=${exp}`, expires_at, headers };
      });
      return json(200, { parts }, date);
    }
    if (method === 'GET' && m[2] === '/parts') {
      const parts = [...u.parts].sort((a, b) => a[0] - b[0])
        .map(([part_number, p]) => ({ part_number, etag: p.etag, size: p.size }));
      return json(200, { parts }, date);
    }
    if (method === 'POST' && m[2] === '/complete') {
      const want = Array.from({ length: u.part_count }, (_, i) => i + 1);
      const got = body.parts.map((p) => p.part_number);
      const ok = JSON.stringify(got) === JSON.stringify(want) &&
        body.parts.every((p) => u.parts.get(p.part_number)?.etag === p.etag);
      if (!ok) return apiError(400, 'parts_mismatch', 'The part list does not match the stored parts.');
      u.state = 'completed';
      u.object = new Blob(want.map((n) => u.parts.get(n).bytes));
      return json(200, { location: `https://store.test/${u.key}`, key: u.key, etag: `"multi-${u.part_count}"`, size: u.size }, date);
    }
    return apiError(405, 'method_not_allowed', 'Not part of the contract.');
  }

  sizeOf(u, n) {
    return Math.min(u.size, n * u.part_size) - (n - 1) * u.part_size;
  }

  async #put({ url, headers, body, signal, onProgress }) {
    if (signal.aborted) throw new DOMException('cancelled', 'AbortError');
    const parsed = new URL(url);
    const [, id, n] = parsed.pathname.split('/');
    const partNumber = Number(n);
    const record = { id, partNumber, status: 0, headers };
    this.puts.push(record);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    let onAbort;
    const cancelled = new Promise((_, reject) => {
      onAbort = () => reject(new DOMException('cancelled', 'AbortError'));
      signal.addEventListener('abort', onAbort);
    });
    cancelled.catch(() => {});
    try {
      const hooked = await Promise.race([this.onPut?.(record), cancelled]);
      const res = hooked ?? (await this.#store(id, partNumber, Number(parsed.searchParams.get('exp')), headers, body));
      if (res.status === 200) onProgress(body.size);
      record.status = res.status;
      return res;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.inFlight--;
    }
  }

  async #store(id, partNumber, exp, headers, body) {
    if (this.clock > exp) {
      return { status: 403, etag: null, body: '<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>' };
    }
    const u = this.uploads.get(id);
    if (!u || u.state === 'aborted') {
      return { status: 404, etag: null, body: '<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>' };
    }
    if (headers['content-length'] !== undefined) {
      return { status: 400, etag: null, body: '<Error><Code>Test</Code><Message>content-length is the browser\'s to set</Message></Error>' };
    }
    const bytes = new Uint8Array(await body.arrayBuffer());
    if (bytes.length !== this.sizeOf(u, partNumber)) {
      return { status: 403, etag: null, body: '<Error><Code>SignatureDoesNotMatch</Code><Message>length</Message></Error>' };
    }
    if (u.checksum_algorithm === 'crc32c' && headers['x-amz-checksum-crc32c'] !== crc32cBase64(bytes)) {
      return { status: 400, etag: null, body: '<Error><Code>BadDigest</Code><Message>crc32c</Message></Error>' };
    }
    if (u.checksum_algorithm === 'sha256') {
      const sha = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      if (headers['x-amz-checksum-sha256'] !== btoa(String.fromCharCode(...sha))) {
        return { status: 400, etag: null, body: '<Error><Code>BadDigest</Code><Message>sha256</Message></Error>' };
      }
    }
    const etag = `"${id}-${partNumber}-${crc32c(bytes).toString(16)}"`;
    u.parts.set(partNumber, { etag, size: bytes.length, bytes });
    u.state = 'uploading';
    return { status: 200, etag, body: '' };
  }
}

/** Options for HoistUpload wired to a FakeService, with a memory store and a fake clock. */
export function optionsFor(fake, extra = {}) {
  return {
    endpoint: 'https://hoist.test',
    token: fake.token,
    transport: fake.transport(),
    now: fake.now,
    sleep: fake.sleep,
    random: () => 0.5,
    progressInterval: 0,
    ...extra,
  };
}
