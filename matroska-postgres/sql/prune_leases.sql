-- Removes run-out leases, at most $1 rows.
DELETE FROM {{schema}}.leases WHERE key IN (
    SELECT key FROM {{schema}}.leases WHERE until <= clock_timestamp() LIMIT $1)
