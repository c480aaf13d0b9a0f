//! Upload settings and provider limits. Setters clamp bad values into range instead of failing,
//! so a config is always usable; the planner reports what cannot be done for a given size.
//!
//! This module is the one home of S3's limits ([`ProviderLimits`]): the engine plans with them,
//! the embedded store refuses what AWS refuses with them, and the service sizes its uploads with
//! them. Which limits apply is a [`Provider`], chosen from the endpoint URL unless the user names
//! one (`--provider`) or sets the object limit (`--max-object-size`).

use std::time::Duration;

use crate::checksum::ChecksumAlgorithm;
use crate::retry::RetryConfig;

/// One MiB.
pub const MIB: u64 = 1024 * 1024;
/// One GiB.
pub const GIB: u64 = 1024 * MIB;
/// One TiB.
pub const TIB: u64 = 1024 * GIB;

/// Largest request header section S3 accepts, names and values together (8 KiB; over it S3
/// answers `RequestHeaderSectionTooLarge`). The embedded store refuses the same, and the upload
/// service keeps the `x-amz-meta-*` headers of the uploads it creates under it.
pub const MAX_HEADER_SECTION: usize = 8 * 1024;

/// Longest lifetime of a SigV4 pre-signed URL (`X-Amz-Expires`): 7 days, in seconds.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// S3's naming rules for general purpose buckets (3-63 lowercase letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..`): the part anyone can check offline.
#[must_use]
pub fn is_valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
}

/// Whether `name` can be a user metadata name (`x-amz-meta-NAME`): letters, digits, `-`, `_`.
#[must_use]
pub fn is_valid_metadata_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// What a provider allows for multipart uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Most parts in one upload.
    pub max_parts: u64,
    /// Smallest part except the last.
    pub min_part_size: u64,
    /// Largest part (on S3 also the largest single PutObject body).
    pub max_part_size: u64,
    /// Largest object.
    pub max_object_size: u64,
    /// Whether every part but the last must have the same size (Cloudflare R2).
    pub equal_parts: bool,
}

impl ProviderLimits {
    /// AWS S3: 10,000 parts of 5 MiB..5 GiB, objects up to 50 TB (AWS's announcement of
    /// December 2025; before that 5 TiB).
    pub const AWS: Self = Self {
        max_parts: 10_000,
        min_part_size: 5 * MIB,
        max_part_size: 5 * GIB,
        max_object_size: 50_000_000_000_000,
        equal_parts: false,
    };
    /// Stores that keep the older 5 TiB object limit (MinIO, Ceph, Garage and others).
    pub const STORE_5TIB: Self = Self { max_object_size: 5 * TIB, ..Self::AWS };
    /// Cloudflare R2: equal-size parts except the last, 5 TiB objects (R2 docs, "limits").
    pub const R2: Self = Self { equal_parts: true, ..Self::STORE_5TIB };
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self::AWS
    }
}

impl ProviderLimits {
    /// The largest object any multipart upload can make within these limits: `max_parts` parts
    /// of `max_part_size`.
    #[must_use]
    pub fn multipart_ceiling(&self) -> u64 {
        self.max_parts.saturating_mul(self.max_part_size)
    }

    /// The highest part number (`max_parts`, as a part number's type).
    #[must_use]
    pub fn max_part_number(&self) -> u32 {
        u32::try_from(self.max_parts).unwrap_or(u32::MAX)
    }

    /// These limits with another object size limit (`--max-object-size`), or `None` unless it
    /// is at least one byte and at most [`multipart_ceiling`](Self::multipart_ceiling).
    #[must_use]
    pub fn with_max_object_size(self, bytes: u64) -> Option<Self> {
        (1..=self.multipart_ceiling()).contains(&bytes).then_some(Self { max_object_size: bytes, ..self })
    }
}

/// Which kind of S3 endpoint objects go to, for its [`ProviderLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Amazon S3 ([`ProviderLimits::AWS`]).
    Aws,
    /// Another S3-compatible store: MinIO, Ceph, Garage, the embedded store
    /// ([`ProviderLimits::STORE_5TIB`]).
    S3Compatible,
    /// Cloudflare R2 ([`ProviderLimits::R2`]).
    R2,
}

