-- A provider call that started and has no recorded result yet. Written (durably) before a call
-- to a provider whose API cannot deduplicate it, deleted with the entry that records the result.
-- A marker found on recovery means the call is in doubt.
CREATE TABLE call_markers (
    invocation_id    TEXT NOT NULL,
    idx              INTEGER NOT NULL,
    name             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    started_at       INTEGER NOT NULL,   -- unix ms
    PRIMARY KEY (invocation_id, idx)
);
