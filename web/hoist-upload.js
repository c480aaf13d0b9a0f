// hoist-upload.js — uploads one File to S3 through a Hoist service (`hoist serve`), in parallel
// parts that go straight from the browser to the store, resumable across page reloads.
//
//   import { HoistUpload } from '/hoist-upload.js';
//   const up = new HoistUpload(file, { endpoint: location.origin, token, onProgress: p => {} });
//   const result = await up.start();   // → { id, key, etag, size, location, checksum? }
//   up.pause(); up.resume(); await up.abort();
//
// What this module owns: the client side of the service's /v1 API (create, sign, list parts,
// complete, abort), the part schedule, retries, progress, resume state and part checksums. It
// does not own any UI (the page is app.js) nor any policy (the service decides key, part size and
// what is allowed; its refusals are passed on in its own words).
//
// Decisions, and why:
// - Flow: create (POST /v1/uploads) → for each part: checksum → sign (POST …/parts, in batches of
//   `signBatch` parts taken from the head of the queue just before they are sent) → PUT the
//   `Blob.slice` of the part to the signed URL with exactly the headers the service listed → keep
//   the ETag → complete with the sorted list. Bodies are Blob slices, so the browser streams them
//   from disk; the file is never read into memory as a whole.
// - Memory: the CRC32C pass holds one stream chunk at a time, whatever the part size and
//   concurrency; a SHA-256 part is held whole while it is hashed. Each part is read twice, here for
//   its checksum and by the browser as it sends the slice, because sending the bytes read for the
//   checksum was measured far slower (Chromium 148, 2026-11-25, bench/browser_body_sink.mjs: 16 MiB
//   parts to a local server that discards them): an ArrayBuffer or Uint8Array body, by XHR or
//   fetch, went at ~10 MiB/s at any part size from 1 to 16 MiB, and a Blob made of the read bytes
//   at ~90-115 MiB/s, against ~115-160 MiB/s for Blob slices of the file in the same runs.
// - At most `concurrency` PUTs are in flight (default 4: HTTP/1.1 browsers open about 6
//   connections per origin). Parts go out in ascending order. 6 was measured against 4 into a local
//   store (Chromium 148, 2026-11-25): ~10 % faster without checksums, but with CRC32C between 9 %
//   slower and 5 % faster in six paired runs (noise), so 4 stays and leaves connections to the
//   origin for other requests.
// - Retries: network errors, 408, 429 and 5xx are retried with exponential backoff and full jitter,
//   delay = random() · min(cap, base · 2^attempt) (attempt 0 for the first retry), up to
//   `retry.maxAttempts` tries per part or per service call. A 429/503 that carries Retry-After
//   waits that long instead. `random`, `now` and `sleep` are options so that tests get exact delays.
// - A 403 on a part PUT most often means the presigned URL expired (slow link, long pause, laptop
//   asleep): the part is re-signed and retried at once; a second 403 right after a fresh URL is
//   fatal (the signature itself is refused: credentials, clock or policy). A URL whose expiry has
//   passed (with a 30 s margin) is re-signed before use, and a part's URL is looked at only once
//   the part may go (after a pause or an offline wait, not before it). Expiry is measured on the local clock from
//   the sign response's Date header, so a browser whose clock is off does not re-sign forever.
// - Offline: before each part PUT, after a failed PUT and before retrying a service call,
//   `navigator.onLine === false` means waiting for the `online` event instead of backing off; a
//   PUT that failed because the network went away does not count as a failed attempt.
// - pause() stops starting parts (and retries); running PUTs finish. resume() continues.
//   abort() cancels running PUTs, calls DELETE /v1/uploads/{id} and forgets the resume record.
// - A fatal error cancels the running PUTs and rejects start(); the upload is kept on the service
//   and its resume record stays, so a new HoistUpload of the same file continues where it stopped.
//   A HoistUpload is single use.
// - One upload of a file at a time per browser: a Web Lock named after the file is held while it
//   uploads; a second HoistUpload of the same file (another tab) is refused with code 'busy'.
// - Resume: after create, {upload id, key, part size, part count, file fingerprint} is stored under
//   (endpoint, name, size, lastModified) in a ResumeStore (IndexedDB in browsers, memory
//   elsewhere). The fingerprint adds CRC32C of the first and last MiB, so a file that was
//   rewritten in place is not taken for the same one. When the same file is started again, the
//   service's part list (what S3 holds) decides which parts are skipped: a listed part counts
//   only if its size is the planned one. If the service says the upload is gone (404/410, or state
//   aborted, expired or completed) the upload starts afresh and a notice says so.
// - Integrity: each part's checksum (CRC32C by default, or SHA-256, or none) is computed here and
//   sent with the sign request, so the URL binds it and the store checks it. CRC32C is table
//   driven (slicing-by-16) over the chunks of `Blob.stream()`, so memory stays small and the page
//   gets the event loop between chunks. Checksums are computed one at a time, the next batch's
//   while the current parts upload. Measured in headless Chromium 148 on a busy 2-core machine:
//   ~1000 MiB/s over memory, ~280-320 MiB/s including reading the file (reading costs more than
//   hashing). Reading through the stream gave ~10 % more upload throughput than 8 MiB
//   `arrayBuffer()` reads; 16 MiB reads, and reading the next chunk while hashing this one, did
//   not help. On that machine the pass costs ~20-30 % of the upload's throughput because the
//   browser's own upload path already keeps both cores busy; a Web Worker would move the work, not
//   remove it, and was not tried. `checksum: null` skips it. WebCrypto's SHA-256 is not
//   incremental, so a SHA-256 part is read whole.
// - A successful PUT whose ETag cannot be read means the bucket's CORS rules hide it; that is
//   reported as such rather than as a vague failure.
// - All network access goes through a Transport ({ fetchJson, putPart }); the default one uses
//   fetch for the service and XMLHttpRequest for parts (upload progress), or fetch where there is
//   no XMLHttpRequest (Node).

