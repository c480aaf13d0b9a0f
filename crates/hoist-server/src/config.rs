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
//! - Webhook endpoints and their secrets come from this file only, never from API callers; a
//!   secret is Standard Webhooks' `whsec_` + base64 of 24 to 64 random bytes, and `Debug` never
//!   prints it.

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
/// Default claims a job gets before it is `dead` (the issue: 3).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default time limit of one job attempt.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_hours(1);
/// Default lease of a claimed job; a worker renews it every [`DEFAULT_HEARTBEAT`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default heartbeat interval: a lease survives five missed heartbeats' worth of hiccups.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

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

/// When an upload starts a job: content type and key prefix → preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRule {
    /// Content types that match: `video/mp4`, `video/*`, `*/*`.
    pub content_types: Vec<String>,
    /// Keys that match start with this (the API key's own prefix included); empty: any.
    pub prefix: String,
    /// The preset to run (a name the workers know, e.g. `mp4-720p`).
    pub preset: String,
}

impl PipelineRule {
    /// Whether an object with this key and content type matches.
    #[must_use]
    pub fn matches(&self, key: &str, content_type: &str) -> bool {
        key.starts_with(&self.prefix) && crate::policy::content_type_matches(&self.content_types, content_type)
    }
}

/// What happens after an upload: rules, and how jobs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Rules; every matching rule queues one job (one per preset).
    pub rules: Vec<PipelineRule>,
    /// Workers inside `hoist serve` (0: jobs wait for `hoist worker` processes).
    pub workers: usize,
    /// Claims a job gets before it is `dead`.
    pub max_attempts: u32,
    /// Time limit of one attempt.
    pub job_timeout: Duration,
    /// Lease of a claimed job.
    pub lease: Duration,
    /// How often a worker renews its lease and reports progress.
    pub heartbeat: Duration,
    /// Where workers keep sources and outputs while a job runs (default: `scratch` in the data dir).
    pub scratch_dir: Option<PathBuf>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            workers: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            job_timeout: DEFAULT_JOB_TIMEOUT,
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_HEARTBEAT,
            scratch_dir: None,
        }
    }
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
    /// What happens after an upload.
    pub pipeline: PipelineConfig,
    /// Where events are delivered (`[[webhooks]]` in the file).
    pub webhooks: Vec<WebhookEndpoint>,
    /// The secret an external `hoist store --notify …/v1/events/s3 --notify-secret …` signs its
    /// event notifications with; they are then accepted without an API key and belong to the key
    /// whose prefix holds the object. (The embedded store's secret is made at each start.)
    pub s3_events_secret: Option<String>,
}

/// One webhook endpoint from the operator's config.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `http://` or `https://` URL the events are sent to (POST).
    pub url: String,
    /// `whsec_` + base64 of the signing key (Standard Webhooks).
    pub secret: String,
    /// Event types sent to it (`upload.completed`, `job.succeeded`, …); empty: all.
    pub events: Vec<String>,
}

/// Shortest and longest signing key, in bytes (the Standard Webhooks spec: 24 to 64).
const WEBHOOK_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

impl WebhookEndpoint {
    /// The HMAC key: the base64-decoded part of the secret after `whsec_`.
    pub fn signing_key(&self) -> Result<Vec<u8>, ConfigError> {
        use base64::Engine as _;
        let refuse = || {
            ConfigError(format!(
                "webhook {}: secret must be \"whsec_\" followed by base64 of {}-{} random bytes, \
                 e.g. whsec_$(head -c 32 /dev/urandom | base64)",
                self.target(),
                WEBHOOK_KEY_BYTES.start(),
                WEBHOOK_KEY_BYTES.end()
            ))
        };
        let b64 = self.secret.strip_prefix("whsec_").ok_or_else(refuse)?;
        let key = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| refuse())?;
        if WEBHOOK_KEY_BYTES.contains(&key.len()) { Ok(key) } else { Err(refuse()) }
    }

    /// The URL's host and path, for logs and listings: never the query string, which may carry
    /// a token.
    #[must_use]
    pub fn target(&self) -> String {
        url_target(&self.url)
    }

    /// Whether events of type `kind` go to this endpoint.
    #[must_use]
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.parse::<http::Uri>().ok();
        if !url.is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
        }) {
            return Err(ConfigError(format!(
                "webhook url {:?} is not an http(s) URL: use e.g. url = \"https://app.example.com/hooks/hoist\"",
                self.target()
            )));
        }
        self.signing_key()?;
        let known = crate::pipeline::events::TYPES;
        if let Some(bad) = self.events.iter().find(|e| !known.contains(&e.as_str())) {
            return Err(ConfigError(format!(
                "webhook {}: unknown event type {bad:?} in events: use some of {known:?}, or leave events out for all",
                self.target()
            )));
        }
        Ok(())
    }
}

