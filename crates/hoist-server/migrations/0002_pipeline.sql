-- The pipeline: the outbox of events and the job queue. Portable SQL as in 0001 (BIGINT Unix ms,
-- TEXT states and JSON), and progress is in basis points (0..10000) to stay an integer on both.

-- Outbox: one row per event, written in the transaction of the change it reports.
-- dedup_key makes an event idempotent (the same upload completed twice, the same S3 event
-- delivered twice): a second insert with the same key does nothing.
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    api_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject, created_at);

-- Jobs: one row per (source object version, preset): idem_key makes enqueue idempotent.
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    api_key TEXT NOT NULL,
    upload_id TEXT,
    bucket TEXT NOT NULL,
    source_key TEXT NOT NULL,
    source_etag TEXT NOT NULL,
    source_size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    preset TEXT NOT NULL,
    idem_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    progress_bp BIGINT NOT NULL,
    version BIGINT NOT NULL,
    lease_token TEXT,
    lease_until BIGINT,
    worker TEXT,
    run_after BIGINT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    source_info TEXT,
    outputs TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, run_after);
CREATE INDEX IF NOT EXISTS jobs_by_lease ON jobs (state, lease_until);
CREATE INDEX IF NOT EXISTS jobs_by_upload ON jobs (api_key, upload_id);

-- Secrets the replicas share (the SSE token key), made once by whichever replica starts first.
CREATE TABLE IF NOT EXISTS service_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
