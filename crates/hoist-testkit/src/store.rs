//! [`TestStore`]: the real embedded store on `127.0.0.1:0` with a fresh data dir, for tests that
//! talk HTTP to S3. Shut down when dropped.

use std::path::{Path, PathBuf};

use aws_sdk_s3::config::{BehaviorVersion, Credentials as AwsCredentials, Region};
use hoist_store::{Credentials, Store, StoreHandle};

/// A running embedded store.
#[derive(Debug)]
pub struct TestStore {
    handle: Option<StoreHandle>,
    credentials: Credentials,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TestStore {
    /// Starts a store on a fresh temporary data dir with a random key pair, allowing browser
    /// calls from any origin (`--cors-origin '*'`).
    ///
    /// # Panics
    /// If the store cannot start (a broken test environment).
    pub async fn start() -> Self {
        Self::start_with_cors_origins(vec!["*".into()]).await
    }

    /// Like [`start`](Self::start), with `origins` as the global `--cors-origin` list (empty:
    /// only buckets' own CORS rules allow browser calls).
    ///
    /// # Panics
    /// If the store cannot start.
    pub async fn start_with_cors_origins(origins: Vec<String>) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().to_path_buf();
        Self::launch(&path, Some(tmp), origins).await
    }

    /// Starts a store on `dir` (which may hold a previous run's data), with the key pair stored
    /// there (generated on first use).
    ///
    /// # Panics
    /// If the store cannot start.
    pub async fn start_in(dir: &Path) -> Self {
        Self::launch(dir, None, vec!["*".into()]).await
    }

    async fn launch(dir: &Path, tmp: Option<tempfile::TempDir>, cors_origins: Vec<String>) -> Self {
        let store = Store::builder(dir).cors_origins(cors_origins).build().expect("store builds");
        let credentials = store.credentials().clone();
        let handle = store.start("127.0.0.1:0").await.expect("store starts");
        Self { handle: Some(handle), credentials, data_dir: dir.to_path_buf(), _tmp: tmp }
    }

    /// `http://127.0.0.1:PORT`.
    ///
    /// # Panics
    /// After [`shutdown`](Self::shutdown).
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        self.handle.as_ref().expect("running").endpoint_url()
    }

    /// The key pair the store accepts.
    #[must_use]
    pub fn credentials(&self) -> Credentials {
        self.credentials.clone()
    }

    /// The data dir.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// An aws-sdk-s3 client for this store (path-style, region us-east-1).
    #[must_use]
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_for(&self.endpoint_url())
    }

    /// A client with this store's credentials for another URL (a proxy in front of the store).
    #[must_use]
    pub fn client_for(&self, endpoint_url: &str) -> aws_sdk_s3::Client {
        sdk_client(endpoint_url, &self.credentials)
    }

    /// The engine's client for this store, or for a proxy in front of it at `endpoint_url`.
    ///
    /// # Panics
    /// If the client cannot be built.
    pub async fn engine_client(&self, endpoint_url: Option<String>) -> hoist_core::S3Client {
        hoist_core::S3Client::connect(&hoist_core::ClientOptions {
            endpoint_url: Some(endpoint_url.unwrap_or_else(|| self.endpoint_url())),
            credentials: Some((self.credentials.access_key.clone(), self.credentials.secret_key.clone())),
            ..Default::default()
        })
        .await
        .expect("engine client")
    }

    /// Creates a bucket.
    ///
    /// # Panics
    /// If the store refuses.
    pub async fn create_bucket(&self, name: &str) {
        self.client().create_bucket().bucket(name).send().await.expect("create bucket");
    }

    /// Stops the store (the data dir stays until the value is dropped).
    pub async fn shutdown(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

/// An aws-sdk-s3 client for any store at `endpoint_url` (path-style, region us-east-1), for
/// checks made behind the back of the code under test.
#[must_use]
pub fn sdk_client(endpoint_url: &str, credentials: &Credentials) -> aws_sdk_s3::Client {
    let creds = AwsCredentials::new(&credentials.access_key, &credentials.secret_key, None, None, "test");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint_url)
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
