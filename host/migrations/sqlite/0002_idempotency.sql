-- Ingress idempotency keys: the same key for the same target maps to one invocation.
CREATE TABLE idempotency_keys (
    target           TEXT NOT NULL,    -- service/key/handler
    idempotency_key  TEXT NOT NULL,
    invocation_id    TEXT NOT NULL,
    created_at       INTEGER NOT NULL, -- unix ms
    PRIMARY KEY (target, idempotency_key)
);
