//! `hoist demo`: the quick start. Starts the embedded store in-process on a free port, writes a
//! random file, uploads it with the same code path as `hoist put` (progress bar included), reads
//! the object back to compare it byte for byte, and prints the outcome.

use std::io::Write as _;
use std::time::Instant;

use hoist_core::checksum::{ChecksumAlgorithm, Checksummer};
use hoist_core::config::MIB;
use hoist_core::{ClientOptions, ObjectClient as _, S3Client, Source, UploadConfig, UploadRequest, Uploader};
use hoist_store::Store;
use rand::RngCore as _;

use crate::exit::{CliError, Exit};
use crate::parse::{S3Url, parse_size};
use crate::render::Mode;

/// Flags of `hoist demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Size of the generated file.
    #[arg(long, value_parser = parse_size, default_value = "256MiB")]
    pub(crate) size: u64,
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |e| CliError::new(Exit::Failure, format!("{what}: {e}"))
}

/// Runs `hoist demo`.
pub(crate) async fn run(args: DemoArgs) -> Result<(), CliError> {
    let dir = tempfile::tempdir().map_err(io_err("cannot create a temp dir"))?;
    let store = Store::builder(dir.path().join("store")).build()?;
    let creds = store.credentials().clone();
    let handle = store.start("127.0.0.1:0").await?;
    crate::render::say(&format!("embedded store listening on {} (data in a temp dir)", handle.endpoint_url()));

    let path = dir.path().join("demo.bin");
    let expected = write_random(&path, args.size).map_err(io_err("cannot write the demo file"))?;
    crate::render::say(&format!("generated {} of random data", super::put::human(args.size)));

    let client = S3Client::connect(&ClientOptions {
        endpoint_url: Some(handle.endpoint_url()),
        credentials: Some((creds.access_key, creds.secret_key)),
        ..Default::default()
    })
    .await?;
    client
        .create_bucket("demo")
        .await
        .map_err(|e| CliError::new(Exit::Failure, format!("cannot create the demo bucket: {e}")))?;
    let dest = S3Url { bucket: "demo".into(), key: "demo.bin".into() };
    let req = UploadRequest {
        source: Source::File(path.clone()),
        bucket: dest.bucket.clone(),
        key: dest.key.clone(),
        content_type: None,
        metadata: vec![],
    };
    let started = Instant::now();
    let uploader = Uploader::new(client.clone(), UploadConfig::default());
    let outcome =
        super::put::upload(&uploader, &req, Mode::from_flags(false, false, false), hoist_core::OnFailure::Abort)
            .await
            .map_err(|f| f.error)?;
    let secs = started.elapsed().as_secs_f64();
    crate::render::say(&super::put::summary(&path.display().to_string(), &dest, &outcome).clone());

    // Read it back and compare, independently of the engine's own verification.
    let back = dir.path().join("read-back.bin");
    let len = client
        .download("demo", "demo.bin", &outcome.etag, &back)
        .await
        .map_err(|e| CliError::new(Exit::Failure, format!("cannot read the object back: {e}")))?;
    let got = hoist_core::source::checksum_range(&back, 0, len, ChecksumAlgorithm::Crc32c)?;
    handle.shutdown().await;
    if len != args.size || got != expected {
        return Err(CliError::new(Exit::Integrity, "the object read back differs from the file"));
    }
    #[allow(clippy::cast_precision_loss)] // display only
    let rate = args.size as f64 / MIB as f64 / secs;
    crate::render::say(&format!(
        "read back {} and compared: identical. Upload took {secs:.2} s ({rate:.0} MiB/s).",
        super::put::human(len)
    ));
    Ok(())
}

/// Writes `size` random bytes to `path`; returns their CRC32C.
fn write_random(path: &std::path::Path, size: u64) -> std::io::Result<hoist_core::checksum::Checksum> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut sum = Checksummer::new(ChecksumAlgorithm::Crc32c);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut rng = rand::rng();
    while left > 0 {
        let n = usize::try_from(left.min(MIB)).unwrap_or(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        sum.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(sum.finish())
}
