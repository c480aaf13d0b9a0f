//! Hoist's upload engine: plan, schedule, retry, verify and complete S3 multipart uploads.
//! It never prints and never reads arguments; the CLI and the service drive it.
//!
//! # Layout
//! - [`checksum`]: CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256, composite and full-object
//!   checksums, multipart `ETags`.
//! - [`config`]: [`UploadConfig`] (setters clamp) and [`ProviderLimits`] (AWS, 5 TiB stores, R2).
//! - [`plan`]: part sizing, pure and property-tested.
//! - [`source`]: files read by position, streams read part by part.
//! - `cached_read`: reading a file chunk in place when it is in memory, else on the blocking pool.
//! - [`client`]: the S3 calls Hoist makes ([`ObjectClient`]), on aws-sdk-s3; [`UploadRef`].
//! - [`retry`]: full-jitter backoff; what is retryable is [`Error::is_retryable`].
//! - `scheduler`: the parts in flight (one dispatch loop for files and streams), the retry
//!   loop, the ledger of confirmed parts.
//! - [`progress`]: the event stream the CLI renders.
//! - [`journal`]: resume state, written atomically after each confirmed part.
//! - [`upload`]: the orchestration of one upload.
//! - [`presign`]: pre-signed URLs with Content-Length and checksum bound (CLI and service).
//! - [`tree`]: the streaming walk over files and directory trees, with include/exclude globs.
//! - [`batch`]: many files under one request and byte budget, skipping what is there.
//! - [`batch_journal`]: the resume record of a batch (files the store confirmed).
//! - [`units`]: parsing sizes (`64MiB`) and durations (`7d`) written by people.
//! - [`error`]: the one error type and its categories.

pub mod batch;
pub mod batch_journal;
mod cached_read;
pub mod checksum;
pub mod client;
pub mod config;
pub mod error;
pub mod journal;
pub mod plan;
pub mod presign;
pub mod progress;
pub mod retry;
mod scheduler;
pub mod source;
pub mod tree;
pub mod units;
pub mod upload;

pub use batch::{BatchConfig, BatchEvent, BatchRequest, BatchSummary, BatchUploader, Compare};
pub use client::{ClientOptions, ObjectClient, ObjectMeta, S3Client, UploadChecksum, UploadRef};
pub use config::{ChecksumMode, ChecksumTransport, ProviderLimits, UploadConfig};
pub use error::{Category, Error, Result};
pub use journal::{Journal, JournalStore};
pub use progress::{Events, ProgressEvent};
pub use source::Source;
pub use tokio_util::sync::CancellationToken;
pub use upload::{OnFailure, UploadOutcome, UploadRequest, Uploader};