/** @typedef {'crc32c' | 'sha256' | null} ChecksumAlgorithm */

/**
 * @typedef {object} RetryOptions
 * @property {number} [base] first backoff ceiling in ms (default 500)
 * @property {number} [cap] largest backoff ceiling in ms (default 30000)
 * @property {number} [maxAttempts] tries per part or service call, first included (default 10)
 */

/**
 * @typedef {object} HoistUploadOptions
 * @property {string} [endpoint] the service's origin (default: location.origin)
 * @property {string} [token] bearer token for the /v1 API
 * @property {number} [concurrency] parts in flight (default 4)
 * @property {number} [signBatch] parts signed per sign request (default: concurrency)
 * @property {ChecksumAlgorithm} [checksum] per-part checksum (default 'crc32c')
 * @property {string} [contentType] default: file.type or application/octet-stream
 * @property {Record<string, string>} [metadata]
 * @property {(p: Progress) => void} [onProgress]
 * @property {(n: Notice) => void} [onNotice] resumed, restarted, retrying, offline, …
 * @property {number} [progressInterval] ms between byte-progress events (default 100)
 * @property {RetryOptions} [retry]
 * @property {Transport} [transport]
 * @property {ResumeStore | null} [store] default: IndexedDB if present, else memory; null: none
 * @property {{ isOnline(): boolean, waitOnline(signal: AbortSignal): Promise<void> }} [network]
 * @property {() => number} [random] in [0, 1) (default Math.random)
 * @property {() => number} [now] ms (default Date.now)
 * @property {(ms: number, signal: AbortSignal) => Promise<void>} [sleep]
 * @property {LockManager | null} [locks] default navigator.locks; null: no locking
 */

/**
 * @typedef {object} PartProgress
 * @property {number} partNumber
 * @property {number} size
 * @property {number} loaded bytes of this attempt sent so far
 * @property {number} attempt 0 for the first try
 * @property {'signing' | 'sending' | 'retrying'} state signing includes computing the checksum
 */

/**
 * @typedef {object} Progress
 * @property {'preparing' | 'uploading' | 'paused' | 'offline' | 'completing' | 'done' | 'failed' | 'aborted'} state
 * @property {string | null} id upload id once known
 * @property {string | null} key object key once known
 * @property {number} bytesDone parts confirmed plus bytes of running PUTs
 * @property {number} bytesTotal
 * @property {number} partsDone
 * @property {number} partCount 0 until known
 * @property {number} speed bytes per second over the last 5 s (0 when unknown)
 * @property {number | null} eta seconds left, null when unknown
 * @property {PartProgress[]} parts the parts being worked on now
 */

/**
 * @typedef {object} Notice
 * @property {'resumed' | 'restarted' | 'changed' | 'retrying' | 'resigned' | 'offline'} code
 * @property {string} message a sentence for a person
 */

/**
 * @typedef {object} UploadResult
 * @property {string} id
 * @property {string} key
 * @property {string} etag
 * @property {number} size
 * @property {string} location
 * @property {string} [checksum]
 */

/**
 * What the transport returns for a service call.
 * @typedef {object} JsonResponse
 * @property {number} status
 * @property {{ get(name: string): string | null }} headers
 * @property {any} body parsed JSON, or null when the body is not JSON
 * @property {string} text the raw body
 */

/**
 * What the transport returns for a part PUT. It rejects on a network error (or with an error
 * named AbortError when `signal` fires); any HTTP status resolves.
 * @typedef {object} PutResponse
 * @property {number} status
 * @property {string | null} etag the ETag header, null when it is absent or not readable
 * @property {string} body
 */

/**
 * @typedef {object} Transport
 * @property {(req: { method: string, url: string, headers: Record<string, string>, body?: any, signal?: AbortSignal }) => Promise<JsonResponse>} fetchJson
 * @property {(req: { url: string, headers: Record<string, string>, body: Blob, signal: AbortSignal, onProgress: (loaded: number) => void }) => Promise<PutResponse>} putPart
 */

/**
 * Where resume records live. Keys are strings; records are plain JSON-able objects.
 * @typedef {object} ResumeStore
 * @property {(key: string) => Promise<ResumeRecord | undefined>} get
 * @property {(key: string, record: ResumeRecord) => Promise<void>} put
 * @property {(key: string) => Promise<void>} delete
 * @property {() => Promise<ResumeRecord[]>} list every record (for showing interrupted uploads)
 */

/**
 * @typedef {object} Fingerprint
 * @property {string} name
 * @property {number} size
 * @property {number} lastModified
 * @property {string} head CRC32C (base64) of the first MiB
 * @property {string} tail CRC32C (base64) of the last MiB
 */

/**
 * @typedef {object} ResumeRecord
 * @property {string} id
 * @property {string} key
 * @property {number} partSize
 * @property {number} partCount
 * @property {Fingerprint} fingerprint
 * @property {string} endpoint the service it belongs to
 * @property {string} storeKey the key it is stored under (to delete it)
 * @property {number} savedAt ms
 */

const MiB = 1024 * 1024;
/** A URL is re-signed when less than this is left of its validity (ms): covers the time between
 * the check and the store reading the request. */
