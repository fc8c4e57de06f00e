-- Retention: an idempotency key says when it expires (NULL, for keys made before: 30 days after
-- it was made), and finished invocations are purged, with their journals, once no key names them.
ALTER TABLE idempotency_keys ADD COLUMN expires_at BIGINT;   -- unix ms
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_by_invocation ON idempotency_keys (invocation_id);
CREATE INDEX invocations_by_completion ON invocations (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX promises_by_invocation ON promises (invocation_id);
