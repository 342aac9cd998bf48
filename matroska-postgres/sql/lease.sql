-- Takes the refresh lease of $1 for $2 ms unless another one runs: a row only for the caller that
-- inserted it or moved a run-out lease forward (concurrent callers serialise on the key's row;
-- the later one sees the lease running).
INSERT INTO {{schema}}.leases AS l (key, until)
VALUES ($1, clock_timestamp() + $2::float8 * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until
    WHERE l.until <= clock_timestamp()
RETURNING true
