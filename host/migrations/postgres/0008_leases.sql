-- Several hosts share one database. A lease says which host runs an invocation ("inv:<id>", taken
-- when it is created or resumed) or holds a keyed object's exclusive turn ("key:<service>/<key>"),
-- until when (ms, the database's clock; the owner's heartbeat extends it). A lease taken over
-- gets the next epoch; every write of a claimed invocation checks owner and epoch in its own
-- transaction (fencing), so a host that lost a lease cannot write for it any more.
CREATE TABLE leases (
    lease_key   TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,     -- host id
    epoch       BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL    -- unix ms, cairn_now_ms()
);
CREATE INDEX leases_by_owner ON leases (owner);

CREATE FUNCTION cairn_now_ms() RETURNS BIGINT LANGUAGE SQL VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;
