-- Secrets of the host itself, made once and shared by every host on this database: `seed` keys
-- the per-invocation seeds of WASI randomness, so they cannot be derived from ids callers see.
CREATE TABLE host_secrets (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
