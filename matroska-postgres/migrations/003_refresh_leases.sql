-- Matroska PgStore, schema version 3: refresh leases (Store::begin_fill; PROTOCOL-store.md,
-- "Refresh leases").
--
-- One row per key whose refresh lease was taken: the caller that inserts the row, or moves a
-- run-out `until` forward, holds the lease until `until`; everyone else gets no token. A lease is
-- never released early, also not when its holder died: it runs out. Leases order nothing (fills
-- are token-checked like any other), so the table is always UNLOGGED: a lease lost in a crash
-- costs at most one more refresh. Cleanup deletes run-out rows in bounded batches.
CREATE UNLOGGED TABLE {{schema}}.leases (
    key   text COLLATE "C" PRIMARY KEY,
    until timestamptz NOT NULL
);