const URL_MARGIN_MS = 30_000;
/** Speed is measured over this window (ms): long enough to smooth part boundaries. */
const SPEED_WINDOW_MS = 5_000;
/** Headers a browser sets itself and refuses from scripts (Fetch spec, forbidden request headers)
 * that a sign response might still list: the browser sends the right value for the Blob. */
const BROWSER_OWNED_HEADERS = new Set(['content-length', 'host', 'connection', 'expect']);

/** An error a person can act on; `code` is stable, `message` says what happened and what to do. */
export class HoistError extends Error {
  /**
   * @param {string} code e.g. the service's error code, 'cors_etag', 'part_failed', 'aborted'
   * @param {string} message
   * @param {{ status?: number, cause?: unknown }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, { cause: extra.cause });
    this.name = 'HoistError';
    this.code = code;
    /** HTTP status when the error came from a response, else 0. */
    this.status = extra.status ?? 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Retry policy

/**
 * Full-jitter backoff: a uniformly random delay in [0, min(cap, base · 2^attempt)).
 * @param {number} attempt 0 for the first retry
 * @param {{ base: number, cap: number }} policy
 * @param {() => number} random in [0, 1)
 */
export function backoffDelay(attempt, { base, cap }, random) {
  return random() * Math.min(cap, base * 2 ** attempt);
}

/** Statuses worth another try: timeouts, throttling and server-side failures. */
function isRetryableStatus(status) {
  return status === 408 || status === 429 || status >= 500;
}

// ---------------------------------------------------------------------------------------------
// Checksums

/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78) lookup tables for slicing-by-16:
 * table k maps a byte to its CRC contribution k bytes further on (16 KiB, fits the L1 cache). */
const CRC32C_TABLES = (() => {
  const t = new Uint32Array(16 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    let c = t[i];
    for (let k = 1; k < 16; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + i] = c;
    }
  }
  return t;
})();

/** Whether this platform stores words little-endian (every platform browsers run on does). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const NO_WORDS = new Uint32Array(0);

/**
 * CRC32C of `bytes`, continuing from `crc` (the result of the previous chunk, 0 to start).
 * Bytes go one at a time up to a 4-byte boundary, then 16 at a time as four little-endian words;
 * elsewhere only the byte loop runs. Measured over memory: slicing-by-16 ~1000 MiB/s in Chromium
 * 148 and ~1050 in Node 20, against ~690 and ~900 for slicing-by-8 (which was itself ~25 %
 * faster than assembling words from bytes).
 * @param {Uint8Array} bytes
 * @param {number} [crc]
 * @returns {number} unsigned 32-bit
 */
export function crc32c(bytes, crc = 0) {
  const t = CRC32C_TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const head = LITTLE_ENDIAN ? Math.min(bytes.length, (4 - (bytes.byteOffset & 3)) & 3) : bytes.length;
  for (; i < head; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  const wordCount = LITTLE_ENDIAN ? ((bytes.length - i) >>> 4) << 2 : 0;
  const words = wordCount > 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset + i, wordCount) : NO_WORDS;
  for (let j = 0; j < words.length; j += 4) {
    const a = c ^ words[j];
    const b = words[j + 1];
    const d = words[j + 2];
    const e = words[j + 3];
    c = t[3840 + (a & 0xff)] ^ t[3584 + ((a >>> 8) & 0xff)] ^
        t[3328 + ((a >>> 16) & 0xff)] ^ t[3072 + (a >>> 24)] ^
        t[2816 + (b & 0xff)] ^ t[2560 + ((b >>> 8) & 0xff)] ^
        t[2304 + ((b >>> 16) & 0xff)] ^ t[2048 + (b >>> 24)] ^
        t[1792 + (d & 0xff)] ^ t[1536 + ((d >>> 8) & 0xff)] ^
        t[1280 + ((d >>> 16) & 0xff)] ^ t[1024 + (d >>> 24)] ^
        t[768 + (e & 0xff)] ^ t[512 + ((e >>> 8) & 0xff)] ^
        t[256 + ((e >>> 16) & 0xff)] ^ t[e >>> 24];
  }
  i += words.length * 4;
  for (; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** @param {Uint8Array} bytes */
function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

/**
 * The checksum of a Blob as S3's x-amz-checksum-* headers carry it: base64 of the big-endian
 * digest. CRC32C reads the Blob as a stream, one chunk at a time (measured faster than 8 MiB
 * `arrayBuffer()` reads, see the top of this file); SHA-256 reads the whole Blob (WebCrypto has
 * no incremental digest).
 * @param {Blob} blob
 * @param {'crc32c' | 'sha256'} algorithm
 * @returns {Promise<string>}
 */
export async function blobChecksum(blob, algorithm) {
  if (algorithm === 'sha256') {
    if (!globalThis.crypto?.subtle) {
      throw new HoistError('insecure_context', "SHA-256 part checksums need WebCrypto, which browsers offer only on https:// or localhost pages; serve the page over https or use checksum 'crc32c'.");
    }
    return toBase64(new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer())));
  }
  let crc = 0;
  const reader = blob.stream().getReader();
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    crc = crc32c(chunk.value, crc);
  }
  return toBase64(new Uint8Array([crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff]));
}

/**
 * What identifies a file across page loads: its name, size and modification time, and CRC32C of
 * its first and last MiB (so a file rewritten in place with the same size and time is caught).
 * CRC32C rather than SHA-256 because this detects change, not tampering, and it works on plain
 * http pages too, where browsers offer no WebCrypto.
 * @param {File} file
 * @returns {Promise<Fingerprint>}
 */
