// A stand-in for `hoist serve --dev` over real HTTP, for working on the page and the end-to-end
// test without the Rust build: the /v1 API and the static files of web/ on one port, and an
// S3-like part store on another (cross-origin, with CORS that exposes ETag, as the real store).
// It keeps to the API contract the page is written against; it is not a model of S3 beyond
// what the browser meets: presigned part URLs that expire (403 "Request has expired") and are
// bound to their length and checksum, ETags, ListParts, Complete, Abort.
//
//   node test/fake-server.mjs [--url-ttl SECONDS]
// prints `listening on http://ADDR` and `dev token: TOKEN` like `hoist serve --dev`.

import http from 'node:http';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32c } from '../hoist-upload.js';

const WEB = fileURLToPath(new URL('..', import.meta.url));
const PART_SIZE = 8 * 1024 * 1024;
const ttlArg = process.argv.indexOf('--url-ttl');
const URL_TTL_MS = (ttlArg > 0 ? Number(process.argv[ttlArg + 1]) : 900) * 1000;
const TOKEN = randomBytes(12).toString('hex');
const SECRET = randomBytes(16);
const uploads = new Map();
let nextId = 1;

const sign = (s) => createHmac('sha256', SECRET).update(s).digest('hex');
const crcB64 = (buf) => { const c = crc32c(buf); return Buffer.from([c >>> 24, c >>> 16, c >>> 8, c].map((x) => x & 0xff)).toString('base64'); };
const sizeOf = (u, n) => Math.min(u.size, n * u.part_size) - (n - 1) * u.part_size;

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}
const fail = (res, status, code, message) => send(res, status, { error: { code, message } });

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };

async function service(req, res) {
  const url = new URL(req.url, 'http://x');
  if (!url.pathname.startsWith('/v1/')) {
    const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
    if (!['index.html', 'app.js', 'style.css', 'hoist-upload.js'].includes(name)) return fail(res, 404, 'not_found', 'No such page.');
    res.writeHead(200, { 'content-type': TYPES[extname(name)] });
    return res.end(await readFile(join(WEB, name)));
  }
  if (req.headers.authorization !== `Bearer ${TOKEN}`) return fail(res, 401, 'unauthorized', 'The token is missing or wrong: open the link hoist serve printed.');
  const input = req.method === 'POST' ? JSON.parse((await body(req)).toString() || '{}') : null;
  if (req.method === 'POST' && url.pathname === '/v1/uploads') {
    const id = `up${nextId++}`;
    const part_count = Math.max(1, Math.ceil(input.size / PART_SIZE));
    const u = {
      id, key: `uploads/${id}/${input.filename}`, filename: input.filename, size: input.size,
      content_type: input.content_type, part_size: PART_SIZE, part_count, state: 'created',
      checksum_algorithm: input.checksum_algorithm, parts: new Map(),
      created_at: new Date().toISOString(), expires_at: new Date(Date.now() + 86_400_000).toISOString(),
    };
    uploads.set(id, u);
    return send(res, 201, { id, key: u.key, part_size: PART_SIZE, part_count, expires_at: u.expires_at });
  }
  const m = /^\/v1\/uploads\/([^/]+)(\/parts|\/complete)?$/.exec(url.pathname);
  const u = m && uploads.get(m[1]);
  if (!u) return fail(res, 404, 'upload_not_found', 'No such upload.');
  if (req.method === 'GET' && !m[2]) {
    const { parts, checksum_algorithm, ...info } = u;
    return send(res, 200, info);
  }
  if (req.method === 'DELETE' && !m[2]) {
    u.state = 'aborted';
    u.parts.clear();
    return send(res, 200, { id: u.id, state: 'aborted' });
  }
  if (u.state !== 'created' && u.state !== 'uploading') return fail(res, 409, 'upload_not_active', `The upload is ${u.state}.`);
  if (req.method === 'GET' && m[2] === '/parts') {
    const parts = [...u.parts].sort((a, b) => a[0] - b[0]).map(([part_number, p]) => ({ part_number, etag: p.etag, size: p.bytes.length }));
    return send(res, 200, { parts });
  }
  if (req.method === 'POST' && m[2] === '/parts') {
    const exp = Date.now() + URL_TTL_MS;
    const parts = input.part_numbers.map((n) => {
      const sum = input.checksums?.[n] ?? '';
      const path = `/${u.id}/${n}`;
      const q = `exp=${exp}&len=${sizeOf(u, n)}`;
      return {
        part_number: n,
        url: `${storeOrigin}${path}?${q}&sig=${sign(`${path}?${q}&${sum}`)}`,
        expires_at: new Date(exp).toISOString(),
        headers: sum ? { 'x-amz-checksum-crc32c': sum } : {},
      };
    });
    return send(res, 200, { parts });
  }
  if (req.method === 'POST' && m[2] === '/complete') {
    for (let n = 1; n <= u.part_count; n++) {
      if (u.parts.get(n)?.etag !== input.parts[n - 1]?.etag) return fail(res, 400, 'parts_mismatch', `Part ${n} is missing or differs.`);
    }
    u.state = 'completed';
    u.completed_at = new Date().toISOString();
    const ordered = [...u.parts].sort((a, b) => a[0] - b[0]).map(([, p]) => p.bytes);
    // The S3 multipart ETag: MD5 of the parts' MD5 digests, then "-" and the part count.
    const md5s = Buffer.concat(ordered.map((b) => createHash('md5').update(b).digest()));
    const etag = `"${createHash('md5').update(md5s).digest('hex')}-${ordered.length}"`;
    const size = ordered.reduce((n, b) => n + b.length, 0);
    return send(res, 200, { location: `${storeOrigin}/${u.key}`, key: u.key, etag, size });
  }
  return fail(res, 405, 'method_not_allowed', 'Not in the API.');
}

