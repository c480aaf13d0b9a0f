// The upload page: token handling, file picking (drop or picker), a queue of uploads with a
// progress bar, pause/resume, retry and cancel each, overall progress, and the finished list.
// All upload work is HoistUpload's; this file only wires it to the page.
//
// Decisions:
// - At most MAX_ACTIVE files upload at once, each with PART_CONCURRENCY parts in flight: 2 × 3 =
//   6 PUTs, the connection limit browsers keep per origin over HTTP/1.1, so no part waits inside
//   the browser with its URL ageing. Other files wait their turn ("Queued").
// - The token comes from the URL fragment `#token=…` (the link `hoist serve --dev` prints; a
//   fragment never reaches a server log) or the form, is kept in localStorage and is removed
//   from the address bar once read.
// - A failed upload keeps its parts; Retry starts a new HoistUpload of the same file, which
//   resumes. Cancel deletes the upload on the service.
// - After an upload, the jobs its pipeline rules started (video transcoding) are followed live
//   over server-sent events (the job's `events_url` carries its own token); when one succeeds its
//   outputs are shown (the poster and a player of the video), when it fails its message is.

import { HoistUpload, defaultStore } from './hoist-upload.js';

const MAX_ACTIVE = 2;
const PART_CONCURRENCY = 3;
const TOKEN_KEY = 'hoist.token';

/** @param {string} sel @param {ParentNode} [root] @returns {any} */
const $ = (sel, root = document) => root.querySelector(sel);
const store = defaultStore();

/** @typedef {{ file: File, li: HTMLLIElement, up: HoistUpload | null, state: string, done: number, speed: number, eta: number | null }} Entry */
/** @type {Entry[]} every entry since the list was last empty (the "all files" bar counts them) */
let batch = [];

// --- token -------------------------------------------------------------------------------------

function readToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    localStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return localStorage.getItem(TOKEN_KEY) ?? '';
}

/** Shows whether a token is set; the token card stays open only while none is. */
function showToken(saved) {
  $('#token-status').textContent = token ? (saved ? 'Token saved in this browser.' : '') : 'No token yet: enter it to upload.';
  $('#token-summary').textContent = token ? 'set' : 'needed';
  if (!token) $('#token-card').open = true;
}

let token = readToken();
$('#token').value = token;
showToken(false);
$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('#token').value.trim();
  localStorage.setItem(TOKEN_KEY, token);
  showToken(true);
});

// --- formatting --------------------------------------------------------------------------------

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function formatEta(s) {
  if (s === null || !Number.isFinite(s)) return '';
  if (s < 60) return `${Math.ceil(s)} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s left`;
  return `${Math.floor(s / 3600)} h ${Math.ceil((s % 3600) / 60)} min left`;
}

function progressText(done, total, speed, eta) {
  const parts = [`${formatBytes(done)} of ${formatBytes(total)}`];
  if (speed > 0) parts.push(`${formatBytes(speed)}/s`);
  const left = formatEta(eta);
  if (left) parts.push(left);
  return parts.join(' · ');
}

// --- the list ----------------------------------------------------------------------------------

const PENDING = ['queued', 'active', 'paused', 'failed'];

/** @param {File} file */
function addFile(file) {
  // The same file picked again while it is listed: retry it if it failed, else leave it be.
  const listed = batch.find((e) => PENDING.includes(e.state) && e.file.name === file.name &&
    e.file.size === file.size && e.file.lastModified === file.lastModified);
  if (listed) {
    if (listed.state === 'failed') setState(listed, 'queued');
    else message(listed, `${file.name} is already in the list.`);
    return;
  }
  if (!batch.some((e) => PENDING.includes(e.state))) batch = [];
  const li = /** @type {HTMLLIElement} */ ($('#upload-item').content.firstElementChild.cloneNode(true));
  const entry = { file, li, up: null, state: 'queued', done: 0, speed: 0, eta: null };
  $('.name', li).textContent = file.name;
  $('progress', li).setAttribute('aria-label', `Upload of ${file.name}`);
  $('.pause', li).setAttribute('aria-label', `Pause ${file.name}`);
  $('.retry', li).setAttribute('aria-label', `Retry ${file.name}`);
  $('.cancel', li).setAttribute('aria-label', `Cancel ${file.name}`);
  $('.pause', li).addEventListener('click', () => togglePause(entry));
  $('.retry', li).addEventListener('click', () => { setState(entry, 'queued'); pump(); });
  $('.cancel', li).addEventListener('click', () => cancel(entry));
  $('#uploads').append(li);
  batch.push(entry);
  setState(entry, 'queued');
}

/** Starts queued entries while fewer than MAX_ACTIVE run. */
function pump() {
  const running = batch.filter((e) => e.state === 'active' || e.state === 'paused').length;
  const next = batch.filter((e) => e.state === 'queued').slice(0, Math.max(0, MAX_ACTIVE - running));
  for (const entry of next) start(entry);
}

