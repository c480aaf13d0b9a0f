//! [`ServerConfig`]: everything `hoist serve` needs, from flags, `HOIST_*` env vars (the CLI maps
//! those) and an optional TOML file ([`ServerConfig::from_toml`]). [`ServerConfig::validate`]
//! refuses nonsense with a message naming the setting, before anything starts.
//!
//! Decisions:
//! - API tokens are configured by their SHA-256 (`token_sha256`), never in clear: a leaked config
//!   file does not leak tokens. `printf %s TOKEN | sha256sum` gives the value.
//! - Sizes and durations in the file are strings with units (`"5GiB"`, `"15m"`), as on the command
//!   line, or plain integers (bytes, seconds).
//! - No mode accepts uploads without a token unless `allow_anonymous` says so explicitly.

use std::path::PathBuf;
use std::time::Duration;

use hoist_core::units::{parse_duration, parse_size};
use serde::Deserialize;

/// Default lifetime of a pre-signed part URL (the issue: short, 15 minutes).
pub const DEFAULT_PART_URL_TTL: Duration = Duration::from_mins(15);
/// Default lifetime of an upload session before the janitor aborts it.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_hours(24);
/// Default part size the planner starts from (grown for large files by the engine's planner).
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Default cap on one API key's unfinished uploads (`max_open_uploads`): room for a large batch
/// of files in flight (browsers upload a few at a time), while one key cannot open uploads
/// without bound (each holds a row here and staged parts in S3 until it ends or expires).
pub const DEFAULT_MAX_OPEN_UPLOADS: u32 = 1_000;
/// The bucket the embedded store is given when none is named.
pub const DEFAULT_BUCKET: &str = "hoist";

/// Where objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Target {
    /// Start the embedded store in-process, listening on this address (port 0: any free port).
    Embedded {
        /// Listen address of the store.
        listen: String,
    },
    /// An external S3 endpoint; credentials from the AWS chain.
    External {
        /// Endpoint URL (`None`: AWS itself).
        endpoint: Option<String>,
        /// Region (`None`: from the AWS config chain).
        region: Option<String>,
        /// Named AWS profile.
        profile: Option<String>,
        /// An explicit key pair instead of the AWS chain (tests, benchmarks).
        credentials: Option<(String, String)>,
    },
}

/// What one API key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Name used in logs and the database (not secret).
    pub name: String,
    /// Key prefix every object of this key is written under (ends with `/` or is empty).
    pub prefix: String,
    /// Largest object this key may upload, in bytes.
    pub max_size: u64,
    /// Allowed content types: `type/subtype`, `type/*` or `*/*`.
    pub content_types: Vec<String>,
    /// API requests allowed per minute (token bucket of this capacity).
    pub rate_per_minute: u32,
    /// Bytes this key may hold in uploads that are not finished yet (`None`: no quota).
    pub quota: Option<u64>,
    /// Most unfinished uploads this key may have at once.
    pub max_open_uploads: u32,
}

impl KeyPolicy {
    /// The policy of the `--dev` token and of anonymous access: generous, for local use.
    #[must_use]
    pub fn generous(name: &str, prefix: &str) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.into(),
            max_size: hoist_core::ProviderLimits::STORE_5TIB.max_object_size,
            content_types: vec!["*/*".into()],
            rate_per_minute: 60_000,
            quota: None,
            max_open_uploads: DEFAULT_MAX_OPEN_UPLOADS,
        }
    }
}

/// An API key: its policy and the SHA-256 of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    /// SHA-256 of the bearer token.
    pub token_sha256: [u8; 32],
    /// What the key may do.
    pub policy: KeyPolicy,
}

/// The whole service configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address of the API (port 0: any free port).
    pub listen: String,
    /// Data directory: the `SQLite` database, the embedded store's data, the dev token.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…` (default: `SQLite` in the data dir).
    pub database_url: Option<String>,
    /// Where objects go.
    pub s3: S3Target,
    /// Bucket for uploads.
    pub bucket: String,
    /// Create a dev token (kept in the data dir) with a generous policy.
    pub dev: bool,
    /// Accept requests without a token, under the `anonymous/` prefix. Off unless asked for.
    pub allow_anonymous: bool,
    /// Configured API keys.
    pub keys: Vec<ApiKeyConfig>,
    /// Lifetime of a pre-signed part URL.
    pub part_url_ttl: Duration,
    /// Lifetime of an upload session; the janitor aborts expired ones.
    pub session_ttl: Duration,
    /// How often the janitor looks for expired sessions.
    pub janitor_interval: Duration,
    /// Extra browser origins allowed to call the API and the embedded store.
    pub cors_origins: Vec<String>,
    /// Part size the planner starts from.
    pub part_size: u64,
    /// How long a client may take to send a request header, or keep a connection idle, on the
    /// API and the embedded store (default `hoist_store::conn::HEADER_READ_TIMEOUT`).
    pub header_read_timeout: Duration,
}

