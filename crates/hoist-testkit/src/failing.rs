//! [`FailingClient`]: an [`ObjectClient`] that passes every call to another one (the real client
//! on the embedded store, in Hoist's tests) except the calls a test chose to fail: the k-th
//! UploadPart, every abort, the first Complete… Each rule fails its calls with the error the test
//! gives, either before the call reaches the store (the request was lost) or after (the store
//! acted, the answer was lost). Calls are counted per operation so a test can check afterwards
//! that nothing leaked: abort called, Complete never, no stray upload; and the most calls of an
//! operation in flight at once are recorded, so a test can check a concurrency bound.
//!
//! The idea follows awslabs/mountpoint-s3's `failure_client.rs`: fail, then assert on what the
//! code under test did about it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
use hoist_core::client::{
    CompletedPartSpec, ListedObject, ObjectInfo, PartChecksum, PartInfo, UploadChecksum, UploadInfo,
};
use hoist_core::{Error, ObjectClient, ObjectMeta, Result, UploadRef};

/// The calls of [`ObjectClient`], for choosing which to fail and counting them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// HeadBucket.
    HeadBucket,
    /// CreateBucket.
    CreateBucket,
    /// CreateMultipartUpload.
    Create,
    /// UploadPart (from a file or from bytes).
    UploadPart,
    /// CompleteMultipartUpload.
    Complete,
    /// AbortMultipartUpload.
    Abort,
    /// ListParts.
    ListParts,
    /// ListMultipartUploads.
    ListUploads,
    /// PutObject (from a file or from bytes).
    Put,
    /// ListObjectsV2.
    ListObjects,
    /// HeadObject.
    Head,
    /// GetObject.
    Download,
    /// DeleteObject.
    Delete,
}

/// Whether a failed call reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The call fails without reaching the store (the request was lost).
    Before,
    /// The call reaches the store, then its answer is replaced by the error (the answer was lost).
    After,
}

/// An error to fail with, made afresh for each failed call.
type MakeError = Arc<dyn Fn(Op) -> Error + Send + Sync>;

struct Rule {
    op: Op,
    /// 1-based number of the first call of `op` to fail.
    first: u32,
    /// How many calls from `first` on fail (`u32::MAX`: all).
    times: u32,
    when: When,
    error: MakeError,
}

/// Wraps a client and fails the calls its rules choose; see the module doc.
pub struct FailingClient {
    inner: Arc<dyn ObjectClient>,
    rules: Vec<Rule>,
    calls: Mutex<BTreeMap<Op, u32>>,
    /// Per operation: calls in flight now, and the most there were at once.
    in_flight: Mutex<BTreeMap<Op, (u32, u32)>>,
}

impl std::fmt::Debug for FailingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailingClient").field("inner", &self.inner).field("calls", &self.calls).finish_non_exhaustive()
    }
}

impl FailingClient {
    /// Passes every call to `inner` until rules are added.
    pub fn new(inner: impl ObjectClient + 'static) -> Self {
        Self {
            inner: Arc::new(inner),
            rules: Vec::new(),
            calls: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(BTreeMap::new()),
        }
    }

    /// Fails calls `first..first+times` (1-based) of `op`, `when` said, with what `error` makes.
    #[must_use]
    pub fn fail(
        mut self,
        op: Op,
        first: u32,
        times: u32,
        when: When,
        error: impl Fn(Op) -> Error + Send + Sync + 'static,
    ) -> Self {
        self.rules.push(Rule { op, first, times, when, error: Arc::new(error) });
        self
    }

    /// Calls of `op` made so far (failed ones included).
    ///
    /// # Panics
    /// Never: a poisoned lock is read through.
    #[must_use]
    pub fn calls(&self, op: Op) -> u32 {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).get(&op).copied().unwrap_or(0)
    }

    /// The most calls of `op` that were in flight at once.
    #[must_use]
    pub fn max_in_flight(&self, op: Op) -> u32 {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).get(&op).map_or(0, |(_, max)| *max)
    }

    fn enter(&self, op: Op) {
        let mut map = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let (now, max) = map.entry(op).or_default();
        *now += 1;
        *max = (*max).max(*now);
    }

    fn leave(&self, op: Op) {
        let mut map = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((now, _)) = map.get_mut(&op) {
            *now -= 1;
        }
    }

    /// Counts the call and answers the rule that fails it, if one does.
    fn count(&self, op: Op) -> Option<(When, Error)> {
        let n = {
            let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
            let n = calls.entry(op).or_default();
            *n += 1;
            *n
        };
        self.rules.iter().find(|r| r.op == op && n >= r.first && n - r.first < r.times).map(|r| (r.when, (r.error)(op)))
    }

    /// Runs `call` unless a rule fails it before; replaces its answer when a rule fails it after.
    async fn run<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.enter(op);
        // Leaves on every exit, a dropped (cancelled) call included.
        let _leave = Leave(self, op);
        match self.count(op) {
            None => call.await,
            Some((When::Before, e)) => Err(e),
            Some((When::After, e)) => {
                let answer = call.await;
                tracing::debug!(?op, reached = answer.is_ok(), "FailingClient: answer replaced by an injected error");
                Err(e)
            }
        }
    }
}