const s3Error = (res, status, code, message, cors) => {
  res.writeHead(status, { 'content-type': 'application/xml', ...cors });
  res.end(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`);
};

async function store(req, res) {
  const cors = req.headers.origin ? { 'access-control-allow-origin': req.headers.origin, 'access-control-expose-headers': 'ETag' } : {};
  if (req.method === 'OPTIONS') {
    res.writeHead(200, {
      ...cors, 'access-control-allow-methods': 'PUT',
      'access-control-allow-headers': req.headers['access-control-request-headers'] ?? '*',
    });
    return res.end();
  }
  const url = new URL(req.url, 'http://x');
  const bytes = await body(req);
  const sum = req.headers['x-amz-checksum-crc32c'] ?? '';
  const q = `exp=${url.searchParams.get('exp')}&len=${url.searchParams.get('len')}`;
  if (req.method !== 'PUT' || url.searchParams.get('sig') !== sign(`${url.pathname}?${q}&${sum}`)) return s3Error(res, 403, 'SignatureDoesNotMatch', 'The signature does not match.', cors);
  if (Date.now() > Number(url.searchParams.get('exp'))) return s3Error(res, 403, 'AccessDenied', 'Request has expired', cors);
  if (bytes.length !== Number(url.searchParams.get('len'))) return s3Error(res, 403, 'SignatureDoesNotMatch', 'Content-Length differs from the signed one.', cors);
  if (sum && crcB64(bytes) !== sum) return s3Error(res, 400, 'BadDigest', 'The CRC32C you specified did not match the calculated checksum.', cors);
  const [, id, n] = url.pathname.split('/');
  const u = uploads.get(id);
  if (!u || u.state === 'aborted' || u.state === 'completed') return s3Error(res, 404, 'NoSuchUpload', 'The specified upload does not exist.', cors);
  const etag = `"${createHash('md5').update(bytes).digest('hex')}"`;
  u.parts.set(Number(n), { etag, bytes });
  u.state = 'uploading';
  res.writeHead(200, { etag, ...cors });
  res.end();
}

const handle = (fn) => (req, res) => fn(req, res).catch((e) => { console.error(e); fail(res, 500, 'internal', String(e)); });
const storeServer = http.createServer(handle(store)).listen(0, '127.0.0.1');
await new Promise((r) => storeServer.once('listening', r));
const storeOrigin = `http://127.0.0.1:${storeServer.address().port}`;
const api = http.createServer(handle(service)).listen(0, '127.0.0.1');
await new Promise((r) => api.once('listening', r));
console.log(`listening on http://127.0.0.1:${api.address().port}`);
console.log(`dev token: ${TOKEN}`);
