-- Whether an entry records a retryable failure of its effect (performed again by the next
-- attempt when it closes a failed one). Was a "soft" key inside the detail JSON.
ALTER TABLE journal ADD COLUMN soft BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE journal SET soft = TRUE WHERE detail IS NOT NULL AND (detail::jsonb ->> 'soft') = 'true';
