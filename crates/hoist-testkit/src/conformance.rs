//! [`Endpoint`]: where the conformance tests run: the embedded store (a fresh [`TestStore`]) by
//! default, or an external S3 endpoint named by environment variables, so the same cases check
//! Garage, MinIO or AWS:
//!
//! | variable | meaning |
//! |---|---|
//! | `HOIST_CONFORMANCE_ENDPOINT` | `http(s)://host:port` of the store (unset: the embedded store) |
//! | `HOIST_CONFORMANCE_ACCESS_KEY_ID`, `HOIST_CONFORMANCE_SECRET_ACCESS_KEY` | its key pair |
//! | `HOIST_CONFORMANCE_BUCKET` | an existing bucket the tests may write to |
//! | `HOIST_CONFORMANCE_REGION` | the region it signs for (default `us-east-1`; Garage's is `garage`) |
//!
//! Decisions: every case writes under a fresh random prefix of the bucket, so cases and runs
//! never see each other's objects. A case may be skipped only against an external store, and
//! only with a reason that names what the store does not implement; on the embedded store a
//! skip is a failure (it must implement everything the cases check). Each case prints one line
//! `CONFORMANCE <target> <case> pass|skip: <reason>` (with `--nocapture`), which
//! `bench/interop.sh` turns into its table.

use std::fmt::Write as _;

use aws_sdk_s3::config::{BehaviorVersion, Credentials as AwsCredentials, Region};
use rand::RngCore as _;

use crate::TestStore;

/// A store to run conformance cases on.
#[derive(Debug)]
pub struct Endpoint {
    /// `http://host:port`.
    pub url: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// The bucket cases write to.
    pub bucket: String,
    /// The signing region.
    pub region: String,
    /// `embedded` or `external`, for the printed lines.
    pub target: &'static str,
    prefix: String,
    /// The embedded store, kept running while the endpoint lives (`None`: external).
    store: Option<TestStore>,
}

impl Endpoint {
    /// The external endpoint when `HOIST_CONFORMANCE_ENDPOINT` is set, else a fresh embedded
    /// store with a bucket `conformance`.
    ///
    /// # Panics
    /// When the endpoint is named but its key pair or bucket is not, or the store cannot start.
    pub async fn from_env() -> Self {
        let mut p = [0u8; 6];
        rand::rng().fill_bytes(&mut p);
        let prefix = p.iter().fold(String::from("conformance-"), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }) + "/";
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(url) = var("HOIST_CONFORMANCE_ENDPOINT") {
            let need =
                |name: &str| var(name).unwrap_or_else(|| panic!("HOIST_CONFORMANCE_ENDPOINT is set: set {name} too"));
            return Self {
                url,
                access_key: need("HOIST_CONFORMANCE_ACCESS_KEY_ID"),
                secret_key: need("HOIST_CONFORMANCE_SECRET_ACCESS_KEY"),
                bucket: need("HOIST_CONFORMANCE_BUCKET"),
                region: var("HOIST_CONFORMANCE_REGION").unwrap_or_else(|| "us-east-1".into()),
                target: "external",
                prefix,
                store: None,
            };
        }
        let store = TestStore::start().await;
        store.create_bucket("conformance").await;
        let c = store.credentials();
        Self {
            url: store.endpoint_url(),
            access_key: c.access_key,
            secret_key: c.secret_key,
            bucket: "conformance".into(),
            region: "us-east-1".into(),
            target: "embedded",
            prefix,
            store: Some(store),
        }
    }

    /// Whether this is an external store.
    #[must_use]
    pub fn is_external(&self) -> bool {
        self.store.is_none()
    }

    /// `name` under this run's prefix.
    #[must_use]
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// An aws-sdk-s3 client (path-style, this endpoint's region and keys).
    #[must_use]
    pub fn client(&self) -> aws_sdk_s3::Client {
        let creds = AwsCredentials::new(&self.access_key, &self.secret_key, None, None, "conformance");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .endpoint_url(&self.url)
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Reports `case` as passed.
    pub fn pass(&self, case: &str) {
        println!("CONFORMANCE {} {case} pass", self.target);
    }

    /// Reports `case` as skipped because the store does not implement `what`.
    ///
    /// # Panics
    /// On the embedded store, which must implement every case.
    pub fn skip(&self, case: &str, what: &str) {
        assert!(self.is_external(), "{case}: the embedded store must implement this, but: {what}");
        println!("CONFORMANCE {} {case} skip: {what}", self.target);
    }
}
