-- The live-entry condition on `e` (an `entries` row): not expired, and no stamp of one of its
-- tags (`e.tags` holds the clear tag too) written by a transaction its fill snapshot does not see.
-- One index probe of `stamps_pkey` per tag (a `= ANY` array scan; the `xid >= xmin` bound keeps
-- it to the stamps that can matter). `(NOT EXISTS ..) IS TRUE` keeps it a subplan of the entry's
-- index scan rather than an anti-join: one node fewer.
(e.expires_at IS NULL OR e.expires_at > clock_timestamp())
AND (NOT EXISTS (
    SELECT FROM {{schema}}.stamps AS x
    WHERE x.tag = ANY (e.tags)
      AND x.xid >= pg_snapshot_xmin(e.snap)
      AND NOT pg_visible_in_snapshot(x.xid, e.snap))) IS TRUE
