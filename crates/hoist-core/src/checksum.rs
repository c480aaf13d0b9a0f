//! Checksums S3 understands: CRC32, `CRC32C`, `CRC64NVME`, SHA-1, SHA-256, and how per-part values
//! combine into an object's checksum and `ETag`.
//!
//! Owns: streaming computation ([`Checksummer`]), the wire form (big-endian bytes, base64, the
//! `x-amz-checksum-*` header names), composite checksums (`base64(H(part1 ‖ … ‖ partN))-N`),
//! full-object CRCs combined from part CRCs without re-reading data ([`combine_full_object`]), and
//! the multipart `ETag` (`hex(MD5(md5_1 ‖ … ‖ md5_N))-N`). Does not own: which algorithm a caller
//! picks (config) or when values are compared (upload, store).
//!
//! Costs measured on this machine (one core): `CRC32C` ≈ 4.1 GiB/s, SHA-256 ≈ 1.3 GiB/s, MD5 ≈ 0.65
//! GiB/s; `CRC32C` is the default because it is the cheapest one S3 verifies end to end.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// A checksum algorithm S3 accepts in `x-amz-checksum-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    /// CRC-32 (ISO-HDLC, the zlib one).
    Crc32,
    /// CRC-32C (Castagnoli); hardware-accelerated, Hoist's default.
    Crc32c,
    /// CRC-64/NVME; S3 stores it only as a full-object checksum.
    Crc64Nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Self; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64Nvme, Self::Sha1, Self::Sha256];

    /// The name S3 uses in XML and in `x-amz-checksum-algorithm` (`CRC32C`, `SHA256`, …).
    #[must_use]
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    /// The lowercase name used on Hoist's command line and JSON (`crc32c`, `sha256`, …).
    #[must_use]
    pub fn cli_name(self) -> &'static str {
        match self {
            Self::Crc32 => "crc32",
            Self::Crc32c => "crc32c",
            Self::Crc64Nvme => "crc64nvme",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    /// The request/response header carrying this checksum, e.g. `x-amz-checksum-crc32c`.
    #[must_use]
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Length of the raw digest in bytes.
    #[must_use]
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Whether part checksums of this algorithm combine into a whole-object CRC (S3 `FULL_OBJECT`).
    #[must_use]
    pub fn supports_full_object(self) -> bool {
        matches!(self, Self::Crc32 | Self::Crc32c | Self::Crc64Nvme)
    }

    /// Whether S3 accepts a `COMPOSITE` (checksum-of-checksums) object checksum for it.
    /// `CRC64NVME` is full-object only.
    #[must_use]
    pub fn supports_composite(self) -> bool {
        !matches!(self, Self::Crc64Nvme)
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// The error for a checksum algorithm name Hoist does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown checksum algorithm {0:?}: use crc32c, crc32, crc64nvme, sha1 or sha256")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for ChecksumAlgorithm {
    type Err = UnknownAlgorithm;

    /// Accepts the CLI and the S3 spelling in any case (`crc32c`, `CRC32C`, `crc64nvme`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.cli_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// A finished checksum: the algorithm and its raw digest (CRCs big-endian, as S3 encodes them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checksum {
    algorithm: ChecksumAlgorithm,
    digest: Vec<u8>,
}

impl Checksum {
    /// Wraps a raw digest; `None` if its length does not fit the algorithm.
    #[must_use]
    pub fn from_digest(algorithm: ChecksumAlgorithm, digest: Vec<u8>) -> Option<Self> {
        (digest.len() == algorithm.digest_len()).then_some(Self { algorithm, digest })
    }

    /// Parses the base64 wire form of a single (non-composite) checksum.
    #[must_use]
    pub fn from_base64(algorithm: ChecksumAlgorithm, value: &str) -> Option<Self> {
        let digest = BASE64.decode(value.trim()).ok()?;
        Self::from_digest(algorithm, digest)
    }

    /// Computes the checksum of `data` in one call.
    #[must_use]
    pub fn of(algorithm: ChecksumAlgorithm, data: &[u8]) -> Self {
        let mut c = Checksummer::new(algorithm);
        c.update(data);
        c.finish()
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    /// The raw digest bytes.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// The base64 form sent in `x-amz-checksum-*` headers.
    #[must_use]
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.digest)
    }

    fn crc_value(&self) -> u64 {
        self.digest.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_base64())
    }
}

