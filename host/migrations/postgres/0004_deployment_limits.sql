-- Per-deployment sandbox limits, and when a deployment was last made active (deploying the same
-- bytes again re-activates it; at start the last activated deployment of each name is active).
ALTER TABLE deployments ADD COLUMN limits TEXT;            -- JSON {"memoryMib", "cpuMs"}; NULL = host defaults
ALTER TABLE deployments ADD COLUMN activated_at BIGINT;    -- unix ms; NULL = created_at