impl Provider {
    /// The provider an endpoint URL names: no URL (the SDK's default) or a host under
    /// `amazonaws.com` is AWS, a host under `r2.cloudflarestorage.com` is R2, any other URL an
    /// S3-compatible store.
    #[must_use]
    pub fn from_endpoint(endpoint_url: Option<&str>) -> Self {
        let Some(url) = endpoint_url else { return Self::Aws };
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.split(':').next().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
        let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        if under("amazonaws.com") || under("amazonaws.com.cn") {
            Self::Aws
        } else if under("r2.cloudflarestorage.com") {
            Self::R2
        } else {
            Self::S3Compatible
        }
    }

    /// The provider's limits.
    #[must_use]
    pub fn limits(self) -> ProviderLimits {
        match self {
            Self::Aws => ProviderLimits::AWS,
            Self::S3Compatible => ProviderLimits::STORE_5TIB,
            Self::R2 => ProviderLimits::R2,
        }
    }
}

/// When to send checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumMode {
    /// Send the chosen checksum with every part and verify the object after Complete.
    #[default]
    Always,
    /// Only when an operation requires one (for stores that reject checksum headers).
    WhenRequired,
}

/// How the checksum of a file part travels (stdin parts and single `PutObject` calls, already in
/// memory or read whole, always use a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumTransport {
    /// After the body, as an `aws-chunked` trailer computed while the part is read: the part is
    /// read once. S3 and the embedded store accept it; so do current MinIO, Ceph and Garage.
    #[default]
    Trailer,
    /// Before the body, as an `x-amz-checksum-*` header: the part is read twice (a checksum
    /// pass, then the body). For stores that refuse `aws-chunked` bodies.
    Header,
}

/// Settings of one upload. Defaults were chosen by measurement against the embedded store on
/// the 2-core development machine (see BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub(crate) part_size: u64,
    pub(crate) concurrency: usize,
    pub(crate) single_put_threshold: u64,
    pub(crate) checksum: Option<ChecksumAlgorithm>,
    pub(crate) checksum_mode: ChecksumMode,
    pub(crate) checksum_transport: ChecksumTransport,
    pub(crate) limits: ProviderLimits,
    pub(crate) retry: RetryConfig,
    pub(crate) stall_timeout: Duration,
}

/// Default part size: 16 MiB. Measured (1 GiB, loopback): 8 MiB parts 2.49 s and 1.25 s CPU,
/// 16 MiB 2.39 s / 1.36 s, 64 MiB 2.33 s / 1.03 s: within noise on wall time, and 16 MiB keeps
/// progress fine-grained and a retry cheap.
pub const DEFAULT_PART_SIZE: u64 = 16 * MIB;
/// Default parts in flight. Measured on the 2-core development machine, 1 GiB into the
/// embedded store over loopback (2026-11-24): 4, 6 and 8 gave the same wall time (2.16-2.21 s),
/// peak RSS 19.2, 21.0 and 22.2 MiB; so 4. Again after chunks were read in place (2026-11-25):
/// 8 was 15-20 % faster (1.42-1.55 s against 1.74-1.85) and cost the embedded store 20 % less
/// CPU (its MD5 lanes fill), but peak RSS rose from 23-24 to 27-28 MiB, above s5cmd's 21; 4 stays.
/// Links with high latency want more (`--concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Below this size one PutObject is used.
pub const DEFAULT_SINGLE_PUT_THRESHOLD: u64 = 16 * MIB;
/// Most parts in flight we allow (beyond this, loopback and real links gain nothing).
pub const MAX_CONCURRENCY: usize = 64;

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            single_put_threshold: DEFAULT_SINGLE_PUT_THRESHOLD,
            checksum: Some(ChecksumAlgorithm::Crc32c),
            checksum_mode: ChecksumMode::Always,
            checksum_transport: ChecksumTransport::Trailer,
            limits: ProviderLimits::AWS,
            retry: RetryConfig::default(),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

