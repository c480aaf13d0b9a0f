//! Upload sessions in SQL through `sqlx`'s `Any` driver: `SQLite` by default (a file in the data
//! dir), Postgres when several service replicas share one database. Every statement here is
//! portable between the two (`$n` placeholders, BIGINT times in Unix milliseconds, TEXT states),
//! and the migrations in `migrations/` are applied in order at start, once each.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row as _};

/// State of an upload session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created; no part URL signed yet.
    Created,
    /// Part URLs were signed.
    Uploading,
    /// Completed and verified.
    Completed,
    /// Aborted by the caller.
    Aborted,
    /// Aborted by the janitor after the session expired.
    Expired,
    /// Completed, then deleted with its jobs' outputs.
    Deleted,
}

impl State {
    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Uploading => "uploading",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "created" => Self::Created,
            "uploading" => Self::Uploading,
            "completed" => Self::Completed,
            "aborted" => Self::Aborted,
            "deleted" => Self::Deleted,
            _ => Self::Expired,
        }
    }

    /// Whether parts may still be signed, listed, completed or aborted.
    #[must_use]
    pub fn is_open(self) -> bool {
        matches!(self, Self::Created | Self::Uploading)
    }
}

/// One upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The service's id (random, 32 hex digits).
    pub id: String,
    /// Name of the API key that owns it.
    pub api_key: String,
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub object_key: String,
    /// S3's multipart upload id.
    pub upload_id: String,
    /// The client's file name.
    pub filename: String,
    /// Content type.
    pub content_type: String,
    /// Declared size (`None` for Uppy's routes, which never send it).
    pub size: Option<u64>,
    /// Planned part size (`None` when the client chooses).
    pub part_size: Option<u64>,
    /// Planned part count.
    pub part_count: Option<u32>,
    /// Checksum algorithm parts must carry.
    pub checksum_algorithm: Option<String>,
    /// State.
    pub state: State,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Unix ms; the janitor aborts the upload after this.
    pub expires_at: i64,
    /// Unix ms.
    pub completed_at: Option<i64>,
    /// The object's `ETag` after completion.
    pub etag: Option<String>,
    /// The object's checksum after completion.
    pub checksum: Option<String>,
}

impl Session {
    /// The state as of now: an open session past its expiry counts as expired even before the
    /// janitor has aborted it.
    #[must_use]
    pub fn state_now(&self) -> State {
        if self.state.is_open() && self.expires_at < now_ms() { State::Expired } else { self.state }
    }
}

/// The migrations, in order. Each runs once; applied versions are recorded.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_uploads.sql")),
    (2, include_str!("../migrations/0002_pipeline.sql")),
    (3, include_str!("../migrations/0003_webhooks.sql")),
    (4, include_str!("../migrations/0004_staged.sql")),
];

/// The session database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    postgres: bool,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

const COLUMNS: &str = "id, api_key, bucket, object_key, upload_id, filename, content_type, size, part_size, part_count, \
     checksum_algorithm, state, created_at, updated_at, expires_at, completed_at, etag, checksum";

impl Db {
    /// Connects (creating a `SQLite` file if needed) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        // SQLite serialises writers; a few connections are plenty and avoid lock storms. Several
        // processes (`hoist serve` and `hoist worker`s) may share the file: writers wait for the
        // lock for up to 5 s rather than failing at once.
        let max = if sqlite { 4 } else { 16 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if sqlite {
            // WAL: readers (status polls, SSE) never block the writer (workers, completes).
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let db = Self { pool, postgres: url.starts_with("postgres") };
        db.migrate().await?;
        Ok(db)
    }

    /// The pool, for the pipeline's queries (`crate::pipeline`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that will write: on `SQLite` it takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting up to the busy timeout), since a deferred transaction that reads
    /// first fails with "database is locked" when another process wrote in between, instead of
    /// waiting its turn.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.postgres { self.pool.begin().await } else { self.pool.begin_with("BEGIN IMMEDIATE").await }
    }

