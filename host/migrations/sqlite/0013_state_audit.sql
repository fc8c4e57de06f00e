-- Operator edits of a keyed object's state: the value before and after (NULL: unset), why, when.
CREATE TABLE state_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    object_key TEXT NOT NULL,
    name TEXT NOT NULL,
    before_value BLOB,
    after_value BLOB,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX state_audit_by_key ON state_audit (service, object_key, id);