impl UploadConfig {
    /// Requested part size (the planner may raise it to fit the part-count limit). Not clamped
    /// here: a size outside the provider's range is reported by the planner with a clear error.
    #[must_use]
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes;
        self
    }

    /// Parts in flight, clamped to 1..=64.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.clamp(1, MAX_CONCURRENCY);
        self
    }

    /// Inputs smaller than this go as one PutObject (clamped to at most the provider's max part).
    #[must_use]
    pub fn single_put_threshold(mut self, bytes: u64) -> Self {
        self.single_put_threshold = bytes.min(self.limits.max_part_size);
        self
    }

    /// Checksum algorithm, or `None` for no checksum.
    #[must_use]
    pub fn checksum(mut self, algorithm: Option<ChecksumAlgorithm>) -> Self {
        self.checksum = algorithm;
        self
    }

    /// When checksums are sent.
    #[must_use]
    pub fn checksum_mode(mut self, mode: ChecksumMode) -> Self {
        self.checksum_mode = mode;
        self
    }

    /// How file part checksums travel.
    #[must_use]
    pub fn checksum_transport(mut self, transport: ChecksumTransport) -> Self {
        self.checksum_transport = transport;
        self
    }

    /// Provider limits.
    #[must_use]
    pub fn limits(mut self, limits: ProviderLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// A part attempt with no progress for this long is cancelled and retried (min 1 s).
    #[must_use]
    pub fn stall_timeout(mut self, t: Duration) -> Self {
        self.stall_timeout = t.max(Duration::from_secs(1));
        self
    }

    /// The checksum sent with parts, if any.
    #[must_use]
    pub fn effective_checksum(&self) -> Option<ChecksumAlgorithm> {
        match self.checksum_mode {
            ChecksumMode::Always => self.checksum,
            ChecksumMode::WhenRequired => None,
        }
    }

    /// Parts in flight.
    #[must_use]
    pub fn get_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The provider limits in force.
    #[must_use]
    pub fn get_limits(&self) -> ProviderLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_clamp() {
        let c = UploadConfig::default().concurrency(0).stall_timeout(Duration::ZERO);
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.stall_timeout, Duration::from_secs(1));
        assert_eq!(UploadConfig::default().concurrency(1000).concurrency, MAX_CONCURRENCY);
        let c = UploadConfig::default().single_put_threshold(u64::MAX);
        assert_eq!(c.single_put_threshold, ProviderLimits::AWS.max_part_size);
    }

    #[test]
    fn provider_from_endpoint() {
        for (url, p) in [
            (None, Provider::Aws),
            (Some("https://s3.eu-west-1.amazonaws.com"), Provider::Aws),
            (Some("https://bucket.s3.amazonaws.com/"), Provider::Aws),
            (Some("https://s3.cn-north-1.amazonaws.com.cn"), Provider::Aws),
            (Some("https://acct.r2.cloudflarestorage.com"), Provider::R2),
            (Some("http://127.0.0.1:9000"), Provider::S3Compatible),
            (Some("http://minio.local:9000/path"), Provider::S3Compatible),
            (Some("http://amazonaws.com.evil.example"), Provider::S3Compatible),
            (Some("http://user@notamazonaws.com"), Provider::S3Compatible),
        ] {
            assert_eq!(Provider::from_endpoint(url), p, "{url:?}");
        }
        assert_eq!(Provider::Aws.limits().max_object_size, 50_000_000_000_000);
        assert_eq!(Provider::S3Compatible.limits().max_object_size, 5 * TIB);
        assert!(Provider::R2.limits().equal_parts);
    }

    #[test]
    fn object_limit_is_checked() {
        let l = ProviderLimits::AWS.with_max_object_size(GIB).unwrap();
        assert_eq!((l.max_object_size, l.max_part_size), (GIB, ProviderLimits::AWS.max_part_size));
        let ceiling = ProviderLimits::AWS.multipart_ceiling();
        assert_eq!(ceiling, 10_000 * 5 * GIB);
        assert!(ProviderLimits::AWS.with_max_object_size(ceiling).is_some());
        for bad in [0, ceiling + 1] {
            assert_eq!(ProviderLimits::AWS.with_max_object_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn when_required_sends_no_checksum() {
        let c = UploadConfig::default().checksum_mode(ChecksumMode::WhenRequired);
        assert_eq!(c.effective_checksum(), None);
        assert_eq!(UploadConfig::default().effective_checksum(), Some(ChecksumAlgorithm::Crc32c));
    }
}
