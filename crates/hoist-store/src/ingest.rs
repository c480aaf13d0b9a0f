//! Receiving a request body onto disk: streamed to a temp file, MD5 and the asked-for checksums
//! computed on the way, length checked, fsynced. Nothing is visible until the caller renames the
//! file into place after checking the digests, so a refused body stores nothing.
//!
//! How the bytes flow:
//! 1. The request's task (async) copies the network chunks hyper hands it into 1 MiB buffers
//!    taken from a shared pool, and sends each full buffer to a hashing thread (the hub); at
//!    most `CREDITS` buffers of one request are in the hub at a time, so a body is never held
//!    in memory whole and a fast client waits for the disk and the hashes.
//! 2. The hub writes each buffer to the request's temp file and updates its checksums (SHA-256,
//!    CRC32 etc.) as it arrives, and keeps it until its MD5 is done (CRC32C, the common one, is
//!    computed with the MD5 in the lanes, where it costs next to nothing: see `md5_lanes`). MD5 — required, the part `ETag` is
//!    the MD5 of the part's bytes — is the dominant cost and is serial within one stream, so the
//!    hub advances the MD5 of all the requests it serves in lock-step (`md5_lanes`: up to 8
//!    streams per vector instruction). It waits to hash until every body in flight has a buffer
//!    ready (or one is ending, or one has used all its credit, so a stalled client never holds
//!    up the others), which keeps the lanes full.
//! 3. At the end the request sends its last, partial buffer; the hub finishes the digests and
//!    hands the file back; the request fsyncs it on tokio's blocking pool (not on the hub, where a
//!    slow disk would stall every other upload's hashing) and checks the length.
//!
//! Decisions (the measurements behind them, before and after, are in BENCHMARKS.md, "Store CPU
//! per GiB", `bench/store_bench.py --put-only --part-sizes 8,16,64`):
//! - MD5 dominates the store's CPU (a part's ETag is the MD5 of its bytes, serial within one
//!   stream), so the parts received at the same time are hashed in lock-step lanes; the kernel's
//!   share is the two copies it must make (socket → user, user → file), not page faults or
//!   syscall counts.
//! - Copying into pooled 1 MiB buffers costs one memcpy (≈ 5 % of the CPU), gives block-aligned
//!   data for the lanes, releases hyper's read buffer at once (so it is reused, not
//!   reallocated), and makes one hand-off per MiB.
//! - One hub per 4 cores (at least one) rather than a thread per request: the lanes need the
//!   requests in one place, and fewer threads wake less. On a bigger machine the hubs share the
//!   requests round-robin.
//! - Waiting up to `MAX_WAIT` before hashing a lane without the others keeps single-lane MD5
//!   rare (≈ 4 % of the store's CPU samples).
//! - `CREDITS` × `BUFFER` = 4 MiB per request in flight, enough to keep every lane fed at
//!   loopback speed; the pool keeps up to `POOL_IDLE` idle buffers.
//! - Temp files are written with `O_DIRECT` where the filesystem takes it (`direct_io`): the
//!   page cache's per-page allocation and copy are the largest cost next to MD5; the pooled
//!   buffers are 4 KiB-aligned and 1 MiB long, so every write but a body's last is aligned.
//! - The `md-5` crate's `asm` feature was measured ≈ 5 % faster than its portable code on one
//!   stream; not worth a C build step next to the lanes.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hoist_core::checksum::{Checksum, ChecksumAlgorithm, Checksummer};
use s3s::dto::StreamingBlob;
use tokio::sync::{Semaphore, oneshot};

use crate::direct_io::{Buffer, DirectFile};
use crate::error::{Error, Result};
use crate::fs::Layout;
use crate::md5_lanes::{self, BLOCK, Md5Lane};

