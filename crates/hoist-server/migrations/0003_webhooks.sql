-- Webhook deliveries: one row per (event, endpoint), written in the transaction that raised the
-- event and sent by the delivery loop of any `hoist serve` replica. Portable SQL like 0001:
-- BIGINT Unix-millisecond times, TEXT states (pending, delivered, failed, disabled).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    endpoint_url TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    lease_token TEXT,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_once ON webhook_deliveries (event_id, endpoint_url);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
-- Endpoints that answered 410 Gone: nothing is sent or queued for them until an operator runs
-- `hoist webhooks enable URL`.
CREATE TABLE IF NOT EXISTS webhook_endpoints_disabled (
    endpoint_url TEXT PRIMARY KEY,
    disabled_at BIGINT NOT NULL,
    reason TEXT NOT NULL
)