/** @param {Entry} entry */
async function start(entry) {
  if (!token) {
    setState(entry, 'failed', 'Enter the access token first, then press Retry.');
    $('#token').focus();
    pump();
    return;
  }
  const up = new HoistUpload(entry.file, {
    endpoint: location.origin,
    token,
    concurrency: PART_CONCURRENCY,
    store,
    onProgress: (p) => {
      entry.done = p.bytesDone;
      entry.speed = p.state === 'uploading' ? p.speed : 0;
      entry.eta = p.eta;
      if (p.state === 'offline') message(entry, 'Offline: waiting for the network…');
      render(entry);
    },
    onNotice: (n) => { if (n.code !== 'offline') message(entry, n.message); },
  });
  entry.up = up;
  setState(entry, 'active', '');
  try {
    const result = await up.start();
    finished(entry, result);
  } catch (e) {
    if (entry.state !== 'cancelled') setState(entry, 'failed', e.message);
  } finally {
    pump();
  }
}

/** @param {Entry} entry */
function togglePause(entry) {
  if (entry.state === 'active') {
    entry.up.pause();
    setState(entry, 'paused', 'Paused: running parts finish, no new ones start.');
  } else if (entry.state === 'paused') {
    entry.up.resume();
    setState(entry, 'active', '');
  }
}

/** @param {Entry} entry */
async function cancel(entry) {
  const up = entry.up;
  setState(entry, 'cancelled', 'Cancelling…');
  try {
    if (up) await up.abort();
    entry.li.remove();
    batch = batch.filter((e) => e !== entry);
  } catch (e) {
    setState(entry, 'failed', `Could not cancel: ${e.message}`);
  }
  renderOverall();
  pump();
  showInterrupted();
}

/** @param {Entry} entry */
function finished(entry, result) {
  setState(entry, 'done');
  entry.li.remove();
  const row = $('#finished tbody').insertRow(0);
  row.insertCell().textContent = result.key;
  const size = row.insertCell();
  size.textContent = formatBytes(result.size);
  size.className = 'num';
  const processing = row.insertCell();
  processing.className = 'processing';
  processing.textContent = result.jobs?.length ? '' : '—';
  for (const job of result.jobs ?? []) followJob(job, processing);
  $('#finished').hidden = false;
  $('#no-finished').hidden = true;
  renderOverall();
  showInterrupted();
}

// --- processing (jobs) -------------------------------------------------------------------------

const JOB_TEXT = { queued: 'Queued for processing', running: 'Processing', succeeded: 'Ready', failed: 'Processing failed', dead: 'Processing failed', cancelled: 'Processing cancelled' };

/** Follows one job over SSE, showing its state in a block inside `cell`. */
function followJob(job, cell) {
  const box = Object.assign(document.createElement('div'), { className: 'job' });
  box.dataset.job = job.id;
  const text = Object.assign(document.createElement('p'), { className: 'job-state' });
  text.setAttribute('aria-live', 'polite');
  const bar = Object.assign(document.createElement('progress'), { max: 1, value: 0 });
  bar.setAttribute('aria-label', `Processing of ${job.id}`);
  box.append(text, bar);
  cell.append(box);
  const show = (state, progress) => {
    box.dataset.state = state;
    bar.value = progress ?? 0;
    bar.hidden = state !== 'running' && state !== 'queued';
    text.textContent = state === 'running' ? `${JOB_TEXT.running} ${Math.round((progress ?? 0) * 100)} %` : JOB_TEXT[state] ?? state;
  };
  show(job.state, 0);
  let source = null;
  const listen = (url) => {
    source = new EventSource(url);
    source.addEventListener('progress', (e) => { const d = JSON.parse(e.data); show(d.state, d.progress); });
    for (const end of ['succeeded', 'failed', 'dead', 'cancelled']) {
      source.addEventListener(end, () => { source.close(); settle(); });
    }
    // A dropped stream (or an expired URL): look at the job and follow it again if it still runs.
    source.onerror = () => { source.close(); setTimeout(settle, 1000); };
  };
  const settle = async () => {
    const res = await fetch(job.status_url, { headers: { authorization: `Bearer ${token}` } }).catch(() => null);
    if (!res?.ok) { text.textContent = 'Processing status unavailable'; return; }
    const now = await res.json();
    show(now.state, now.progress);
    if (now.state === 'queued' || now.state === 'running') return listen(now.events_url);
    if (now.state === 'succeeded') showOutputs(box, now.outputs);
    else if (now.error) box.append(Object.assign(document.createElement('p'), { className: 'error', role: 'alert', textContent: now.error.message }));
  };
  listen(job.events_url);
}