    /// Whether the database is `PostgreSQL` (claims use `FOR UPDATE SKIP LOCKED` there).
    pub(crate) fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Applies pending migrations. Replicas (and `hoist worker`s) starting at the same moment
    /// take turns: one write transaction holds the whole run (`BEGIN IMMEDIATE` on `SQLite`, a
    /// transaction-scoped advisory lock on `PostgreSQL`), and what is applied is read inside it.
    async fn migrate(&self) -> Result<(), sqlx::Error> {
        /// The advisory lock's key: "hoist" in ASCII.
        const MIGRATION_LOCK: i64 = 0x0068_6f69_7374;
        let mut tx = self.begin_write().await?;
        if self.postgres {
            sqlx::query("SELECT CAST(pg_advisory_xact_lock($1) AS TEXT)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS hoist_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM hoist_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            for stmt in sql
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.lines().all(|l| l.trim_start().starts_with("--")))
            {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO hoist_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Stores a new session.
    pub async fn insert(&self, s: &Session) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "INSERT INTO uploads ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(&s.id)
        .bind(&s.api_key)
        .bind(&s.bucket)
        .bind(&s.object_key)
        .bind(&s.upload_id)
        .bind(&s.filename)
        .bind(&s.content_type)
        .bind(s.size.map(to_i64))
        .bind(s.part_size.map(to_i64))
        .bind(s.part_count.map(i64::from))
        .bind(s.checksum_algorithm.as_deref())
        .bind(s.state.as_str())
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(s.expires_at)
        .bind(s.completed_at)
        .bind(s.etag.as_deref())
        .bind(s.checksum.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session `id` if it belongs to `api_key`.
    pub async fn get(&self, api_key: &str, id: &str) -> Result<Option<Session>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM uploads WHERE id = $1 AND api_key = $2"))
            .bind(id)
            .bind(api_key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// The session of S3 upload `upload_id` on `object_key`, if it belongs to `api_key`.
    pub async fn get_by_upload_id(
        &self,
        api_key: &str,
        upload_id: &str,
        object_key: &str,
    ) -> Result<Option<Session>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM uploads WHERE api_key = $1 AND upload_id = $2 AND object_key = $3"
        ))
        .bind(api_key)
        .bind(upload_id)
        .bind(object_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Moves a session from one of `from` to `to`; false if it was in none of them (another
    /// request or replica won the race).
    pub async fn transition(&self, id: &str, from: &[State], to: State) -> Result<bool, sqlx::Error> {
        let placeholders: Vec<String> = (4..4 + from.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "UPDATE uploads SET state = $1, updated_at = $2 WHERE id = $3 AND state IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(now_ms()).bind(id);
        for f in from {
            q = q.bind(f.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Bytes held by `api_key`'s sessions that are still open (for quotas): the declared size,
    /// or for uploads of unknown size the bytes their signed parts may stage.
    pub async fn open_bytes(&self, api_key: &str) -> Result<u64, sqlx::Error> {
        let sum: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(COALESCE(size, staged_bytes, 0)), 0) AS BIGINT) FROM uploads \
             WHERE api_key = $1 AND state IN ('created', 'uploading')",
        )
        .bind(api_key)
        .fetch_one(&self.pool)
        .await?;
        Ok(opt_u64(sum).unwrap_or(0))
    }

    /// How many of `api_key`'s sessions are still open.
    pub async fn open_count(&self, api_key: &str) -> Result<u64, sqlx::Error> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE api_key = $1 AND state IN ('created', 'uploading')")
                .bind(api_key)
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Raises the bytes session `id` (of `api_key`) may stage to `staged`, unless that would put
    /// the key's open sessions over `quota`. Check and write are one statement: on `SQLite`
    /// (writers serialised) two concurrent requests cannot both pass; on Postgres under READ
    /// COMMITTED two requests for different uploads of one key at the same instant still could.
    /// True if the session's count is now at least `staged` (already, or raised).
    pub async fn stage(&self, id: &str, api_key: &str, staged: u64, quota: Option<u64>) -> Result<bool, sqlx::Error> {
        let staged = to_i64(staged);
        let raised = sqlx::query(
            "UPDATE uploads SET staged_bytes = $1 WHERE id = $2 AND COALESCE(staged_bytes, 0) < $3 AND $4 + \
             (SELECT CAST(COALESCE(SUM(COALESCE(size, staged_bytes, 0)), 0) AS BIGINT) FROM uploads \
              WHERE api_key = $5 AND state IN ('created', 'uploading') AND id <> $6) <= $7",
        )
        .bind(staged)
        .bind(id)
        .bind(staged)
        .bind(staged)
        .bind(api_key)
        .bind(id)
        .bind(quota.map_or(i64::MAX, to_i64))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        if raised {
            return Ok(true);
        }
        let current: Option<i64> = sqlx::query_scalar("SELECT staged_bytes FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .flatten();
        Ok(current.is_some_and(|c| c >= staged))
    }

    /// Open sessions whose expiry is before `now_ms`, oldest first, at most `limit`.
    pub async fn expired(&self, now_ms: i64, limit: i64) -> Result<Vec<Session>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM uploads WHERE state IN ('created', 'uploading') AND expires_at < $1 ORDER BY expires_at LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }
}

fn from_row(r: &AnyRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: r.try_get("id")?,
        api_key: r.try_get("api_key")?,
        bucket: r.try_get("bucket")?,
        object_key: r.try_get("object_key")?,
        upload_id: r.try_get("upload_id")?,
        filename: r.try_get("filename")?,
        content_type: r.try_get("content_type")?,
        size: opt_u64(r.try_get("size")?),
        part_size: opt_u64(r.try_get("part_size")?),
        part_count: r.try_get::<Option<i64>, _>("part_count")?.and_then(|n| u32::try_from(n).ok()),
        checksum_algorithm: r.try_get("checksum_algorithm")?,
        state: State::parse(&r.try_get::<String, _>("state")?),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        expires_at: r.try_get("expires_at")?,
        completed_at: r.try_get("completed_at")?,
        etag: r.try_get("etag")?,
        checksum: r.try_get("checksum")?,
    })
}

/// Records a completed upload's result on `conn` (the caller's transaction), if the session is
/// still open; false when another request completed it first.
pub async fn complete_in(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    etag: &str,
    checksum: Option<&str>,
    size: u64,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE uploads SET state = $1, updated_at = $2, completed_at = $3, etag = $4, checksum = $5, size = $6 \
         WHERE id = $7 AND state IN ('created', 'uploading')",
    )
    .bind(State::Completed.as_str())
    .bind(now)
    .bind(now)
    .bind(etag)
    .bind(checksum)
    .bind(to_i64(size))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A new, empty schema in the `PostgreSQL` database at `base_url`, and a URL whose connections
/// use it: tests and benchmarks that share one database never see each other's rows.
pub async fn fresh_postgres_schema(base_url: &str) -> Result<String, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let schema = format!("t_{:016x}", rand::random::<u64>());
    let pool = AnyPoolOptions::new().max_connections(1).connect(base_url).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await?;
    pool.close().await;
    let sep = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!("{base_url}{sep}options=-c%20search_path%3D{schema}"))
}

/// A database URL without its password, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Now, in Unix milliseconds.
#[must_use]
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Sessions for tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::{Session, State};

    pub(crate) fn session_for(id: &str, key: &str, expires_at: i64) -> Session {
        Session {
            id: id.into(),
            api_key: key.into(),
            bucket: "b".into(),
            object_key: format!("p/{id}/f"),
            upload_id: format!("u-{id}"),
            filename: "f".into(),
            content_type: "image/png".into(),
            size: Some(100),
            part_size: Some(100),
            part_count: Some(1),
            checksum_algorithm: None,
            state: State::Created,
            created_at: 1,
            updated_at: 1,
            expires_at,
            completed_at: None,
            etag: None,
            checksum: None,
        }
    }

    pub(crate) fn session() -> Session {
        session_for("id", "key", i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::session_for as session;
    use super::*;

    /// The same checks against `SQLite` always and against Postgres when
    /// `HOIST_TEST_DATABASE_URL` names one (`.ci/run` starts one).
    async fn check_queries(db: &Db, tag: &str) {
        let a = session(&format!("{tag}a"), &format!("{tag}k"), 10);
        let b = session(&format!("{tag}b"), &format!("{tag}k"), i64::MAX - 1);
        db.insert(&a).await.unwrap();
        db.insert(&b).await.unwrap();
        assert_eq!(db.get(&a.api_key, &a.id).await.unwrap().as_ref(), Some(&a));
        assert_eq!(db.get("other-key", &a.id).await.unwrap(), None, "another key's upload is invisible");
        assert_eq!(
            db.get_by_upload_id(&a.api_key, &a.upload_id, &a.object_key).await.unwrap().map(|s| s.id),
            Some(a.id.clone())
        );
        assert_eq!(db.open_bytes(&a.api_key).await.unwrap(), 200);
        let expired: Vec<_> =
            db.expired(11, 100).await.unwrap().into_iter().filter(|s| s.api_key == a.api_key).map(|s| s.id).collect();
        assert_eq!(expired, vec![a.id.clone()]);
        assert!(db.transition(&a.id, &[State::Created], State::Uploading).await.unwrap());
        assert!(!db.transition(&a.id, &[State::Created], State::Aborted).await.unwrap(), "a lost race reports false");
        let mut conn = db.pool().acquire().await.unwrap();
        assert!(complete_in(&mut conn, &a.id, "etag-2", Some("crc"), 100).await.unwrap());
        assert!(
            !complete_in(&mut conn, &a.id, "etag-3", None, 100).await.unwrap(),
            "completing twice records the first"
        );
        drop(conn);
        let done = db.get(&a.api_key, &a.id).await.unwrap().unwrap();
        assert_eq!(
            (done.state, done.etag.as_deref(), done.checksum.as_deref()),
            (State::Completed, Some("etag-2"), Some("crc"))
        );
        assert!(done.completed_at.is_some());
        assert_eq!(db.open_bytes(&a.api_key).await.unwrap(), 100);
        assert_eq!(db.open_count(&a.api_key).await.unwrap(), 1);
        // An upload of unknown size counts what its signed parts may stage, within the quota.
        let mut u = session(&format!("{tag}u"), &a.api_key, i64::MAX - 1);
        u.size = None;
        db.insert(&u).await.unwrap();
        assert_eq!(db.open_bytes(&a.api_key).await.unwrap(), 100, "nothing signed yet");
        assert!(db.stage(&u.id, &a.api_key, 50, Some(150)).await.unwrap());
        assert!(db.stage(&u.id, &a.api_key, 40, Some(150)).await.unwrap(), "less than already counted");
        assert!(!db.stage(&u.id, &a.api_key, 60, Some(150)).await.unwrap(), "over the quota");
        assert_eq!(db.open_bytes(&a.api_key).await.unwrap(), 150);
        assert!(db.stage(&u.id, &a.api_key, 60, None).await.unwrap());
        assert_eq!(db.open_bytes(&a.api_key).await.unwrap(), 160);
        db.ping().await.unwrap();
    }

    #[tokio::test]
    async fn queries_on_sqlite_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        check_queries(&db, "s").await;
        // Reopening applies nothing twice and keeps the data.
        let db = Db::connect(&url).await.unwrap();
        assert!(db.get("sk", "sa").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn queries_on_postgres_when_configured() {
        let Ok(url) = std::env::var("HOIST_TEST_DATABASE_URL") else {
            eprintln!("HOIST_TEST_DATABASE_URL is not set: Postgres not checked here");
            return;
        };
        let db = Db::connect(&fresh_postgres_schema(&url).await.unwrap()).await.unwrap();
        let tag = format!("{:x}", rand::random::<u64>());
        check_queries(&db, &tag).await;
    }
}