impl ServerConfig {
    /// Defaults: API on 127.0.0.1:8080, embedded store on any free port, bucket `hoist`.
    #[must_use]
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: data_dir.into(),
            database_url: None,
            s3: S3Target::Embedded { listen: "127.0.0.1:0".into() },
            bucket: DEFAULT_BUCKET.into(),
            dev: false,
            allow_anonymous: false,
            keys: Vec::new(),
            part_url_ttl: DEFAULT_PART_URL_TTL,
            session_ttl: DEFAULT_SESSION_TTL,
            janitor_interval: Duration::from_mins(1),
            cors_origins: Vec::new(),
            part_size: DEFAULT_PART_SIZE,
            header_read_timeout: hoist_store::conn::HEADER_READ_TIMEOUT,
        }
    }

    /// Reads a TOML config file's text onto these settings (file values replace defaults).
    pub fn from_toml(mut self, text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError(format!("config file: {e}")))?;
        if let Some(v) = file.listen {
            self.listen = v;
        }
        if let Some(v) = file.data {
            self.data_dir = v;
        }
        if file.database_url.is_some() {
            self.database_url = file.database_url;
        }
        if let Some(v) = file.bucket {
            self.bucket = v;
        }
        if file.s3_endpoint.is_some() || file.region.is_some() || file.profile.is_some() {
            self.s3 = S3Target::External { endpoint: file.s3_endpoint, region: file.region, profile: file.profile, credentials: None };
        }
        if let Some(v) = file.part_url_ttl {
            self.part_url_ttl = v.duration("part_url_ttl")?;
        }
        if let Some(v) = file.session_ttl {
            self.session_ttl = v.duration("session_ttl")?;
        }
        if let Some(v) = file.part_size {
            self.part_size = v.size("part_size")?;
        }
        self.allow_anonymous |= file.allow_anonymous.unwrap_or(false);
        self.cors_origins.extend(file.cors_origins.unwrap_or_default());
        for k in file.keys.unwrap_or_default() {
            self.keys.push(k.resolve()?);
        }
        Ok(self)
    }

    /// Checks the settings; every refusal names the setting and a good value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.part_url_ttl < Duration::from_secs(1) || self.part_url_ttl > Duration::from_hours(168) {
            return bad("part URL lifetime must be between 1s and 7d (S3's limit for pre-signed URLs), e.g. 15m".into());
        }
        if self.session_ttl < Duration::from_secs(1) {
            return bad("session lifetime must be at least 1s, e.g. 24h".into());
        }
        if self.header_read_timeout.is_zero() {
            return bad("header read timeout must be more than zero".into());
        }
        if self.janitor_interval.is_zero() {
            return bad("janitor interval must be more than zero".into());
        }
        hoist_core::plan::check_part_size(self.part_size, &hoist_core::ProviderLimits::AWS)
            .map_err(|e| ConfigError(format!("part size: {e}")))?;
        if !hoist_core::config::is_valid_bucket_name(&self.bucket) {
            return bad(format!("{:?} is not a valid bucket name: 3-63 lowercase letters, digits, '.' and '-'", self.bucket));
        }
        if self.keys.is_empty() && !self.dev && !self.allow_anonymous {
            return bad("no API keys are configured: add [[keys]] to the config file, or run with --dev for local use".into());
        }
        for k in &self.keys {
            let p = &k.policy;
            if !(p.prefix.is_empty() || p.prefix.ends_with('/')) || p.prefix.starts_with('/') || p.prefix.split('/').any(|s| s == ".." || s == ".") {
                return bad(format!("key {:?}: prefix {:?} must be empty or like \"users/ana/\" (no leading '/', no '.' or '..')", p.name, p.prefix));
            }
            if p.max_open_uploads == 0 {
                return bad(format!("key {:?}: max_open_uploads must be at least 1", p.name));
            }
            if p.rate_per_minute == 0 {
                return bad(format!("key {:?}: rate_per_minute must be at least 1", p.name));
            }
            if p.content_types.is_empty() {
                return bad(format!("key {:?}: content_types is empty: list allowed types, e.g. [\"image/*\"] or [\"*/*\"]", p.name));
            }
        }
        Ok(())
    }
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The TOML file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data: Option<PathBuf>,
    database_url: Option<String>,
    bucket: Option<String>,
    s3_endpoint: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    part_url_ttl: Option<Unit>,
    session_ttl: Option<Unit>,
    part_size: Option<Unit>,
    allow_anonymous: Option<bool>,
    cors_origins: Option<Vec<String>>,
    keys: Option<Vec<FileKey>>,
}

