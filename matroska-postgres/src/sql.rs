//! The SQL texts of the store's operations, built once per store from the quoted schema name.
//!
//! The reads are plain statements (the cheapest plan for the hot path); the writes call the
//! functions of `migrations/`. Each is sent as a prepared statement on a pooled connection in
//! autocommit: one statement and one round trip per operation.

use crate::schema::SchemaName;

/// The statements of one schema.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) get: String,
    pub(crate) exists: String,
    pub(crate) ttl: String,
    pub(crate) delete: String,
    pub(crate) put: String,
    pub(crate) invalidate: String,
    pub(crate) reclaim: String,
    pub(crate) clear: String,
    pub(crate) reclaim_cleared: String,
    pub(crate) cleanup: String,
}

/// The live-entry condition on `e` (an `entries` row): this generation, not expired, and no
/// stamp of one of its tags written by a transaction its fill snapshot does not see.
fn live(s: &str) -> String {
    format!(
        "e.gen = (SELECT st.gen FROM {s}.state AS st)
           AND (e.expires_at IS NULL OR e.expires_at > clock_timestamp())
           AND NOT EXISTS (
               SELECT 1 FROM {s}.stamps AS x
               WHERE x.tag = ANY (e.tags)
                 AND x.xid >= pg_snapshot_xmin(e.snap)
                 AND NOT pg_visible_in_snapshot(x.xid, e.snap))"
    )
}

impl Sql {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let s = &schema.quoted();
        let live = live(s);
        Self {
            // One row: the value on a hit; on a miss, the token (the CASE branches, and the
            // subqueries in them, are only evaluated on a miss). A NULL generation or epoch: the
            // state rows are missing (emptied by crash recovery; put recreates them).
            get: format!(
                "SELECT h.value,
                        CASE WHEN h.value IS NULL THEN (SELECT ep.epoch FROM {s}.epoch AS ep) END,
                        CASE WHEN h.value IS NULL THEN (SELECT st.gen FROM {s}.state AS st) END,
                        CASE WHEN h.value IS NULL THEN (SELECT q.last_value FROM {s}.seq AS q) END,
                        CASE WHEN h.value IS NULL THEN pg_current_snapshot()::text END,
                        CASE WHEN h.value IS NULL
                             THEN floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint END
                 FROM (
                     SELECT (SELECT e.value FROM {s}.entries AS e WHERE e.key = $1 AND {live}) AS value
                     OFFSET 0
                 ) AS h"
            ),
            exists: format!(
                "SELECT true FROM {s}.entries AS e WHERE e.key = $1 AND {live}"
            ),
            // Remaining life in ms (rounded up, at least 1), or -1 when persistent; no row: missing.
            ttl: format!(
                "SELECT CASE WHEN e.expires_at IS NULL THEN -1::bigint
                             ELSE greatest(1, ceil(extract(epoch FROM e.expires_at - clock_timestamp())
                                                   * 1000))::bigint END
                 FROM {s}.entries AS e WHERE e.key = $1 AND {live}"
            ),
            // Removes the entry and its index rows; says whether it was live.
            delete: format!(
                "WITH d AS (
                     DELETE FROM {s}.entries AS e WHERE e.key = $1
                     RETURNING e.key, e.tags, e.gen, e.snap, e.expires_at
                 ), i AS (
                     DELETE FROM {s}.tags AS t USING d WHERE t.key = d.key AND t.tag = ANY (d.tags)
                 )
                 SELECT EXISTS (
                     SELECT 1 FROM d AS e WHERE {live}
                 )"
            ),
            put: format!("SELECT {s}.put($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            invalidate: format!(
                "SELECT r.xid, r.removed, r.next_pos, r.next_after
                 FROM {s}.invalidate_and_reclaim($1, $2) AS r"
            ),
            reclaim: format!(
                "SELECT r.removed, r.next_pos, r.next_after
                 FROM {s}.reclaim($1, $2::text::xid8, $3, $4, $5) AS r"
            ),
            clear: format!("SELECT {s}.clear()"),
            reclaim_cleared: format!("SELECT r.removed, r.done FROM {s}.reclaim_cleared($1) AS r"),
            cleanup: format!(
                "SELECT r.expired, r.cleared, r.pruned, r.more FROM {s}.cleanup($1) AS r"
            ),
        }
    }
}
