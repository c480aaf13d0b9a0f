//! Progress events: what the engine reports while it works. No rendering here; the CLI draws a
//! bar or prints each event as one JSON line. Field names are stable (scripts parse them).

use serde::Serialize;

/// One thing that happened during an upload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// The upload started (for a multipart upload, after CreateMultipartUpload or on resume).
    Started {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Total bytes, when known (not for stdin).
        size: Option<u64>,
        /// Part size (first part's, for streams).
        part_size: u64,
        /// Number of parts, when known; 0 for a single PutObject.
        part_count: Option<u64>,
        /// Multipart upload id (absent for a single PutObject).
        upload_id: Option<String>,
        /// Parts already uploaded before this run (resume).
        resumed_parts: u64,
    },
    /// A part was stored.
    PartDone {
        /// Part number.
        part_number: u32,
        /// Its size.
        size: u64,
        /// Its `ETag`.
        etag: String,
        /// Bytes stored so far, all parts.
        bytes_done: u64,
    },
    /// A call failed and will be retried.
    Retry {
        /// Part number (absent for non-part calls).
        part_number: Option<u32>,
        /// Attempt that failed (1-based).
        attempt: u32,
        /// Delay before the next attempt, in milliseconds.
        delay_ms: u64,
        /// What failed.
        error: String,
    },
    /// The object is complete and verified.
    Completed {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Size.
        size: u64,
        /// The object's `ETag`.
        etag: String,
        /// The object's checksum as the store reports it (`crc32c:BASE64-N`).
        checksum: Option<String>,
        /// Wall time in seconds.
        seconds: f64,
    },
    /// The upload failed.
    Failed {
        /// The error.
        error: String,
        /// Whether the multipart upload was aborted (nothing left behind).
        aborted: bool,
        /// Upload id kept for resuming, if parts were kept (or the abort failed).
        upload_id: Option<String>,
        /// Complete succeeded: the object exists, only its verification failed (nothing was
        /// aborted; running again verifies it without uploading).
        completed: bool,
        /// Why the abort failed, when it was tried and failed: the upload is still pending.
        abort_error: Option<String>,
    },
}

/// Where events go; cloning is cheap. A closed receiver is ignored. One upload reports
/// [`ProgressEvent`]s; a batch of files reports [`crate::batch::BatchEvent`]s the same way.
#[derive(Debug)]
pub struct Events<E = ProgressEvent>(Option<tokio::sync::mpsc::UnboundedSender<E>>);

impl<E> Clone for Events<E> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<E> Default for Events<E> {
    fn default() -> Self {
        Self(None)
    }
}

impl<E> Events<E> {
    /// Events into a channel.
    #[must_use]
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<E>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(Some(tx)), rx)
    }

    /// Events dropped.
    #[must_use]
    pub fn none() -> Self {
        Self(None)
    }

    /// Sends an event.
    pub fn emit(&self, e: E) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }
}
