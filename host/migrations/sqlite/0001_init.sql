-- Cairn schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql.
CREATE TABLE deployments (
    id          TEXT PRIMARY KEY,      -- sha256 of the component bytes
    kind        TEXT NOT NULL,         -- 'service' | 'payments' | 'email' | 'shipping'
    name        TEXT NOT NULL,         -- service name or provider role
    size        INTEGER NOT NULL,
    describe    TEXT,                  -- JSON service description (services only)
    component   BLOB NOT NULL,
    created_at  INTEGER NOT NULL       -- unix ms
);

CREATE TABLE invocations (
    id               TEXT PRIMARY KEY,
    service          TEXT NOT NULL,
    handler          TEXT NOT NULL,
    object_key       TEXT,
    status           TEXT NOT NULL,    -- running | succeeded | failed
    input            BLOB NOT NULL,
    output           BLOB,
    failure          TEXT,             -- JSON {kind, code, message}
    deployment_id    TEXT NOT NULL,
    providers        TEXT NOT NULL,    -- JSON {role: deployment id}, pinned at creation
    attempt          INTEGER NOT NULL,
    idempotency_key  TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
);
CREATE INDEX invocations_by_status ON invocations (status, created_at);
CREATE INDEX invocations_by_target ON invocations (service, object_key, created_at);

CREATE TABLE journal (
    invocation_id  TEXT NOT NULL,
    idx            INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    name           TEXT NOT NULL,
    args_digest    TEXT NOT NULL,
    result         BLOB NOT NULL,
    detail         TEXT,
    started_at     INTEGER NOT NULL,   -- unix ms
    duration_us    INTEGER NOT NULL,
    PRIMARY KEY (invocation_id, idx)
);

CREATE TABLE state (
    service     TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       BLOB NOT NULL,
    PRIMARY KEY (service, object_key, name)
);
