-- Upload sessions: one row per multipart upload the service created. Portable SQL: the same
-- statements run on SQLite and Postgres (BIGINT for sizes and Unix-millisecond times).
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    api_key TEXT NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT,
    part_size BIGINT,
    part_count BIGINT,
    checksum_algorithm TEXT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    completed_at BIGINT,
    etag TEXT,
    checksum TEXT
);
CREATE INDEX IF NOT EXISTS uploads_by_expiry ON uploads (state, expires_at);
CREATE INDEX IF NOT EXISTS uploads_by_upload_id ON uploads (api_key, upload_id);