/// Bytes per buffer handed to the hub: a multiple of the MD5 block, large enough that hand-offs
/// and write calls are rare (1,024 per GiB).
const BUFFER: usize = 1024 * 1024;
/// Buffers of one request that may be in the hub (written, or waiting for their MD5).
const CREDITS: usize = 4;
/// Idle buffers the pool keeps for the next requests (16 MiB).
const POOL_IDLE: usize = 16;
/// Most lanes one kernel call advances (the widest kernel in `md5_lanes`).
const LANES: usize = 8;
/// How long a lane that must be hashed (its body ended, or its sender waits for credit) waits for
/// the other lanes to have data too. Hashing it alone costs ≈ 2.5× the CPU per byte of hashing it
/// in a full 4-lane step, and at loopback speed the others fill a buffer within a few ms; a
/// client that waits for this answer before sending on its other connections loses at most this.
const MAX_WAIT: Duration = Duration::from_millis(3);

/// See [`Hub::urgency`].
enum Urgency {
    /// Nothing to hash, or lanes wait for the others.
    None,
    /// Every open lane has data: hash now.
    AllReady,
    /// Some lane must be hashed soon.
    SomeReady,
}

/// A body written to a temp file, with its digests.
#[derive(Debug)]
pub(crate) struct Ingested {
    /// The temp file holding the bytes (fsynced).
    pub(crate) tmp: PathBuf,
    /// Byte count.
    pub(crate) len: u64,
    /// MD5 of the bytes.
    pub(crate) md5: [u8; 16],
    /// The checksums that were asked for.
    pub(crate) checksums: Vec<Checksum>,
}

impl Ingested {
    /// The computed checksum of `algorithm`, if it was asked for.
    pub(crate) fn checksum(&self, algorithm: ChecksumAlgorithm) -> Option<&Checksum> {
        self.checksums.iter().find(|c| c.algorithm() == algorithm)
    }

    /// Removes the temp file (after a refused request).
    pub(crate) fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// What the hub hands back for a finished body: the file (not yet fsynced), its length and digests.
type Written = (File, u64, [u8; 16], Vec<Checksum>);

/// Messages from requests to a hub.
enum Msg {
    /// A new body: its temp file, the checksums to compute, and the credit its buffers use.
    Open { lane: usize, file: DirectFile, algorithms: Vec<ChecksumAlgorithm>, credit: Arc<Semaphore> },
    /// A full buffer (`BUFFER` bytes); returns one credit once hashed.
    Data { lane: usize, buf: Buffer },
    /// The last buffer (any length, possibly empty) and where to send the result.
    Finish { lane: usize, buf: Buffer, reply: oneshot::Sender<std::io::Result<Written>> },
    /// The request gave up (bad body, or it was dropped): forget the lane.
    Abort { lane: usize },
}

/// Idle buffers shared by the requests and the hubs.
#[derive(Debug, Default)]
struct Pool(Mutex<Vec<Buffer>>);

impl Pool {
    fn take(&self) -> Buffer {
        self.0.lock().ok().and_then(|mut p| p.pop()).unwrap_or_else(|| Buffer::new(BUFFER))
    }

    fn give(&self, mut buf: Buffer) {
        buf.clear();
        if let Ok(mut p) = self.0.lock()
            && p.len() < POOL_IDLE
        {
            p.push(buf);
        }
    }
}

/// Receives request bodies onto disk (see the module doc). Its hub threads end when it is dropped.
#[derive(Debug)]
pub(crate) struct Ingester {
    hubs: Vec<mpsc::Sender<Msg>>,
    pool: Arc<Pool>,
    next_lane: AtomicUsize,
}

impl Ingester {
    /// Starts the hub threads.
    pub(crate) fn start() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let pool = Arc::new(Pool::default());
        let mut hubs = Vec::new();
        for _ in 0..(cores / 4).max(1) {
            let (tx, rx) = mpsc::channel();
            let pool = Arc::clone(&pool);
            std::thread::Builder::new().name("hoist-ingest".into()).spawn(move || Hub::new(pool).run(&rx))?;
            hubs.push(tx);
        }
        Ok(Self { hubs, pool, next_lane: AtomicUsize::new(0) })
    }

