//! Parsers for command-line values: `s3://bucket/key` URLs, sizes (`64MiB`), durations (`7d`) and
//! `k=v` metadata. Each error names what was wrong and what a good value looks like, because clap
//! prints it as is.

use std::fmt;

/// An `s3://BUCKET[/KEY]` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Url {
    /// The bucket name.
    pub(crate) bucket: String,
    /// The key or prefix; empty when the URL names only the bucket.
    pub(crate) key: String,
}

impl S3Url {
    /// Parses `s3://bucket/key` (key may be empty or a prefix).
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let rest =
            s.strip_prefix("s3://").ok_or_else(|| format!("{s:?} is not an S3 URL: write it as s3://BUCKET/KEY"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{s:?} has no bucket: write it as s3://BUCKET/KEY"));
        }
        if !hoist_core::config::is_valid_bucket_name(bucket) {
            return Err(format!(
                "{bucket:?} is not a valid bucket name: 3-63 characters, lowercase letters, digits, '.' and '-'"
            ));
        }
        Ok(Self { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// Parses a URL that must name an object (non-empty key not ending in `/`).
    pub(crate) fn parse_object(s: &str) -> Result<Self, String> {
        let url = Self::parse(s)?;
        if url.key.is_empty() {
            return Err(format!("{s:?} names no object key: write it as s3://BUCKET/KEY"));
        }
        if url.key.ends_with('/') {
            return Err(format!("{s:?} ends with '/', which names a folder: add the object name after it"));
        }
        Ok(url)
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

pub(crate) use hoist_core::units::{parse_duration, parse_size};

/// Parses one `key=value` metadata pair (key: letters, digits, `-` and `_`).
pub(crate) fn parse_metadata(s: &str) -> Result<(String, String), String> {
    let (k, v) =
        s.split_once('=').ok_or_else(|| format!("{s:?} is not key=value: write metadata as --metadata name=value"))?;
    if !hoist_core::config::is_valid_metadata_name(k) {
        return Err(format!("metadata name {k:?} is not allowed: use letters, digits, '-' and '_'"));
    }
    Ok((k.to_ascii_lowercase(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            S3Url::parse_object("s3://my-bucket/a/b.bin").unwrap(),
            S3Url { bucket: "my-bucket".into(), key: "a/b.bin".into() }
        );
        assert_eq!(S3Url::parse("s3://my-bucket").unwrap().key, "");
        assert_eq!(S3Url::parse("s3://my-bucket/logs/").unwrap().key, "logs/");
        for bad in ["s3:/x", "x/y", "s3://", "s3:///key", "https://b/k"] {
            let e = S3Url::parse_object(bad).unwrap_err();
            assert!(e.contains("s3://BUCKET/KEY"), "{bad}: {e}");
        }
        assert!(S3Url::parse_object("s3://bucket").unwrap_err().contains("no object key"));
        assert!(S3Url::parse_object("s3://bucket/dir/").unwrap_err().contains("folder"));
        assert!(S3Url::parse("s3://Bad_Bucket/k").unwrap_err().contains("valid bucket name"));
        assert!(S3Url::parse("s3://ab/k").unwrap_err().contains("valid bucket name"));
    }

    #[test]
    fn metadata() {
        assert_eq!(parse_metadata("Owner=ana=b"), Ok(("owner".into(), "ana=b".into())));
        assert!(parse_metadata("novalue").unwrap_err().contains("key=value"));
        assert!(parse_metadata("bad key=v").unwrap_err().contains("not allowed"));
    }
}