/// A URL's host (with port) and path, without scheme, credentials or query string.
#[must_use]
pub fn url_target(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) => {
            let port = u.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}{port}{}", u.host().unwrap_or(""), u.path())
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("url", &self.target())
            .field("secret", &"whsec_…")
            .field("events", &self.events)
            .finish()
    }
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
            pipeline: PipelineConfig::default(),
            webhooks: Vec::new(),
            s3_events_secret: None,
            header_read_timeout: hoist_store::conn::HEADER_READ_TIMEOUT,
        }
    }

    /// The database URL: the configured one, or `SQLite` in the data dir.
    #[must_use]
    pub fn database_url_or_default(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("hoist.db").display()))
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
            self.s3 = S3Target::External {
                endpoint: file.s3_endpoint,
                region: file.region,
                profile: file.profile,
                credentials: None,
            };
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
        if let Some(p) = file.pipeline {
            p.apply(&mut self.pipeline)?;
        }
        for w in file.webhooks.unwrap_or_default() {
            self.webhooks.push(WebhookEndpoint { url: w.url, secret: w.secret, events: w.events.unwrap_or_default() });
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
            return bad(format!(
                "{:?} is not a valid bucket name: 3-63 lowercase letters, digits, '.' and '-'",
                self.bucket
            ));
        }
        if self.keys.is_empty() && !self.dev && !self.allow_anonymous {
            return bad(
                "no API keys are configured: add [[keys]] to the config file, or run with --dev for local use".into()
            );
        }
        self.validate_pipeline()?;
        for k in &self.keys {
            let p = &k.policy;
            if !(p.prefix.is_empty() || p.prefix.ends_with('/'))
                || p.prefix.starts_with('/')
                || p.prefix.split('/').any(|s| s == ".." || s == ".")
            {
                return bad(format!(
                    "key {:?}: prefix {:?} must be empty or like \"users/ana/\" (no leading '/', no '.' or '..')",
                    p.name, p.prefix
                ));
            }
            if p.max_open_uploads == 0 {
                return bad(format!("key {:?}: max_open_uploads must be at least 1", p.name));
            }
            if p.rate_per_minute == 0 {
                return bad(format!("key {:?}: rate_per_minute must be at least 1", p.name));
            }
            if p.content_types.is_empty() {
                return bad(format!(
                    "key {:?}: content_types is empty: list allowed types, e.g. [\"image/*\"] or [\"*/*\"]",
                    p.name
                ));
            }
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            w.validate()?;
            if self.webhooks[..i].iter().any(|o| o.url == w.url) {
                return bad(format!("webhook {} is configured twice: keep one [[webhooks]] entry per url", w.target()));
            }
        }
        Ok(())
    }
}

impl ServerConfig {
    fn validate_pipeline(&self) -> Result<(), ConfigError> {
        self.pipeline.validate_workers()?;
        let p = &self.pipeline;
        let bad = |m: String| Err(ConfigError(m));
        for r in &p.rules {
            if crate::pipeline::preset_names().iter().all(|n| *n != r.preset) {
                return bad(format!(
                    "pipeline rule: unknown preset {:?}: use one of {}",
                    r.preset,
                    crate::pipeline::preset_names().join(", ")
                ));
            }
            if r.content_types.is_empty() {
                return bad(format!(
                    "pipeline rule for preset {:?}: content_types is empty, e.g. [\"video/*\"]",
                    r.preset
                ));
            }
        }
        Ok(())
    }
}

impl PipelineConfig {
    /// Checks the settings workers use.
    pub fn validate_workers(&self) -> Result<(), ConfigError> {
        let p = self;
        let bad = |m: String| Err(ConfigError(m));
        if p.max_attempts == 0 {
            return bad("pipeline.max_attempts must be at least 1, e.g. 3".into());
        }
        if p.job_timeout < Duration::from_secs(1) {
            return bad("pipeline.job_timeout must be at least 1s, e.g. 1h".into());
        }
        if p.heartbeat.is_zero() || p.lease < p.heartbeat.saturating_mul(2) {
            return bad(format!(
                "pipeline.lease ({:?}) must be at least twice pipeline.heartbeat ({:?}), e.g. lease = \"30s\", heartbeat = \"5s\"",
                p.lease, p.heartbeat
            ));
        }
        Ok(())
    }
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The TOML file, as written (not `Debug`: it holds webhook secrets).
#[derive(Deserialize)]
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
    pipeline: Option<FilePipeline>,
    webhooks: Option<Vec<FileWebhook>>,
}

