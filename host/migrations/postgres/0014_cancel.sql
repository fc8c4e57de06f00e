-- Invocation control: when the operator cancelled an invocation (Unix ms). The cancellation is
-- delivered to the handler at its next suspension point or check (a `cancel` journal entry), so
-- that it can compensate; it survives restarts and is seen by whichever host runs it.
ALTER TABLE invocations ADD COLUMN cancelled_at BIGINT;
