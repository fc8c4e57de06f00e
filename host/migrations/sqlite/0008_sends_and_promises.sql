-- Delayed sends: an invocation that does not start before this time (Unix ms; NULL: at once).
ALTER TABLE invocations ADD COLUMN not_before INTEGER;

-- Durable promises (awakeables): completed once, over HTTP or by a component; the first
-- completion stands.
CREATE TABLE promises (
    id             TEXT PRIMARY KEY,
    invocation_id  TEXT NOT NULL,      -- the invocation that created it
    status         TEXT NOT NULL,      -- pending | resolved | rejected
    value          BLOB,               -- resolved: the value; rejected: the reason (UTF-8)
    created_at     INTEGER NOT NULL,   -- unix ms
    completed_at   INTEGER
);