    /// Streams `body` into a temp file, computing MD5 and the `algorithms` checksums. Fails (and
    /// removes the file) if the body breaks off or its length differs from `expected_len`.
    pub(crate) async fn ingest(
        &self,
        layout: &Layout,
        body: Option<StreamingBlob>,
        expected_len: Option<u64>,
        algorithms: &[ChecksumAlgorithm],
    ) -> Result<Ingested> {
        let tmp = layout.tmp_file();
        let file = DirectFile::create(&tmp)?;
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed);
        let hub = &self.hubs[lane % self.hubs.len()];
        let credit = Arc::new(Semaphore::new(CREDITS));
        hub.send(Msg::Open { lane, file, algorithms: algorithms.to_vec(), credit: Arc::clone(&credit) })
            .map_err(|_| hub_gone())?;
        // From here on, leaving early (an error, or the request being dropped) forgets the lane
        // and removes the temp file.
        let mut guard = Guard { hub, lane, open: true, tmp: Some(tmp) };

        let mut buf = self.pool.take();
        let mut received = 0u64;
        let mut failure = None;
        if let Some(mut body) = body {
            'receive: while let Some(item) = body.next().await {
                let chunk = match item {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        failure = Some(Error::Body(e.to_string()));
                        break;
                    }
                };
                received += chunk.len() as u64;
                if let Some(expected) = expected_len
                    && received > expected
                {
                    failure = Some(Error::IncompleteBody { expected, got: received });
                    break;
                }
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    rest = &rest[buf.fill_from(rest)..];
                    if buf.is_full() {
                        match credit.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => break 'receive, // the hub failed to write; it says why below
                        }
                        let full = std::mem::replace(&mut buf, self.pool.take());
                        hub.send(Msg::Data { lane, buf: full }).map_err(|_| hub_gone())?;
                    }
                }
            }
        }
        if let Some(e) = failure {
            self.pool.give(buf);
            return Err(e); // the guard forgets the lane and removes the file
        }
        let (reply, result) = oneshot::channel();
        hub.send(Msg::Finish { lane, buf, reply }).map_err(|_| hub_gone())?;
        let written = result.await;
        guard.open = false; // the hub is done with the lane either way
        let (file, len, md5, checksums) = written.map_err(|_| hub_gone())??;
        tokio::task::spawn_blocking(move || file.sync_all()).await.map_err(std::io::Error::other)??;
        if let Some(expected) = expected_len
            && expected != len
        {
            return Err(Error::IncompleteBody { expected, got: len });
        }
        let tmp = guard.tmp.take().unwrap_or_default();
        Ok(Ingested { tmp, len, md5, checksums })
    }
}

/// Checks a received body against what the client claimed: `Content-MD5` (base64 of the MD5)
/// and `x-amz-checksum-*` values. Returns the checksum to store (the first claimed one; else the
/// `fallback` algorithm if it was computed). On a mismatch the caller discards the body.
pub(crate) fn verify(
    got: &Ingested,
    content_md5: Option<&str>,
    claimed: &[(ChecksumAlgorithm, String)],
    fallback: Option<ChecksumAlgorithm>,
) -> Result<Option<crate::backend::StoredChecksum>> {
    use base64::Engine as _;
    if let Some(md5_b64) = content_md5 {
        let want = base64::engine::general_purpose::STANDARD
            .decode(md5_b64.trim())
            .ok()
            .filter(|d| d.len() == 16)
            .ok_or_else(|| Error::InvalidDigest("Content-MD5".into()))?;
        if want != got.md5 {
            return Err(Error::BadDigest("Content-MD5".into()));
        }
    }
    for (alg, value) in claimed {
        let want = Checksum::from_base64(*alg, value).ok_or(Error::MalformedChecksum(*alg))?;
        if got.checksum(*alg) != Some(&want) {
            return Err(Error::BadDigest(format!("x-amz-checksum-{}", alg.cli_name())));
        }
    }
    let chosen = claimed.first().map(|(a, _)| *a).or(fallback);
    Ok(chosen.and_then(|alg| got.checksum(alg)).map(|c| crate::backend::StoredChecksum {
        algorithm: c.algorithm(),
        value: c.to_base64(),
        kind: crate::backend::ChecksumKind::FullObject,
    }))
}

fn hub_gone() -> Error {
    Error::Io(std::io::Error::other("the ingest thread stopped"))
}