/// Not `Debug`: it holds a secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    url: String,
    secret: String,
    events: Option<Vec<String>>,
}

/// `[pipeline]` in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePipeline {
    workers: Option<usize>,
    max_attempts: Option<u32>,
    job_timeout: Option<Unit>,
    lease: Option<Unit>,
    heartbeat: Option<Unit>,
    scratch_dir: Option<PathBuf>,
    rules: Option<Vec<FileRule>>,
}

/// `[[pipeline.rules]]` in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    content_types: Vec<String>,
    #[serde(default)]
    prefix: String,
    preset: String,
}

impl FilePipeline {
    fn apply(self, p: &mut PipelineConfig) -> Result<(), ConfigError> {
        if let Some(v) = self.workers {
            p.workers = v;
        }
        if let Some(v) = self.max_attempts {
            p.max_attempts = v;
        }
        if let Some(v) = self.job_timeout {
            p.job_timeout = v.duration("pipeline.job_timeout")?;
        }
        if let Some(v) = self.lease {
            p.lease = v.duration("pipeline.lease")?;
        }
        if let Some(v) = self.heartbeat {
            p.heartbeat = v.duration("pipeline.heartbeat")?;
        }
        if self.scratch_dir.is_some() {
            p.scratch_dir = self.scratch_dir;
        }
        for r in self.rules.unwrap_or_default() {
            p.rules.push(PipelineRule { content_types: r.content_types, prefix: r.prefix, preset: r.preset });
        }
        Ok(())
    }
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
            ConfigError(format!(
                "key {:?}: token_sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)",
                self.name
            ))
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

    const HOOK: &str = r#"
        [[webhooks]]
        url = "https://app.example.com/hooks/hoist?token=abc"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        events = ["job.succeeded", "job.failed"]
        [[webhooks]]
        url = "http://127.0.0.1:9000/all"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    "#;

    #[test]
    fn webhooks_are_read_checked_and_their_secrets_never_printed() {
        let c = ServerConfig::new("/tmp/x").from_toml(&format!("{KEY}{HOOK}")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.webhooks.len(), 2);
        let w = &c.webhooks[0];
        assert_eq!(w.signing_key().unwrap().len(), 24);
        assert!(w.wants("job.failed") && !w.wants("upload.completed"));
        assert!(c.webhooks[1].wants("upload.completed"), "no events: all");
        let shown = format!("{c:?}");
        assert!(!shown.contains("MfKQ9r8") && !shown.contains("token=abc"), "{shown}");
        assert!(shown.contains("app.example.com/hooks/hoist"), "{shown}");

        let refused = |from: &str, to: &str| {
            let c = ServerConfig::new("/tmp/x").from_toml(&format!("{KEY}{}", HOOK.replacen(from, to, 1))).unwrap();
            c.validate().unwrap_err().0
        };
        let e = refused("https://app", "ftp://app");
        assert!(e.contains("not an http(s) URL") && e.contains("url = \"https://"), "{e}");
        let e = refused("whsec_MfKQ", "MfKQ");
        assert!(e.contains("secret must be \"whsec_\"") && e.contains("24-64"), "{e}");
        let e = refused("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ=");
        assert!(e.contains("whsec_"), "a 5-byte key: {e}");
        let e = refused("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!");
        assert!(e.contains("whsec_"), "{e}");
        assert!(!e.contains("not base64!"), "the secret is not echoed: {e}");
        let e = refused("\"job.failed\"", "\"job.finished\"");
        assert!(e.contains("unknown event type \"job.finished\"") && e.contains("job.succeeded"), "{e}");
        let e = refused("http://127.0.0.1:9000/all", "https://app.example.com/hooks/hoist?token=abc");
        assert!(e.contains("configured twice"), "{e}");
        let e = ServerConfig::new("/tmp/x")
            .from_toml("[[webhooks]]\nurl = \"http://a/\"\nsecret = \"whsec_x\"\nheaders = 1")
            .unwrap_err();
        assert!(e.0.contains("headers"), "{e}");
    }
}
