-- (PostgreSQL flavour of ../sqlite/0008_sends_and_promises.sql.)
-- Delayed sends: an invocation that does not start before this time (Unix ms; NULL: at once).
ALTER TABLE invocations ADD COLUMN not_before BIGINT;

-- Durable promises (awakeables): completed once, over HTTP or by a component; the first
-- completion stands.
CREATE TABLE promises (
    id             TEXT PRIMARY KEY,
    invocation_id  TEXT NOT NULL,
    status         TEXT NOT NULL,
    value          BYTEA,
    created_at     BIGINT NOT NULL,
    completed_at   BIGINT
);