/// A size or duration: a string with a unit, or a plain number (bytes or seconds).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Unit {
    Number(u64),
    Text(String),
}

impl Unit {
    fn size(&self, name: &str) -> Result<u64, ConfigError> {
        match self {
            Self::Number(n) => Ok(*n),
            Self::Text(t) => parse_size(t).map_err(|e| ConfigError(format!("{name}: {e}"))),
        }
    }

    fn duration(&self, name: &str) -> Result<Duration, ConfigError> {
        match self {
            Self::Number(n) => Ok(Duration::from_secs(*n)),
            Self::Text(t) => parse_duration(t).map_err(|e| ConfigError(format!("{name}: {e}"))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    name: String,
    token_sha256: String,
    prefix: String,
    max_size: Unit,
    content_types: Vec<String>,
    rate_per_minute: Option<u32>,
    quota: Option<Unit>,
    max_open_uploads: Option<u32>,
}

impl FileKey {
    fn resolve(self) -> Result<ApiKeyConfig, ConfigError> {
        let mut token_sha256 = [0u8; 32];
        hex::decode_to_slice(self.token_sha256.trim(), &mut token_sha256).map_err(|_| {
            ConfigError(format!("key {:?}: token_sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)", self.name))
        })?;
        Ok(ApiKeyConfig {
            token_sha256,
            policy: KeyPolicy {
                max_size: self.max_size.size("max_size")?,
                quota: self.quota.map(|q| q.size("quota")).transpose()?,
                rate_per_minute: self.rate_per_minute.unwrap_or(600),
                max_open_uploads: self.max_open_uploads.unwrap_or(DEFAULT_MAX_OPEN_UPLOADS),
                name: self.name,
                prefix: self.prefix,
                content_types: self.content_types,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = r#"
        part_url_ttl = "10m"
        [[keys]]
        name = "web"
        token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        prefix = "web/"
        max_size = "1GiB"
        content_types = ["image/*"]
        quota = 10000
    "#;

    #[test]
    fn a_file_fills_the_config() {
        let c = ServerConfig::new("/tmp/x").from_toml(KEY).unwrap();
        c.validate().unwrap();
        assert_eq!(c.part_url_ttl, Duration::from_mins(10));
        let k = &c.keys[0];
        assert_eq!(k.policy.max_size, 1 << 30);
        assert_eq!(k.policy.quota, Some(10_000));
        assert_eq!(k.policy.rate_per_minute, 600);
        assert_eq!(k.policy.max_open_uploads, DEFAULT_MAX_OPEN_UPLOADS);
        assert_eq!(hex::encode(k.token_sha256), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    }

    #[test]
    fn nonsense_is_refused_with_the_setting_named() {
        let e = ServerConfig::new("/tmp/x").validate().unwrap_err();
        assert!(e.0.contains("--dev"), "{e}");
        let e = ServerConfig::new("/tmp/x").from_toml("listen = 1").unwrap_err();
        assert!(e.0.contains("config file"), "{e}");
        let e = ServerConfig::new("/tmp/x").from_toml("colour = \"red\"").unwrap_err();
        assert!(e.0.contains("colour"), "{e}");
        let e = ServerConfig::new("/tmp/x").from_toml(&KEY.replace("9f86", "zz86")).unwrap_err();
        assert!(e.0.contains("64 hex digits"), "{e}");
        let c = ServerConfig::new("/tmp/x").from_toml(&KEY.replace("\"web/\"", "\"../x/\"")).unwrap();
        assert!(c.validate().unwrap_err().0.contains("prefix"));
        let c = ServerConfig::new("/tmp/x").from_toml(&KEY.replace("\"10m\"", "\"30d\"")).unwrap();
        assert!(c.validate().unwrap_err().0.contains("7d"));
        let mut c = ServerConfig::new("/tmp/x");
        c.dev = true;
        c.bucket = "Bad_Bucket".into();
        assert!(c.validate().unwrap_err().0.contains("bucket name"));
    }
}