struct Leave<'a>(&'a FailingClient, Op);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.leave(self.1);
    }
}

/// The S3 operation name of `op`, as the engine's errors carry it.
#[must_use]
pub fn operation(op: Op) -> &'static str {
    match op {
        Op::HeadBucket => "HeadBucket",
        Op::CreateBucket => "CreateBucket",
        Op::Create => "CreateMultipartUpload",
        Op::UploadPart => "UploadPart",
        Op::Complete => "CompleteMultipartUpload",
        Op::Abort => "AbortMultipartUpload",
        Op::ListParts => "ListParts",
        Op::ListUploads => "ListMultipartUploads",
        Op::Put => "PutObject",
        Op::ListObjects => "ListObjectsV2",
        Op::Head => "HeadObject",
        Op::Download => "GetObject",
        Op::Delete => "DeleteObject",
    }
}

/// An S3 error answer, as the real client maps it: `status` and `code`.
pub fn service(status: u16, code: &'static str) -> impl Fn(Op) -> Error + Send + Sync + 'static {
    move |op| Error::Service {
        operation: operation(op),
        status,
        code: code.into(),
        message: "injected by FailingClient".into(),
    }
}

/// A connection reset, as the real client maps it.
#[must_use]
pub fn reset(op: Op) -> Error {
    Error::Transport { operation: operation(op), message: "connection reset (injected by FailingClient)".into() }
}

#[async_trait::async_trait]
impl ObjectClient for FailingClient {
    async fn head_bucket(&self, bucket: &str) -> Result<()> {
        self.run(Op::HeadBucket, self.inner.head_bucket(bucket)).await
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.run(Op::CreateBucket, self.inner.create_bucket(bucket)).await
    }

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        meta: ObjectMeta<'_>,
        checksum: Option<UploadChecksum>,
    ) -> Result<UploadRef> {
        self.run(Op::Create, self.inner.create_upload(bucket, key, meta, checksum)).await
    }

    async fn upload_part_from_file(
        &self,
        upload: &UploadRef,
        number: u32,
        path: &Path,
        offset: u64,
        len: u64,
        checksum: PartChecksum<'_>,
    ) -> Result<(String, Option<Checksum>)> {
        self.run(Op::UploadPart, self.inner.upload_part_from_file(upload, number, path, offset, len, checksum)).await
    }

    async fn upload_part_bytes(
        &self,
        upload: &UploadRef,
        number: u32,
        data: Bytes,
        checksum: Option<&Checksum>,
    ) -> Result<String> {
        self.run(Op::UploadPart, self.inner.upload_part_bytes(upload, number, data, checksum)).await
    }

    async fn complete(
        &self,
        upload: &UploadRef,
        parts: &[CompletedPartSpec],
        whole: Option<&Checksum>,
    ) -> Result<String> {
        self.run(Op::Complete, self.inner.complete(upload, parts, whole)).await
    }

    async fn abort(&self, upload: &UploadRef) -> Result<()> {
        self.run(Op::Abort, self.inner.abort(upload)).await
    }

    async fn list_parts(&self, upload: &UploadRef) -> Result<Vec<PartInfo>> {
        self.run(Op::ListParts, self.inner.list_parts(upload)).await
    }

    async fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.run(Op::ListUploads, self.inner.list_uploads(bucket, prefix)).await
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        len: u64,
        meta: ObjectMeta<'_>,
        checksum: Option<&Checksum>,
    ) -> Result<Option<String>> {
        self.run(Op::Put, self.inner.put_file(bucket, key, path, len, meta, checksum)).await
    }

    async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        meta: ObjectMeta<'_>,
        checksum: Option<&Checksum>,
    ) -> Result<(Option<String>, Option<(ChecksumAlgorithm, String)>)> {
        self.run(Op::Put, self.inner.put_bytes(bucket, key, data, meta, checksum)).await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        each: &mut (dyn FnMut(ListedObject) + Send),
    ) -> Result<()> {
        self.run(Op::ListObjects, self.inner.list_objects(bucket, prefix, each)).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        self.run(Op::Head, self.inner.head(bucket, key)).await
    }

    async fn download(&self, bucket: &str, key: &str, etag: &str, path: &Path) -> Result<u64> {
        self.run(Op::Download, self.inner.download(bucket, key, etag, path)).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.run(Op::Delete, self.inner.delete(bucket, key)).await
    }
}
