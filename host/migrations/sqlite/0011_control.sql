-- Invocation control: a paused invocation (status 'paused') resumed by the operator counts its
-- retry policy's attempts from the attempt it was resumed at.
ALTER TABLE invocations ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0;