export async function fingerprint(file) {
  return {
    name: file.name,
    size: file.size,
    lastModified: file.lastModified,
    head: await blobChecksum(file.slice(0, MiB), 'crc32c'),
    tail: await blobChecksum(file.slice(Math.max(0, file.size - MiB)), 'crc32c'),
  };
}

/** @param {Fingerprint} a @param {Fingerprint} b */
function sameFingerprint(a, b) {
  return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified &&
    a.head === b.head && a.tail === b.tail;
}

// ---------------------------------------------------------------------------------------------
// Resume stores

/** Resume records in memory: for tests, and where there is no IndexedDB. */
export class MemoryResumeStore {
  /** @type {Map<string, ResumeRecord>} */
  records = new Map();
  async get(key) { return structuredClone(this.records.get(key)); }
  async put(key, record) { this.records.set(key, structuredClone(record)); }
  async delete(key) { this.records.delete(key); }
  async list() { return [...this.records.values()].map((r) => structuredClone(r)); }
}

/** Resume records in IndexedDB (database `hoist-upload`, object store `uploads`). */
export class IndexedDbResumeStore {
  /** @param {string} [dbName] */
  constructor(dbName = 'hoist-upload') {
    /** Null where IndexedDB cannot be opened (some private modes): uploads then work without
     * resume rather than not at all. @type {Promise<IDBDatabase | null>} */
    this.db = new Promise((resolve, reject) => {
      const open = indexedDB.open(dbName, 1);
      open.onupgradeneeded = () => open.result.createObjectStore('uploads');
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    }).catch(() => null);
  }

