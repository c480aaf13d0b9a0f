//! Receiving a request body onto disk: streamed to a temp file, MD5 and the asked-for checksums
//! computed on the way, length checked, fsynced. Nothing is visible until the caller renames the
//! file into place after checking the digests, so a refused body stores nothing.
//!
//! Decision: the network side (async) and the hashing + writing side (a blocking thread) are
//! decoupled by a small channel, so MD5 (≈ 0.65 GiB/s per core, the dominant cost) of one
//! request runs in parallel with receiving it and with other requests. Memory per request is
//! bounded by the channel: `CHANNEL_CHUNKS` chunks of at most what hyper hands us (≤ 64 KiB
//! typically).

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt as _;
use hoist_core::checksum::{Checksum, ChecksumAlgorithm, Checksummer};
use md5::{Digest as _, Md5};
use s3s::dto::StreamingBlob;

use crate::error::{Error, Result};
use crate::fs::Layout;

/// Chunks buffered between receiving and writing a body.
const CHANNEL_CHUNKS: usize = 16;
/// Bytes gathered before each write to disk.
const WRITE_BUFFER: usize = 1024 * 1024;

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

/// Streams `body` into a temp file, computing MD5 and the `algorithms` checksums. Fails (and
/// removes the file) if the body breaks off or its length differs from `expected_len`.
pub(crate) async fn ingest(
    layout: &Layout,
    body: Option<StreamingBlob>,
    expected_len: Option<u64>,
    algorithms: &[ChecksumAlgorithm],
) -> Result<Ingested> {
    let tmp = layout.tmp_file();
    let file = File::create(&tmp)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let hashers: Vec<Checksummer> = algorithms.iter().map(|a| Checksummer::new(*a)).collect();
    // A thread of its own rather than the blocking pool: it lives as long as the request body,
    // and a process may cap its blocking pool (the hoist binary does, to bound memory).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let work = move || -> std::io::Result<_> {
        // Chunks from the network are small (often a few KiB): batch them into large writes.
        let mut file = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut md5 = Md5::new();
        let mut hashers = hashers;
        let mut len = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            md5.update(&chunk);
            for h in &mut hashers {
                h.update(&chunk);
            }
            file.write_all(&chunk)?;
            len += chunk.len() as u64;
        }
        let file = file.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        Ok((len, md5.finalize().into(), hashers.into_iter().map(Checksummer::finish).collect()))
    };
    std::thread::Builder::new().name("hoist-ingest".into()).spawn(move || {
        let _ = done_tx.send(work());
    })?;

    let mut received = 0u64;
    let mut failure = None;
    if let Some(mut body) = body {
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if expected_len.is_some_and(|n| received > n) {
                        failure = Some(Error::IncompleteBody { expected: expected_len.unwrap_or(0), got: received });
                        break;
                    }
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(Error::Body(e.to_string()));
                    break;
                }
            }
        }
    }
    drop(tx);
    let written = done_rx.await.map_err(|e| Error::Io(std::io::Error::other(e)));
    let cleanup = |e: Error| {
        let _ = std::fs::remove_file(&tmp);
        e
    };
    let (len, md5, checksums): (u64, [u8; 16], Vec<Checksum>) = match written {
        Ok(Ok(v)) => v,
        Ok(Err(io)) => return Err(cleanup(Error::Io(io))),
        Err(e) => return Err(cleanup(e)),
    };
    if let Some(e) = failure {
        return Err(cleanup(e));
    }
    if let Some(expected) = expected_len
        && expected != len
    {
        return Err(cleanup(Error::IncompleteBody { expected, got: len }));
    }
    Ok(Ingested { tmp, len, md5, checksums })
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
        let want = Checksum::from_base64(*alg, value)
            .ok_or_else(|| Error::InvalidDigest(format!("x-amz-checksum-{}", alg.cli_name())))?;
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
