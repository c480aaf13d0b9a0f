//! `hoist presign s3://BUCKET/KEY`: print a pre-signed URL. GET by default; PUT can bind the
//! body's length and checksum into the signature, as the upload service binds them into part
//! URLs (the signer is `hoist_core::presign`). The URL is a secret for its lifetime: it is printed,
//! never logged.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use hoist_core::checksum::{Checksum, ChecksumAlgorithm};
use hoist_core::presign::{Endpoint, presign};

use crate::cmd::put::ConnectArgs;
use crate::exit::CliError;
use crate::parse::{S3Url, parse_duration};

/// Flags of `hoist presign`.
#[derive(Debug, clap::Args)]
pub(crate) struct PresignArgs {
    /// The object, <s3://BUCKET/KEY>.
    #[arg(value_parser = S3Url::parse_object)]
    pub(crate) object: S3Url,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// How long the URL works (1s to 7d).
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub(crate) expires: Duration,
    /// What the URL allows: download (get) or upload (put).
    #[arg(long, value_enum, default_value_t)]
    pub(crate) method: Method,
    /// PUT only: the exact body length the URL accepts.
    #[arg(long, value_name = "BYTES")]
    pub(crate) content_length: Option<u64>,
    /// PUT only: the body's checksum the URL accepts, ALG:BASE64 (e.g. crc32c:yZRlqg==); the
    /// uploader must send it as the x-amz-checksum-ALG header.
    #[arg(long, value_name = "ALG:VALUE")]
    pub(crate) checksum: Option<String>,
    /// Print one JSON object (url, method, `expires_at`, headers) instead of the URL alone.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Method {
    /// Download the object.
    #[default]
    Get,
    /// Upload a body to the key.
    Put,
}

fn parse_checksum(s: &str) -> Result<Checksum, CliError> {
    let bad = || {
        CliError::usage(format!("{s:?} is not a checksum: write it as ALG:BASE64, e.g. crc32c:yZRlqg=="))
            .with_hint("ALG is one of crc32c, crc32, crc64nvme, sha1, sha256")
    };
    let (alg, value) = s.split_once(':').ok_or_else(bad)?;
    let alg: ChecksumAlgorithm = alg.parse().map_err(|_| bad())?;
    Checksum::from_base64(alg, value).ok_or_else(bad)
}

/// Runs `hoist presign`.
pub(crate) async fn run(args: PresignArgs) -> Result<(), CliError> {
    let put = args.method == Method::Put;
    if !put && (args.content_length.is_some() || args.checksum.is_some()) {
        return Err(CliError::usage(
            "--content-length and --checksum bind an upload's body: use them with --method put",
        ));
    }
    let checksum = args.checksum.as_deref().map(parse_checksum).transpose()?;
    let client = args.connect.client().await?;
    let creds = client.credentials().await?;
    let region = client.region();
    let endpoint = args.connect.endpoint_url.clone().map_or(Endpoint::Aws, Endpoint::PathStyle);
    let url = endpoint.object_url(&args.object.bucket, &region, &args.object.key);
    let length = args.content_length.map(|n| n.to_string());
    let checksum = checksum.map(|c| (c.algorithm().header_name(), c.to_base64()));
    let mut bound: Vec<(&str, &str)> = Vec::new();
    if let Some(n) = &length {
        bound.push(("content-length", n));
    }
    if let Some((name, value)) = &checksum {
        bound.push((name, value));
    }
    let method = if put { "PUT" } else { "GET" };
    let signed = presign(&creds, &region, method, &url, &bound, SystemTime::now(), args.expires)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let expires_at = time::OffsetDateTime::from(signed.expires_at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if args.json {
        let headers: serde_json::Map<String, serde_json::Value> =
            bound.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))).collect();
        let v =
            serde_json::json!({ "url": signed.url, "method": method, "expires_at": expires_at, "headers": headers });
        let _ = writeln!(out, "{v}");
    } else {
        let _ = writeln!(out, "{}", signed.url);
        if !bound.is_empty() {
            let must: Vec<String> = bound.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            eprintln!("the PUT must send exactly: {}", must.join(", "));
        }
    }
    Ok(())
}