/// Unless the body was received whole and checked, forgets the lane (if the hub still has it)
/// and removes the temp file, however the request ends (an error, or the future dropped).
struct Guard<'a> {
    hub: &'a mpsc::Sender<Msg>,
    lane: usize,
    /// Whether the hub may still hold the lane.
    open: bool,
    /// `Some` until the body is handed to the caller.
    tmp: Option<PathBuf>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.hub.send(Msg::Abort { lane: self.lane });
        }
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// One body in a hub.
struct Lane {
    /// `None` after a write failed (`failed` says why); later buffers are dropped.
    file: Option<DirectFile>,
    failed: Option<std::io::Error>,
    checksums: Vec<Checksummer>,
    md5: Md5Lane,
    /// Buffers written but not yet fully hashed; `hashed` bytes of the front one are done.
    queue: VecDeque<Buffer>,
    hashed: usize,
    credit: Arc<Semaphore>,
    /// Set once the last buffer is queued.
    reply: Option<oneshot::Sender<std::io::Result<Written>>>,
    len: u64,
}

impl Lane {
    /// Whole MD5 blocks ready at the front of the queue.
    fn ready(&self) -> usize {
        self.queue.front().map_or(0, |b| (b.len() - self.hashed) / BLOCK * BLOCK)
    }

    /// Whether everything but a last partial block has been hashed and the body is complete.
    fn done_hashing(&self) -> bool {
        self.reply.is_some() && self.queue.len() <= 1 && self.ready() == 0
    }
}

/// The hashing thread's state: the lanes it serves.
struct Hub {
    lanes: HashMap<usize, Lane>,
    pool: Arc<Pool>,
}

impl Hub {
    fn new(pool: Arc<Pool>) -> Self {
        Self { lanes: HashMap::new(), pool }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        // Since when a lane has had to be hashed without all the others (see `MAX_WAIT`).
        let mut waiting_since: Option<Instant> = None;
        loop {
            let msg = match self.urgency() {
                Urgency::None => {
                    waiting_since = None;
                    match rx.recv() {
                        Ok(m) => Some(m),
                        Err(_) => return, // the Ingester is gone
                    }
                }
                // Take every message that is waiting before hashing: more lanes may be ready.
                Urgency::AllReady => rx.try_recv().ok(),
                Urgency::SomeReady => {
                    let left = MAX_WAIT.saturating_sub(waiting_since.get_or_insert_with(Instant::now).elapsed());
                    if left.is_zero() { rx.try_recv().ok() } else { rx.recv_timeout(left).ok() }
                }
            };
            if let Some(m) = msg {
                self.apply(m);
            } else {
                self.hash_round();
                waiting_since = None;
            }
        }
    }

    /// Whether to hash now. Every open lane ready (up to the kernel's width): yes. Else, if some
    /// ready lane must not wait for ever — its body has ended, or its sender has used all its
    /// credit — soon (`MAX_WAIT`). Else wait for more buffers.
    fn urgency(&self) -> Urgency {
        let ready = self.lanes.values().filter(|l| l.ready() > 0).count();
        if ready == 0 {
            Urgency::None
        } else if ready >= self.lanes.len().min(LANES) {
            Urgency::AllReady
        } else if self.lanes.values().any(|l| l.ready() > 0 && (l.reply.is_some() || l.queue.len() >= CREDITS)) {
            Urgency::SomeReady
        } else {
            Urgency::None
        }
    }

    fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Open { lane, file, algorithms, credit } => {
                // CRC32C goes with the MD5 (`md5_lanes`); the others are computed on their own.
                let crc32c = algorithms.contains(&ChecksumAlgorithm::Crc32c);
                let checksums = algorithms
                    .iter()
                    .filter(|a| **a != ChecksumAlgorithm::Crc32c)
                    .map(|a| Checksummer::new(*a))
                    .collect();
                self.lanes.insert(
                    lane,
                    Lane {
                        file: Some(file),
                        failed: None,
                        checksums,
                        md5: if crc32c { Md5Lane::with_crc32c() } else { Md5Lane::default() },
                        queue: VecDeque::new(),
                        hashed: 0,
                        credit,
                        reply: None,
                        len: 0,
                    },
                );
            }
            Msg::Data { lane, buf } => self.write(lane, buf),
            Msg::Finish { lane, buf, reply } => {
                self.write(lane, buf);
                if let Some(l) = self.lanes.get_mut(&lane) {
                    l.reply = Some(reply);
                }
                self.finish_done();
            }
            Msg::Abort { lane } => {
                if let Some(l) = self.lanes.remove(&lane) {
                    for buf in l.queue {
                        self.pool.give(buf);
                    }
                }
            }
        }
    }

    /// Writes a buffer and updates the checksums; queues it for MD5.
    fn write(&mut self, lane: usize, buf: Buffer) {
        let Some(l) = self.lanes.get_mut(&lane) else {
            self.pool.give(buf);
            return;
        };
        if let Some(file) = &mut l.file
            && let Err(e) = file.append(buf.bytes())
        {
            // The request stops sending and learns why when it finishes.
            l.file = None;
            l.failed = Some(e);
            l.credit.close();
            for queued in l.queue.drain(..) {
                self.pool.give(queued);
            }
            l.hashed = 0;
        }
        if l.file.is_none() {
            self.pool.give(buf);
            l.credit.add_permits(1);
            return;
        }
        for c in &mut l.checksums {
            c.update(buf.bytes());
        }
        l.len += buf.len() as u64;
        l.queue.push_back(buf);
    }

    /// Advances up to `LANES` ready lanes by the same number of bytes, then releases hashed
    /// buffers and finishes completed lanes.
    fn hash_round(&mut self) {
        let mut ready: Vec<&mut Lane> = self.lanes.values_mut().filter(|l| l.ready() > 0).collect();
        // Ending lanes and lanes whose sender waits go first.
        ready.sort_by_key(|l| (l.reply.is_none(), std::cmp::Reverse(l.queue.len())));
        ready.truncate(LANES);
        let Some(n) = ready.iter().map(|l| l.ready()).min() else { return };
        let mut states = Vec::with_capacity(ready.len());
        let mut data = Vec::with_capacity(ready.len());
        for l in &mut ready {
            let Lane { md5, queue, hashed, .. } = &mut **l;
            states.push(md5);
            data.push(&queue[0].bytes()[*hashed..*hashed + n]);
        }
        md5_lanes::update_lanes(&mut states, &data);
        for l in ready {
            l.hashed += n;
            // A full buffer is done once hashed; the last one only when its lane finishes.
            if l.hashed == BUFFER {
                if let Some(buf) = l.queue.pop_front() {
                    self.pool.give(buf);
                }
                l.hashed = 0;
                l.credit.add_permits(1);
            }
        }
        self.finish_done();
    }

    /// Completes the lanes whose every byte is hashed: the last partial block, the digests, the
    /// reply.
    fn finish_done(&mut self) {
        let done: Vec<usize> = self.lanes.iter().filter(|(_, l)| l.done_hashing()).map(|(id, _)| *id).collect();
        for id in done {
            let Some(mut l) = self.lanes.remove(&id) else { continue };
            if let Some(buf) = l.queue.pop_front() {
                l.md5.update(&buf.bytes()[l.hashed..]);
                self.pool.give(buf);
            }
            let result = match (l.file, l.failed) {
                (_, Some(e)) => Err(e),
                (Some(file), None) => {
                    let (md5, crc32c) = l.md5.finish();
                    let mut checksums: Vec<Checksum> = l.checksums.into_iter().map(Checksummer::finish).collect();
                    checksums.extend(
                        crc32c.and_then(|c| Checksum::from_digest(ChecksumAlgorithm::Crc32c, c.to_be_bytes().to_vec())),
                    );
                    Ok((file.into_file(), l.len, md5, checksums))
                }
                (None, None) => Err(std::io::Error::other("no file")),
            };
            if let Some(reply) = l.reply {
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data patterns
mod tests {
    use bytes::Bytes;
    use md5::{Digest as _, Md5};

    use super::*;

    fn data(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
    }

    /// A body delivered in uneven chunks, as hyper does.
    fn body(bytes: &[u8], chunk: usize) -> StreamingBlob {
        let chunks: Vec<std::io::Result<Bytes>> = bytes.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        StreamingBlob::wrap(futures::stream::iter(chunks))
    }

    fn tmp_files(layout: &Layout) -> usize {
        std::fs::read_dir(layout.tmp_dir()).map_or(0, Iterator::count)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_bodies_hashed_in_lock_step_match_md5_and_their_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let ing = Ingester::start().unwrap();
        // Lengths around buffer and block boundaries, received together so lanes share steps.
        let lens = [0, 1, 63, 64, BUFFER - 1, BUFFER, BUFFER + 65, 3 * BUFFER + 7, 5 * BUFFER];
        let inputs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, n)| data(i as u8, *n)).collect();
        // Lanes with CRC32C (computed with the MD5), with CRC32C and SHA-256, and with none.
        let algs =
            [vec![ChecksumAlgorithm::Crc32c], vec![ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Crc32c], vec![]];
        let results = futures::future::join_all(
            inputs
                .iter()
                .enumerate()
                .map(|(i, d)| ing.ingest(&layout, Some(body(d, 1000 + 4093 * i)), Some(d.len() as u64), &algs[i % 3])),
        )
        .await;
        for (i, (got, want)) in results.into_iter().zip(&inputs).enumerate() {
            let got = got.unwrap();
            assert_eq!(got.len, want.len() as u64);
            assert_eq!(got.md5, <[u8; 16]>::from(Md5::digest(want)), "MD5 of {} bytes", want.len());
            assert_eq!(got.checksums.len(), algs[i % 3].len());
            for alg in &algs[i % 3] {
                assert_eq!(got.checksum(*alg), Some(&Checksum::of(*alg, want)), "{alg} of {} bytes", want.len());
            }
            assert_eq!(&std::fs::read(&got.tmp).unwrap(), want);
            got.discard();
        }
        assert_eq!(tmp_files(&layout), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_body_longer_or_shorter_than_declared_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let ing = Ingester::start().unwrap();
        let d = data(9, 2 * BUFFER + 10);
        let long = ing.ingest(&layout, Some(body(&d, 65_536)), Some(BUFFER as u64), &[]).await;
        assert!(matches!(long, Err(Error::IncompleteBody { .. })), "{long:?}");
        let short = ing.ingest(&layout, Some(body(&d, 65_536)), Some(d.len() as u64 + 1), &[]).await;
        assert!(matches!(short, Err(Error::IncompleteBody { .. })), "{short:?}");
        assert_eq!(tmp_files(&layout), 0);
        // The hub forgot both lanes: a later body is not held up waiting for them.
        let ok = ing.ingest(&layout, Some(body(&d, 100_000)), Some(d.len() as u64), &[]).await.unwrap();
        assert_eq!(ok.md5, <[u8; 16]>::from(Md5::digest(&d)));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_broken_or_dropped_body_leaves_no_temp_file_and_does_not_stall_others() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let ing = Ingester::start().unwrap();
        let d = data(3, 2 * BUFFER);
        let broken: Vec<std::io::Result<Bytes>> =
            vec![Ok(Bytes::copy_from_slice(&d[..BUFFER + 5])), Err(std::io::Error::other("connection reset"))];
        let r = ing.ingest(&layout, Some(StreamingBlob::wrap(futures::stream::iter(broken))), None, &[]).await;
        assert!(matches!(r, Err(Error::Body(_))), "{r:?}");
        // A body that never ends, dropped after its first buffers (a client gone mid-part).
        let (tx, rx) = futures::channel::mpsc::unbounded::<std::io::Result<Bytes>>();
        tx.unbounded_send(Ok(Bytes::copy_from_slice(&d))).unwrap();
        let stalled = ing.ingest(&layout, Some(StreamingBlob::wrap(rx)), None, &[]);
        let other = ing.ingest(&layout, Some(body(&d, 50_000)), None, &[]);
        tokio::select! {
            _ = stalled => panic!("a body without end finished"),
            r = other => {
                let r = r.unwrap();
                assert_eq!(r.md5, <[u8; 16]>::from(Md5::digest(&d)));
                r.discard();
            }
        }
        drop(tx);
        assert_eq!(tmp_files(&layout), 0);
    }
}