  /** Runs one request in a transaction and resolves with its result. */
  async #run(mode, makeRequest) {
    const db = await this.db;
    if (!db) return undefined;
    return new Promise((resolve, reject) => {
      const req = makeRequest(db.transaction('uploads', mode).objectStore('uploads'));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  get(key) { return this.#run('readonly', (s) => s.get(key)); }
  async put(key, record) { await this.#run('readwrite', (s) => s.put(record, key)); }
  async delete(key) { await this.#run('readwrite', (s) => s.delete(key)); }
  async list() { return (await this.#run('readonly', (s) => s.getAll())) ?? []; }
}

// ---------------------------------------------------------------------------------------------
// Default transport and environment

/** @returns {Transport} fetch for the service; XMLHttpRequest (or fetch) for part PUTs. */
export function defaultTransport() {
  return {
    async fetchJson({ method, url, headers, body, signal }) {
      const res = await fetch(url, {
        method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let json = null;
      try { json = text ? JSON.parse(text) : null; } catch { /* not JSON: callers use text */ }
      return { status: res.status, headers: res.headers, body: json, text };
    },
    putPart: typeof XMLHttpRequest === 'function' ? xhrPut : fetchPut,
  };
}

/** A part PUT with upload progress. */
function xhrPut({ url, headers, body, signal, onProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => resolve({
      status: xhr.status, etag: xhr.getResponseHeader('ETag'), body: xhr.responseText,
    });
    xhr.onerror = () => reject(new TypeError('network error'));
    xhr.ontimeout = xhr.onerror;
    const onAbort = () => xhr.abort();
    xhr.onabort = () => reject(new DOMException('part upload cancelled', 'AbortError'));
    xhr.onloadend = () => signal.removeEventListener('abort', onAbort);
    if (signal.aborted) { reject(new DOMException('part upload cancelled', 'AbortError')); return; }
    signal.addEventListener('abort', onAbort);
    xhr.send(body);
  });
}

/** A part PUT where there is no XMLHttpRequest (Node): progress only at the end. */
async function fetchPut({ url, headers, body, signal, onProgress }) {
  const res = await fetch(url, { method: 'PUT', headers, body, signal });
  const text = await res.text();
  if (res.ok) onProgress(body.size);
  return { status: res.status, etag: res.headers.get('ETag'), body: text };
}

/** navigator.onLine and the window's `online` event, where they exist. */
const browserNetwork = {
  isOnline: () => globalThis.navigator?.onLine !== false,
  waitOnline: (signal) => new Promise((resolve) => {
    const done = () => {
      globalThis.removeEventListener?.('online', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    globalThis.addEventListener?.('online', done);
    signal.addEventListener('abort', done);
  }),
};

/** setTimeout that ends early (resolving) when `signal` fires; callers check the signal. */
function sleepFor(ms, signal) {
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve(); };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/** A resume store as HoistUpload makes one when none is given: IndexedDB in browsers, else
 * memory. Pass one store to several uploads to list their records (a page does). */
export function defaultStore() {
  return typeof indexedDB === 'undefined' ? new MemoryResumeStore() : new IndexedDbResumeStore();
}

/** The S3 error code and message of an XML error body, for messages a person reads. */
function s3ErrorText(xml) {
  const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(xml)?.[1];
  return [code, message].filter(Boolean).join(': ') || 'no error details';
}

// ---------------------------------------------------------------------------------------------
// The upload

/** Uploads one File; see the top of this file for the behaviour. */
export class HoistUpload {
  #file;
  #endpoint;
  #token;
  #concurrency;
  #signBatch;
  #checksum;
  #contentType;
  #metadata;
  #onProgress;
  #onNotice;
  #progressInterval;
  #retry;
  #transport;
  #store;
  #network;
  #random;
  #now;
  #sleep;
  #locks;

  /** 'idle' → 'preparing' → 'uploading' → 'completing' → 'done' | 'failed' | 'aborted' */
  #phase = 'idle';
  #paused = false;
  #offline = false;
  /** Resolvers of workers waiting while paused; called by resume() and abort(). */
  #wakers = [];
  /** Fires on abort() and on a fatal error: cancels PUTs, sleeps and waits. */
  #stop = new AbortController();
  #aborted = false;
  /** @type {Promise<unknown> | null} settles once the upload exists (or failed to) */
  #opened = null;
  #resumeKey = '';

  // The plan, once the upload exists.
  /** @type {string | null} */ #id = null;
  /** @type {string | null} */ #key = null;
  #partSize = 0;
  #partCount = 0;
  /** Part numbers not yet taken by a worker, ascending. @type {number[]} */
  #queue = [];
  /** Confirmed parts: number → ETag. @type {Map<number, string>} */
  #etags = new Map();
  /** Parts being worked on. @type {Map<number, PartProgress>} */
  #active = new Map();
  /** Signed URLs: number → { url, headers, expiresAt (local ms) }. */
  #urls = new Map();
  /** Sign requests in flight: number → promise. */
  #signing = new Map();
  /** Checksums already computed: number → base64. */
  #sums = new Map();
  /** Serialises checksum computation: one part read at a time. @type {Promise<unknown>} */
  #checksumChain = Promise.resolve();

  // Progress bookkeeping.
  #bytesConfirmed = 0;
  /** @type {{ t: number, bytes: number }[]} */
  #samples = [];
  #lastEmit = -Infinity;

  /**
   * @param {File} file
   * @param {HoistUploadOptions} [options]
   */
  constructor(file, options = {}) {
    this.#file = file;
    this.#endpoint = options.endpoint ?? globalThis.location?.origin;
    if (!this.#endpoint) throw new TypeError('HoistUpload: options.endpoint is required here');
    this.#token = options.token ?? '';
    this.#concurrency = Math.max(1, Math.floor(options.concurrency ?? 4));
    this.#signBatch = Math.max(1, Math.floor(options.signBatch ?? this.#concurrency));
    this.#checksum = options.checksum === undefined ? 'crc32c' : options.checksum;
    if (![null, 'crc32c', 'sha256'].includes(this.#checksum)) {
      throw new TypeError(`HoistUpload: checksum must be 'crc32c', 'sha256' or null`);
    }
    this.#contentType = options.contentType || file.type || 'application/octet-stream';
    this.#metadata = options.metadata;
    this.#onProgress = options.onProgress ?? (() => {});
    this.#onNotice = options.onNotice ?? (() => {});
    this.#progressInterval = options.progressInterval ?? 100;
    this.#retry = { base: 500, cap: 30_000, maxAttempts: 10, ...options.retry };
    this.#transport = options.transport ?? defaultTransport();
    this.#store = options.store === undefined ? defaultStore() : options.store;
    this.#network = options.network ?? browserNetwork;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? sleepFor;
    this.#locks = options.locks === undefined ? globalThis.navigator?.locks ?? null : options.locks;
  }

  /** The upload id, once created or resumed. */
  get id() { return this.#id; }

  /** The current state, as in progress events. */
  get state() {
    if (this.#phase === 'uploading' && this.#paused) return 'paused';
    if (this.#phase === 'uploading' && this.#offline) return 'offline';
    return this.#phase;
  }

  /**
   * Runs the upload to the end. Rejects with a HoistError (code 'aborted' after abort()).
   * @returns {Promise<UploadResult>}
   */
  async start() {
    if (this.#phase !== 'idle') throw new Error('HoistUpload.start() runs once; create a new HoistUpload to try again (it resumes)');
    this.#setPhase('preparing');
    try {
      const fp = await fingerprint(this.#file);
      this.#resumeKey = [this.#endpoint, fp.name, fp.size, fp.lastModified].join('\n');
      return await this.#exclusively(() => this.#run(fp));
    } catch (e) {
      if (this.#aborted) throw new HoistError('aborted', 'The upload was cancelled.', { cause: e });
      this.#stop.abort();
      this.#setPhase('failed');
      throw e;
    }
  }

  /**
   * Runs `fn` holding a Web Lock named after the file, so that two uploads of one file in this
   * browser (two tabs, or the file picked twice) never work on the same service upload at once:
   * the second is refused. Without Web Locks (Node, or a page that is not https:// or localhost)
   * `fn` just runs.
   */
  async #exclusively(fn) {
    if (!this.#locks) return fn();
    return this.#locks.request(`hoist-upload\n${this.#resumeKey}`, { ifAvailable: true }, (lock) => {
      if (!lock) {
        throw new HoistError('busy', `${this.#file.name} is already being uploaded in another tab or window of this browser (or twice on this page); let that one finish or cancel it.`);
      }
      return fn();
    });
  }

  /** Everything after the fingerprint: open, send the parts, complete. */
  async #run(fp) {
    this.#throwIfStopped();
    this.#opened = this.#open(fp);
    await this.#opened;
    this.#throwIfStopped();
    this.#setPhase('uploading');
    await this.#sendParts();
    this.#setPhase('completing');
    const parts = [...this.#etags].sort((a, b) => a[0] - b[0])
      .map(([part_number, etag]) => ({ part_number, etag }));
    const result = await this.#api('POST', `/v1/uploads/${this.#id}/complete`, { parts });
    this.#throwIfStopped();
    await this.#store?.delete(this.#resumeKey);
    this.#setPhase('done');
    return { id: this.#id, ...result };
  }

  /** Stops starting parts; the running ones finish. */
  pause() {
    if (this.#paused) return;
    this.#paused = true;
    this.#emit(true);
  }

  /** Continues after pause(). */
  resume() {
    if (!this.#paused) return;
    this.#paused = false;
    this.#wake();
    this.#emit(true);
  }

  /**
   * Cancels running PUTs, deletes the upload on the service and forgets the resume record.
   * Resolves with the service's answer (null if the upload was never created or already done).
   */
  async abort() {
    if (this.#aborted || this.#phase === 'done') return null;
    this.#aborted = true;
    this.#stop.abort();
    this.#wake();
    await this.#opened?.catch(() => {});
    this.#setPhase('aborted');
    if (!this.#id) return null;
    const answer = await this.#api('DELETE', `/v1/uploads/${this.#id}`, undefined,
      { signal: new AbortController().signal });
    await this.#store?.delete(this.#resumeKey);
    return answer;
  }

  // --- opening: resume or create -------------------------------------------------------------

  /** @param {Fingerprint} fp */
  async #open(fp) {
    const record = await this.#store?.get(this.#resumeKey);
    if (record && !sameFingerprint(record.fingerprint, fp)) {
      this.#notice('changed', `${fp.name} changed since its upload was interrupted; uploading it anew.`);
      // The old parts belong to bytes that no longer exist, so nothing can resume that upload:
      // delete it (best effort) rather than leave an incomplete multipart upload behind.
      await this.#api('DELETE', `/v1/uploads/${record.id}`).catch(() => {});
      await this.#store.delete(this.#resumeKey);
    } else if (record && (await this.#tryResume(record))) {
      return;
    }
    this.#throwIfStopped();
    // The create request itself is not cancelled by abort(): once sent, the upload may exist, and
    // abort() waits for its id to delete it rather than leave it behind.
    const created = await this.#api('POST', '/v1/uploads', {
      filename: this.#file.name,
      size: this.#file.size,
      content_type: this.#contentType,
      checksum_algorithm: this.#checksum,
      ...(this.#metadata ? { metadata: this.#metadata } : {}),
    }, { cancellable: false });
    this.#plan(created, []);
    await this.#store?.put(this.#resumeKey, {
      id: created.id, key: created.key, partSize: created.part_size, partCount: created.part_count,
      fingerprint: fp, endpoint: this.#endpoint, storeKey: this.#resumeKey, savedAt: this.#now(),
    });
  }

  /** Continues a recorded upload if the service still has it; false means start afresh. */
  async #tryResume(record) {
    const gone = async (why) => {
      this.#notice('restarted', `The earlier upload of ${this.#file.name} cannot be continued (${why}); starting again from the beginning.`);
      await this.#store.delete(this.#resumeKey);
      return false;
    };
    let info;
    let listed;
    try {
      info = await this.#api('GET', `/v1/uploads/${record.id}`);
      if (['aborted', 'expired', 'completed'].includes(info.state)) return gone(`it was ${info.state}`);
      if (info.part_size !== record.partSize || info.part_count !== record.partCount) {
        return gone('its part plan differs from the one recorded');
      }
      listed = await this.#api('GET', `/v1/uploads/${record.id}/parts`);
    } catch (e) {
      if (e instanceof HoistError && (e.status === 404 || e.status === 410)) return gone('the service no longer knows it');
      throw e;
    }
    this.#plan(info, listed.parts);
    this.#notice('resumed', `Resuming ${this.#file.name}: ${this.#etags.size} of ${this.#partCount} parts are already uploaded.`);
    return true;
  }

  /**
   * Sets the plan from the service's answer. `listed` is what S3 already holds (resume): a part
   * counts as done only if its number is in the plan and its size is the planned one.
   */
  #plan(upload, listed) {
    this.#id = upload.id;
    this.#key = upload.key;
    this.#partSize = upload.part_size;
    this.#partCount = upload.part_count;
    this.#etags = new Map();
    this.#bytesConfirmed = 0;
    for (const p of listed) {
      const n = p.part_number;
      if (n >= 1 && n <= this.#partCount && p.size === this.#sizeOf(n) && !this.#etags.has(n)) {
        this.#etags.set(n, p.etag);
        this.#bytesConfirmed += p.size;
      }
    }
    this.#queue = [];
    for (let n = 1; n <= this.#partCount; n++) if (!this.#etags.has(n)) this.#queue.push(n);
  }

  /** Part n's byte range: every part is part_size long except the last. */
  #rangeOf(n) {
    const start = (n - 1) * this.#partSize;
    return [start, Math.min(this.#file.size, start + this.#partSize)];
  }

  #sizeOf(n) {
    const [start, end] = this.#rangeOf(n);
    return end - start;
  }

  // --- parts ---------------------------------------------------------------------------------

  /** Runs `concurrency` workers over the queue; the first fatal error stops them all. */
  async #sendParts() {
    this.#samples = [{ t: this.#now(), bytes: this.#bytesConfirmed }];
    this.#emit(true);
    const workers = Array.from({ length: Math.min(this.#concurrency, this.#queue.length) }, async () => {
      while (this.#queue.length > 0) {
        await this.#gate();
        const n = this.#queue.shift();
        if (n === undefined) return;
        const etag = await this.#sendPart(n);
        this.#etags.set(n, etag);
        this.#active.delete(n);
        this.#bytesConfirmed += this.#sizeOf(n);
        this.#emit(true);
      }
    });
    try {
      await Promise.all(workers);
    } catch (e) {
      this.#stop.abort(); // the others stop at their next await
      throw e;
    }
  }

  /** Sends part n until it is stored; returns its ETag or throws a fatal error. */
  async #sendPart(n) {
    const [start, end] = this.#rangeOf(n);
    /** @type {PartProgress} */
    const part = { partNumber: n, size: end - start, loaded: 0, attempt: 0, state: 'signing' };
    this.#active.set(n, part);
    let resignedAfter403 = false;
    for (let attempt = 0; ;) {
      part.attempt = attempt;
      const signed = await this.#readyUrl(n);
      part.state = 'sending';
      part.loaded = 0;
      let res;
      try {
        res = await this.#transport.putPart({
          url: signed.url,
          headers: signed.headers,
          body: this.#file.slice(start, end),
          signal: this.#stop.signal,
          onProgress: (loaded) => { part.loaded = loaded; this.#emit(false); },
        });
      } catch (e) {
        this.#throwIfStopped(e);
        if (!this.#network.isOnline()) continue; // the gate waits for `online`; not a failed try
        res = { status: 0, etag: null, body: String(e?.message ?? e) };
      }
      if (res.status >= 200 && res.status < 300) {
        if (!res.etag) {
          throw new HoistError('cors_etag', "Part uploaded, but its ETag is not readable: the bucket's CORS rules must expose the ETag header (ExposeHeaders: ETag).");
        }
        return res.etag;
      }
      part.loaded = 0;
      const why = res.status === 0 ? `network error (${res.body})` : `${res.status} ${s3ErrorText(res.body)}`;
      if (res.status === 403) {
        this.#urls.delete(n);
        if (resignedAfter403) {
          throw new HoistError('part_refused', `The store refused part ${n} even with a freshly signed URL (${why}). The service's signing credentials or clock may be wrong.`, { status: 403 });
        }
        resignedAfter403 = true;
        this.#notice('resigned', `Part ${n}: the store refused its URL (${why}); signing it again.`);
        continue;
      }
      resignedAfter403 = false;
      if (res.status !== 0 && !isRetryableStatus(res.status)) {
        throw new HoistError('part_refused', `The store refused part ${n}: ${why}.`, { status: res.status });
      }
      attempt += 1;
      if (attempt >= this.#retry.maxAttempts) {
        throw new HoistError('part_failed', `Part ${n} failed ${attempt} times; the last error: ${why}. Check the connection and start the upload again: it resumes.`, { status: res.status });
      }
      const delay = backoffDelay(attempt - 1, this.#retry, this.#random);
      part.state = 'retrying';
      this.#notice('retrying', `Part ${n}: ${why}; retrying in ${(delay / 1000).toFixed(1)} s.`);
      this.#emit(true);
      await this.#sleep(delay, this.#stop.signal);
      this.#throwIfStopped();
    }
  }

  /**
   * Waits until part n may be sent (not paused, online), then returns a URL for it that is valid
   * now. The URL is looked at after the wait, never before: a URL taken before a pause or an
   * offline spell longer than URLs live would reach the store expired, and a 403 right after a
   * re-sign is fatal. Paused or offline again while signing: wait, and look at the URL again.
   */
  async #readyUrl(n) {
    for (;;) {
      // Synchronously when nothing stops it: the worker that took the first part must sign the
      // batch while the parts after it are still queued.
      if (this.#paused || !this.#network.isOnline()) await this.#gate();
      this.#throwIfStopped();
      const signed = await this.#signedUrl(n);
      if (!this.#paused && this.#network.isOnline()) return signed;
    }
  }

  /** A URL for part n that is valid for a while yet, signing a batch when needed. */
  async #signedUrl(n) {
    if (this.#hasFreshUrl(n)) return this.#urls.get(n);
    this.#urls.delete(n);
    if (!this.#signing.has(n)) this.#signBatchFrom(n);
    this.#active.get(n).state = 'signing';
    // A fresh URL is used even if its validity is shorter than the margin: signing again
    // would give no better one.
    const fresh = await this.#signing.get(n);
    this.#throwIfStopped();
    return fresh;
  }

  /** Whether part n has a URL that stays valid for more than the margin. */
  #hasFreshUrl(n) {
    const cached = this.#urls.get(n);
    return cached !== undefined && cached.expiresAt - this.#now() > URL_MARGIN_MS;
  }

  /** Starts one sign request for part n and the next queued parts without a fresh URL. */
  #signBatchFrom(n) {
    const batch = [n];
    for (const m of this.#queue) {
      if (batch.length >= this.#signBatch) break;
      if (!this.#hasFreshUrl(m) && !this.#signing.has(m)) batch.push(m);
    }
    const request = (async () => {
      /** @type {Record<string, string>} */
      const checksums = {};
      if (this.#checksum) {
        for (const m of batch) checksums[m] = await this.#partChecksum(m);
      }
      const body = { part_numbers: batch, ...(this.#checksum ? { checksums } : {}) };
      const sentAt = this.#now();
      const { body: answer, headers } = await this.#apiResponse('POST', `/v1/uploads/${this.#id}/parts`, body);
      const serverNow = Date.parse(headers.get?.('date') ?? '');
      const byNumber = new Map();
      for (const p of answer.parts) {
        const expires = Date.parse(p.expires_at);
        // Validity as the server sees it, counted from when we sent the request (conservative).
        const expiresAt = Number.isNaN(serverNow) ? expires : sentAt + (expires - serverNow);
        const headersToSend = Object.fromEntries(Object.entries(p.headers ?? {})
          .filter(([k]) => !BROWSER_OWNED_HEADERS.has(k.toLowerCase())));
        const entry = { url: p.url, headers: headersToSend, expiresAt };
        this.#urls.set(p.part_number, entry);
        byNumber.set(p.part_number, entry);
      }
      this.#checksumsAhead();
      return byNumber;
    })();
    for (const m of batch) {
      const one = request.then((byNumber) => {
        const entry = byNumber.get(m);
        if (!entry) throw new HoistError('bad_response', `The service did not sign part ${m}.`);
        return entry;
      });
      one.catch(() => {}); // a part whose worker has not asked yet must not raise an unhandled rejection
      this.#signing.set(m, one);
    }
    request.finally(() => { for (const m of batch) this.#signing.delete(m); }).catch(() => {});
  }

  /**
   * Starts the checksums of the next batch while the signed parts upload, so that the next sign
   * request need not wait for them: reading and hashing on this thread overlaps the sending,
   * which the browser does elsewhere.
   */
  #checksumsAhead() {
    if (!this.#checksum) return;
    const next = this.#queue.filter((m) => !this.#hasFreshUrl(m) && !this.#sums.has(m)).slice(0, this.#signBatch);
    for (const m of next) this.#partChecksum(m).catch(() => {}); // a failure shows when the part is signed
  }

  /** The checksum of part n, computed once, one part at a time. */
  #partChecksum(n) {
    const known = this.#sums.get(n);
    if (known) return Promise.resolve(known);
    const run = this.#checksumChain.then(async () => {
      const [start, end] = this.#rangeOf(n);
      const sum = await blobChecksum(this.#file.slice(start, end), this.#checksum);
      this.#sums.set(n, sum);
      return sum;
    });
    this.#checksumChain = run.catch(() => {});
    return run;
  }

  // --- waiting -------------------------------------------------------------------------------

  /** Returns when parts may be sent: not paused, online; throws once stopped. */
  async #gate() {
    for (;;) {
      this.#throwIfStopped();
      if (this.#paused) {
        await new Promise((resolve) => this.#wakers.push(resolve));
      } else if (!this.#network.isOnline()) {
        this.#offline = true;
        this.#notice('offline', 'The network is offline; the upload continues when it is back.');
        this.#emit(true);
        await this.#network.waitOnline(this.#stop.signal);
        this.#offline = false;
        this.#emit(true);
      } else {
        return;
      }
    }
  }

  #wake() {
    for (const w of this.#wakers.splice(0)) w();
  }

  /** Throws if abort() was called or another part failed for good. */
  #throwIfStopped(cause) {
    if (this.#stop.signal.aborted) {
      throw new HoistError('stopped', 'The upload was stopped.', { cause });
    }
  }

  // --- the service ---------------------------------------------------------------------------

  /** Calls the service and returns the JSON body; see #apiResponse. */
  async #api(method, path, body, options) {
    return (await this.#apiResponse(method, path, body, options)).body;
  }

  /**
   * Calls the service with the token, retrying network errors, 408, 429 and 5xx; other refusals
   * become a HoistError carrying the service's own code and message. `signal` (default: the
   * upload's stop signal) ends the retries; it cancels a request in flight unless `cancellable`
   * is false.
   */
  async #apiResponse(method, path, body, { signal = this.#stop.signal, cancellable = true } = {}) {
    const headers = { authorization: `Bearer ${this.#token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const url = new URL(path, this.#endpoint).href;
    for (let attempt = 0; ; attempt++) {
      let res = null;
      let failure;
      try {
        res = await this.#transport.fetchJson({
          method, url, headers, body, signal: cancellable ? signal : undefined,
        });
      } catch (e) {
        if (signal.aborted) throw new HoistError('stopped', 'The upload was stopped.', { cause: e });
        failure = new HoistError('network', `Could not reach the Hoist service at ${this.#endpoint} (${e?.message ?? e}).`, { cause: e });
      }
      if (res && res.status >= 200 && res.status < 300) return res;
      if (res) {
        const err = res.body?.error;
        failure = new HoistError(err?.code ?? `http_${res.status}`,
          err?.message ?? `The service answered ${method} ${path} with ${res.status}.`, { status: res.status });
        if (!isRetryableStatus(res.status)) throw failure;
      }
      if (attempt + 1 >= this.#retry.maxAttempts) throw failure;
      const retryAfter = Number(res?.headers.get?.('retry-after') ?? NaN);
      const delay = (res?.status === 429 || res?.status === 503) && retryAfter >= 0
        ? retryAfter * 1000
        : backoffDelay(attempt, this.#retry, this.#random);
      if (!this.#network.isOnline()) await this.#network.waitOnline(signal);
      else await this.#sleep(delay, signal);
      if (signal.aborted) throw new HoistError('stopped', 'The upload was stopped.');
    }
  }

  // --- events --------------------------------------------------------------------------------

  #setPhase(phase) {
    this.#phase = phase;
    this.#emit(true);
  }

  #notice(code, message) {
    this.#onNotice({ code, message });
  }

  /** Sends a progress event; byte-only updates at most every `progressInterval` ms. */
  #emit(force) {
    const t = this.#now();
    if (!force && t - this.#lastEmit < this.#progressInterval) return;
    this.#lastEmit = t;
    let inFlight = 0;
    for (const p of this.#active.values()) inFlight += p.loaded;
    const bytesDone = Math.min(this.#file.size, this.#bytesConfirmed + inFlight);
    this.#samples.push({ t, bytes: bytesDone });
    while (this.#samples.length > 2 && t - this.#samples[1].t >= SPEED_WINDOW_MS) this.#samples.shift();
    const first = this.#samples[0];
    const elapsed = (t - first.t) / 1000;
    const speed = elapsed > 0 ? Math.max(0, (bytesDone - first.bytes) / elapsed) : 0;
    this.#onProgress({
      state: /** @type {Progress['state']} */ (this.state),
      id: this.#id,
      key: this.#key,
      bytesDone,
      bytesTotal: this.#file.size,
      partsDone: this.#etags.size,
      partCount: this.#partCount,
      speed,
      eta: speed > 0 ? (this.#file.size - bytesDone) / speed : null,
      parts: [...this.#active.values()].map((p) => ({ ...p })),
    });
  }
}
