-- Whether an entry records a retryable failure of its effect (performed again by the next
-- attempt when it closes a failed one). Was a "soft" key inside the detail JSON.
ALTER TABLE journal ADD COLUMN soft INTEGER NOT NULL DEFAULT 0;
UPDATE journal SET soft = 1 WHERE json_extract(detail, '$.soft') = 1;