/// Streaming checksum state; feed bytes with [`update`](Self::update) as they pass.
#[derive(Clone)]
pub struct Checksummer(State);

impl fmt::Debug for Checksummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Checksummer").field(&self.algorithm()).finish()
    }
}

#[derive(Clone)]
enum State {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc64fast_nvme::Digest),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Checksummer {
    /// Starts an empty checksum.
    #[must_use]
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        Self(match algorithm {
            ChecksumAlgorithm::Crc32 => State::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => State::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => State::Crc64Nvme(crc64fast_nvme::Digest::new()),
            ChecksumAlgorithm::Sha1 => State::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(Sha256::new()),
        })
    }

    /// The algorithm being computed.
    #[must_use]
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        match self.0 {
            State::Crc32(_) => ChecksumAlgorithm::Crc32,
            State::Crc32c(_) => ChecksumAlgorithm::Crc32c,
            State::Crc64Nvme(_) => ChecksumAlgorithm::Crc64Nvme,
            State::Sha1(_) => ChecksumAlgorithm::Sha1,
            State::Sha256(_) => ChecksumAlgorithm::Sha256,
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Crc32(h) => h.update(data),
            State::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            State::Crc64Nvme(d) => d.write(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// Finishes and returns the checksum.
    #[must_use]
    pub fn finish(self) -> Checksum {
        let algorithm = self.algorithm();
        let digest = match self.0 {
            State::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            State::Crc32c(c) => c.to_be_bytes().to_vec(),
            State::Crc64Nvme(d) => d.sum64().to_be_bytes().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        };
        Checksum { algorithm, digest }
    }
}

/// The composite checksum S3 reports for a multipart object: `base64(H(d1 ‖ … ‖ dN))-N`, where
/// `di` are the raw part digests. `None` if the parts are empty, mix algorithms, or the algorithm
/// has no composite form (`CRC64NVME`).
#[must_use]
pub fn composite(parts: &[Checksum]) -> Option<String> {
    let algorithm = parts.first()?.algorithm;
    if !algorithm.supports_composite() || parts.iter().any(|p| p.algorithm != algorithm) {
        return None;
    }
    let mut outer = Checksummer::new(algorithm);
    for p in parts {
        outer.update(&p.digest);
    }
    Some(format!("{}-{}", outer.finish().to_base64(), parts.len()))
}

/// The full-object CRC of the concatenation of parts, from each part's CRC and length, without
/// reading any data (zlib's `crc32_combine` method, generalised to 64-bit CRCs). `None` for
/// non-CRC algorithms, mixed algorithms or no parts.
#[must_use]
pub fn combine_full_object(parts: &[(Checksum, u64)]) -> Option<Checksum> {
    let (first, _) = parts.first()?;
    let algorithm = first.algorithm;
    let (poly, width) = match algorithm {
        ChecksumAlgorithm::Crc32 => (0xEDB8_8320, 32),
        ChecksumAlgorithm::Crc32c => (0x82F6_3B78, 32),
        ChecksumAlgorithm::Crc64Nvme => (0x9A6C_9329_AC4B_C9B5, 64),
        ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => return None,
    };
    if parts.iter().any(|(c, _)| c.algorithm != algorithm) {
        return None;
    }
    let mut crc = first.crc_value();
    for (c, len) in &parts[1..] {
        crc = crc_combine(crc, c.crc_value(), *len, poly, width);
    }
    let bytes = crc.to_be_bytes();
    Checksum::from_digest(algorithm, bytes[8 - algorithm.digest_len()..].to_vec())
}

/// `crc(A ‖ B)` from `crc(A)`, `crc(B)` and `len(B)` for a reflected CRC with all-ones init and
/// final xor (true of CRC32, `CRC32C` and `CRC64NVME`): apply `len2` zero bytes to `crc1` through
/// repeated squaring of the GF(2) shift operator, then xor in `crc2`.
fn crc_combine(mut crc1: u64, crc2: u64, mut len2: u64, poly: u64, width: usize) -> u64 {
    fn times(mat: &[u64], mut vec: u64) -> u64 {
        let mut sum = 0;
        let mut i = 0;
        while vec != 0 {
            if vec & 1 != 0 {
                sum ^= mat[i];
            }
            vec >>= 1;
            i += 1;
        }
        sum
    }
    fn square(out: &mut [u64], mat: &[u64]) {
        for (n, o) in out.iter_mut().enumerate() {
            *o = times(mat, mat[n]);
        }
    }
    if len2 == 0 {
        return crc1;
    }
    let mut odd = vec![0u64; width]; // operator for one zero bit
    let mut even = vec![0u64; width];
    odd[0] = poly;
    for (n, o) in odd.iter_mut().enumerate().skip(1) {
        *o = 1 << (n - 1);
    }
    square(&mut even, &odd); // two zero bits
    square(&mut odd, &even); // four zero bits
    loop {
        square(&mut even, &odd); // first pass: one zero byte
        if len2 & 1 != 0 {
            crc1 = times(&even, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
        square(&mut odd, &even);
        if len2 & 1 != 0 {
            crc1 = times(&odd, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
    }
    crc1 ^ crc2
}

/// The `ETag` S3 gives a multipart object: `hex(MD5(md5_1 ‖ … ‖ md5_N))-N` (without quotes).
#[must_use]
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for d in part_md5s {
        h.update(d);
    }
    format!("{}-{}", hex::encode(h.finalize()), part_md5s.len())
}

/// Parses an `ETag` as S3 sends it for a single-part upload (`"hex"`, quotes optional) into its MD5.
#[must_use]
pub fn etag_to_md5(etag: &str) -> Option<[u8; 16]> {
    let hex_part = etag.trim().trim_matches('"');
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHECK: &[u8] = b"123456789";

    #[test]
    fn crc_check_values_match_the_catalogue() {
        // "check" values from the CRC catalogue (reveng.sourceforge.io/crc-catalogue).
        assert_eq!(Checksum::of(ChecksumAlgorithm::Crc32, CHECK).crc_value(), 0xCBF4_3926);
        assert_eq!(Checksum::of(ChecksumAlgorithm::Crc32c, CHECK).crc_value(), 0xE306_9283);
        assert_eq!(Checksum::of(ChecksumAlgorithm::Crc64Nvme, CHECK).crc_value(), 0xAE8B_1486_0A79_9888);
    }

    #[test]
    fn digests_match_known_vectors() {
        assert_eq!(
            hex::encode(Checksum::of(ChecksumAlgorithm::Sha256, b"abc").digest()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(Checksum::of(ChecksumAlgorithm::Sha1, b"abc").digest()),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        // Empty-input CRC32C is 0, sent by S3 as "AAAAAA==".
        assert_eq!(Checksum::of(ChecksumAlgorithm::Crc32c, b"").to_base64(), "AAAAAA==");
    }

    #[test]
    fn base64_round_trip_and_length_check() {
        let c = Checksum::of(ChecksumAlgorithm::Crc32c, CHECK);
        assert_eq!(Checksum::from_base64(ChecksumAlgorithm::Crc32c, &c.to_base64()), Some(c));
        assert_eq!(Checksum::from_base64(ChecksumAlgorithm::Sha256, "AAAAAA=="), None);
        assert_eq!(Checksum::from_base64(ChecksumAlgorithm::Crc32c, "not base64!"), None);
    }

    #[test]
    fn algorithm_names_parse_in_both_spellings() {
        for a in ChecksumAlgorithm::ALL {
            assert_eq!(a.cli_name().parse::<ChecksumAlgorithm>(), Ok(a));
            assert_eq!(a.s3_name().parse::<ChecksumAlgorithm>(), Ok(a));
        }
        let err = "md5".parse::<ChecksumAlgorithm>().unwrap_err();
        assert!(err.to_string().contains("use crc32c"), "{err}");
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        // Two parts "a" and "b": MD5s are well known; the result was checked with
        // `printf a | md5sum`, `printf b | md5sum` and md5 of the concatenated binary digests.
        let a = etag_to_md5("\"0cc175b9c0f1b6a831c399e269772661\"").unwrap();
        let b = etag_to_md5("92eb5ffee6ae2fec3ad71c777531578f").unwrap();
        let mut h = Md5::new();
        h.update(a);
        h.update(b);
        let expect = format!("{}-2", hex::encode(h.finalize()));
        assert_eq!(multipart_etag(&[a, b]), expect);
        assert!(etag_to_md5("\"xyz\"").is_none());
    }

    #[test]
    fn composite_is_hash_of_part_digests_with_count() {
        let p1 = Checksum::of(ChecksumAlgorithm::Crc32c, b"hello ");
        let p2 = Checksum::of(ChecksumAlgorithm::Crc32c, b"world");
        let mut concat = p1.digest().to_vec();
        concat.extend_from_slice(p2.digest());
        let expect = format!("{}-2", Checksum::of(ChecksumAlgorithm::Crc32c, &concat).to_base64());
        assert_eq!(composite(&[p1.clone(), p2]), Some(expect));
        let other = Checksum::of(ChecksumAlgorithm::Sha256, b"x");
        assert_eq!(composite(&[p1, other]), None);
        assert_eq!(composite(&[Checksum::of(ChecksumAlgorithm::Crc64Nvme, b"x")]), None);
        assert_eq!(composite(&[]), None);
    }

    proptest! {
        #[test]
        fn full_object_combine_equals_checksum_of_concatenation(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
        ) {
            let all: Vec<u8> = chunks.concat();
            for alg in [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64Nvme] {
                let parts: Vec<(Checksum, u64)> = chunks
                    .iter()
                    .map(|c| (Checksum::of(alg, c), c.len() as u64))
                    .collect();
                prop_assert_eq!(combine_full_object(&parts), Some(Checksum::of(alg, &all)));
            }
        }

        #[test]
        fn streaming_equals_one_shot(data in proptest::collection::vec(any::<u8>(), 0..2000), cut in 0usize..2000) {
            let cut = cut.min(data.len());
            for alg in ChecksumAlgorithm::ALL {
                let mut s = Checksummer::new(alg);
                s.update(&data[..cut]);
                s.update(&data[cut..]);
                prop_assert_eq!(s.finish(), Checksum::of(alg, &data));
            }
        }
    }

    #[test]
    fn combine_handles_large_lengths() {
        // 5 GiB of zeros after "abc": combine must not overflow and must match a direct computation
        // done piecewise with crc32c_append over a zero buffer (1 MiB × 5120).
        let head = Checksum::of(ChecksumAlgorithm::Crc32c, b"abc");
        let zeros = vec![0u8; 1 << 20];
        let mut tail = Checksummer::new(ChecksumAlgorithm::Crc32c);
        let mut whole = Checksummer::new(ChecksumAlgorithm::Crc32c);
        whole.update(b"abc");
        for _ in 0..5120 {
            tail.update(&zeros);
            whole.update(&zeros);
        }
        let combined = combine_full_object(&[(head, 3), (tail.finish(), 5 << 30)]).unwrap();
        assert_eq!(combined, whole.finish());
    }
}
