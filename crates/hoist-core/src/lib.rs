//! Hoist's upload engine: plan, schedule, retry, verify and complete S3 multipart uploads.
//!
//! # Layout
//! - [`checksum`]: CRC32/`CRC32C`/`CRC64NVME`/SHA-1/SHA-256, composite and full-object checksums,
//!   multipart `ETags`.

pub mod checksum;
