-- Creation order of invocations, for the scan over unfinished ones after a restart (SQLite has
-- its rowid for that). Existing rows are numbered as the column is added.
ALTER TABLE invocations ADD COLUMN seq BIGSERIAL;
CREATE INDEX invocations_running_by_seq ON invocations (seq) WHERE status = 'running';