/** The poster and a player of a finished job's video; links to its other outputs. */
function showOutputs(box, outputs) {
  const poster = outputs.find((o) => o.content_type === 'image/jpeg');
  const video = outputs.find((o) => o.content_type === 'video/mp4');
  if (video) {
    const player = Object.assign(document.createElement('video'), { controls: true, preload: 'metadata', src: video.url });
    if (poster) player.poster = poster.url;
    player.setAttribute('aria-label', `Processed video ${video.name}`);
    if (video.width) { player.width = Math.min(video.width, 320); }
    box.append(player);
  } else if (poster) {
    box.append(Object.assign(document.createElement('img'), { src: poster.url, alt: 'Poster frame', width: 160 }));
  }
  const links = document.createElement('p');
  links.className = 'outputs';
  for (const o of outputs) {
    const a = Object.assign(document.createElement('a'), { href: o.url, textContent: o.name });
    links.append(a, ' ');
  }
  box.append(links);
}

function message(entry, text) {
  $('.message', entry.li).textContent = text;
}

function setState(entry, state, text) {
  entry.state = state;
  entry.li.dataset.state = state;
  if (text !== undefined) message(entry, text);
  const pause = $('.pause', entry.li);
  pause.hidden = !(state === 'active' || state === 'paused');
  pause.textContent = state === 'paused' ? 'Resume' : 'Pause';
  pause.setAttribute('aria-label', `${pause.textContent} ${entry.file.name}`);
  $('.retry', entry.li).hidden = state !== 'failed';
  $('.cancel', entry.li).disabled = state === 'cancelled';
  if (state === 'queued') message(entry, 'Queued');
  render(entry);
}

function render(entry) {
  const total = entry.file.size;
  const bar = $('progress', entry.li);
  bar.value = total ? entry.done / total : (entry.state === 'done' ? 1 : 0);
  const live = entry.state === 'active';
  $('.status', entry.li).textContent = progressText(entry.done, total, live ? entry.speed : 0, live ? entry.eta : null);
  renderOverall();
}

function renderOverall() {
  const counted = batch.filter((e) => e.state !== 'cancelled');
  const pending = counted.some((e) => e.state !== 'done');
  $('#overall').hidden = !pending;
  $('#no-uploads').hidden = $('#uploads').children.length > 0;
  if (!pending) return;
  let total = 0;
  let done = 0;
  let speed = 0;
  for (const e of counted) {
    total += e.file.size;
    done += e.state === 'done' ? e.file.size : e.done;
    if (e.state === 'active') speed += e.speed;
  }
  $('#overall-bar').value = total ? done / total : 0;
  $('#overall-text').textContent = progressText(done, total, speed, speed > 0 ? (total - done) / speed : null);
}

// --- interrupted uploads (resume records) ------------------------------------------------------

async function showInterrupted() {
  const records = await store.list().catch(() => []);
  const busy = new Set(batch.filter((e) => e.state !== 'done').map((e) => e.up?.id));
  const shown = records.filter((r) => r.endpoint === location.origin && !busy.has(r.id));
  $('#interrupted').hidden = shown.length === 0;
  $('#interrupted-list').replaceChildren(...shown.map((r) => {
    const li = document.createElement('li');
    li.className = 'line';
    const name = document.createElement('span');
    name.textContent = `${r.fingerprint.name} (${formatBytes(r.fingerprint.size)})`;
    const discard = document.createElement('button');
    discard.type = 'button';
    discard.textContent = 'Discard';
    discard.setAttribute('aria-label', `Discard the interrupted upload of ${r.fingerprint.name}`);
    discard.addEventListener('click', () => discardInterrupted(r, li));
    li.append(name, discard);
    return li;
  }));
}

/** Deletes an interrupted upload on the service (gone already is fine) and forgets it here. */
async function discardInterrupted(record, li) {
  const res = await fetch(`/v1/uploads/${encodeURIComponent(record.id)}`, {
    method: 'DELETE', headers: { authorization: `Bearer ${token}` },
  }).catch((e) => ({ ok: false, status: 0, json: async () => ({ error: { message: e.message } }) }));
  if (!res.ok && res.status !== 404) {
    const why = (await res.json().catch(() => null))?.error?.message ?? `the service answered ${res.status}`;
    li.append(Object.assign(document.createElement('p'), { className: 'error', role: 'alert', textContent: `Could not discard: ${why}` }));
    return;
  }
  await store.delete(record.storeKey);
  showInterrupted();
}

// --- picking files -----------------------------------------------------------------------------

function addFiles(files) {
  for (const f of files) addFile(f);
  pump();
  showInterrupted();
}

$('#files').addEventListener('change', (e) => {
  addFiles(e.target.files);
  e.target.value = ''; // picking the same file again (to resume it) fires `change` again
});

const drop = $('#drop');
// Dropping anywhere on the page uploads rather than letting the browser open the file.
document.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
document.addEventListener('dragleave', (e) => { if (!e.relatedTarget) drop.classList.remove('over'); });
document.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  if (e.dataTransfer?.files.length) addFiles(e.dataTransfer.files);
});

showInterrupted();
renderOverall();
