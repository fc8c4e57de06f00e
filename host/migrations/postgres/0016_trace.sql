-- Traces: the W3C `traceparent` of what created an invocation (an ingress request, a webhook, a
-- caller's journal entry), kept so that every attempt of it, after a restart or on another host,
-- is exported in the same trace. NULL when the creating host exported no spans.
ALTER TABLE invocations ADD COLUMN trace_parent TEXT;
