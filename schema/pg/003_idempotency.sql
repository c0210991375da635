-- PostgreSQL twin of schema/003_idempotency.sql.

-- certgate schema version 3: a stored idempotent response also keeps the
-- request it answered (SHA-256 of method, path and body), so that a key
-- reused for a different request is refused instead of replayed, and the
-- script's response headers, so that a replay answers like the original.

ALTER TABLE sys_idempotency ADD COLUMN request_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE sys_idempotency ADD COLUMN headers JSONB NOT NULL DEFAULT '{}';
