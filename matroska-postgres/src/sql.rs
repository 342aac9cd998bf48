//! The SQL texts of the store's operations, built once per store from the quoted schema name.
//!
//! Every operation is one plain statement, sent as a prepared statement (planned once per
//! connection: `plan_cache_mode=force_generic_plan`) on a pooled connection in autocommit: one
//! statement and one round trip. The hot paths (get, put, invalidate) call no PL/pgSQL except on
//! a miss (`miss_token()`, for the fill token) and in the rare error branch of a put that outlived
//! the fill window (`token_expired()`); `cleanup` is a function (background work).
//!
//! Every statement is shaped so that its plan touches as few relations and nodes as possible:
//! each executor node and each relation costs a few microseconds per call, which is the whole
//! difference with a bare primary-key `SELECT`.
//!
//! The reverse index (`tags`) is maintained lazily (see `PROTOCOL-store.md`, the protocol note
//! in the `PgStore` documentation): puts add the rows they lack, invalidations leave them for the
//! next fill of the key, cleanup removes the strays.

use crate::schema::SchemaName;

/// The reserved tag that `clear()` stamps and every entry carries, first in `entries.tags` (no
/// canonical tag can be `*`: they all start with a letter and a colon).
pub(crate) const CLEAR_TAG: &str = "*";

/// The statements of one schema.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) get: String,
    /// `get` of many keys in one statement (one snapshot): see `batch.rs`.
    pub(crate) get_many: String,
    pub(crate) exists: String,
    pub(crate) ttl: String,
    pub(crate) delete: String,
    pub(crate) put: String,
    pub(crate) fill: String,
    pub(crate) ensure_state: String,
    pub(crate) invalidate: String,
    pub(crate) reclaim: String,
    pub(crate) clear: String,
    pub(crate) clear_sweep: String,
    pub(crate) cleanup: String,
    pub(crate) lease: String,
    pub(crate) token: String,
    pub(crate) prune_leases: String,
}

/// The live-entry condition on `e` (an `entries` row): not expired, and no stamp of one of its
/// tags (`e.tags` holds the clear tag too) written by a transaction its fill snapshot does not
/// see.
///
/// The stamp check is one index probe of `stamps_pkey` per tag (a `= ANY` array scan; the
/// `xid >= xmin` bound keeps it to the stamps that can matter). `(NOT EXISTS ..) IS TRUE` keeps it
/// a subplan of the entry's index scan rather than an anti-join: one node fewer.
fn live(s: &str) -> String {
    format!(
        "(e.expires_at IS NULL OR e.expires_at > clock_timestamp())
           AND (NOT EXISTS (
               SELECT FROM {s}.stamps AS x
               WHERE x.tag = ANY (e.tags)
                 AND x.xid >= pg_snapshot_xmin(e.snap)
                 AND NOT pg_visible_in_snapshot(x.xid, e.snap))) IS TRUE"
    )
}

/// `expires_at` of a put from the TTL in milliseconds (`NULL`: none), on the server's clock.
const EXPIRES_AT: &str = "statement_timestamp() + $4 * interval '1 millisecond'";
/// `expires_minute` of a put: the minute (since the Unix epoch) `expires_at` falls in.
const EXPIRES_MINUTE: &str =
    "(floor(date_part('epoch', statement_timestamp()) * 1000) + $4)::bigint / 60000";

/// The columns a put replaces on conflict.
const ON_CONFLICT: &str = "ON CONFLICT (key) DO UPDATE
         SET value = excluded.value, tags = excluded.tags, snap = excluded.snap,
             expires_at = excluded.expires_at, expires_minute = excluded.expires_minute";

/// Milliseconds since the Unix epoch, now (`clock_timestamp()`: the end of a put is checked too).
const NOW_MS: &str = "floor(date_part('epoch', clock_timestamp()) * 1000)::bigint";

/// The index rows of a put ($5: its tags, without the clear tag) for the key `up` returns (the
/// upsert, which so runs first): the missing ones are added; the ones in place are locked
/// (`WHERE false`: not updated), so that cleanup does not remove them as strays while this put
/// commits.
fn index_rows(s: &str) -> String {
    format!(
        "INSERT INTO {s}.tags AS t (tag, key)
         SELECT unnest($5::text[]), up.key FROM up WHERE up.stored
         ON CONFLICT (tag, key) DO UPDATE SET key = excluded.key WHERE false"
    )
}

/// A put with a fill token: stored (one row returned) only when the token is of this
/// epoch and fill window, younger than the window, and no stamp of one of the tags (or
/// of the clear tag) was written by a transaction its snapshot does not see; no row:
/// stale. Should the token outlive the window while the statement runs (waiting for a
/// row lock), token_expired() raises and the put rolls back.
/// $1 key, $2 value, $3 the clear tag and the tags (distinct), $4 TTL in ms, $5 the
/// tags, $6 snapshot, $7 epoch, $8 fill window in ms, $9 token time in ms.
fn fill(s: &str, index_rows: &str) -> String {
    format!(
        "WITH up AS (
             INSERT INTO {s}.entries AS e (key, value, tags, snap, expires_at, expires_minute)
             SELECT $1, $2, $3, $6::text::pg_snapshot, {EXPIRES_AT}, {EXPIRES_MINUTE}
             FROM {s}.epoch AS ep
             WHERE ep.epoch = $7 AND ep.fill_window_ms = $8
               AND {NOW_MS} - $9 < $8 AND $9 <= {NOW_MS} + 1000
               AND NOT EXISTS (
                   SELECT FROM {s}.stamps AS x
                   WHERE x.tag = ANY ($3)
                     AND x.xid >= pg_snapshot_xmin($6::text::pg_snapshot)
                     AND NOT pg_visible_in_snapshot(x.xid, $6::text::pg_snapshot))
             {ON_CONFLICT}
             RETURNING e.key,
                       CASE WHEN {NOW_MS} - $9 < $8 THEN true ELSE {s}.token_expired() END
                           AS stored
         ), indexed AS (
             {index_rows}
         )
         SELECT up.stored FROM up"
    )
}

/// Stamps the tags ($1, distinct) and removes the dependents found through at most
/// $2 index rows, in one statement (and transaction): every entry this statement sees
/// is older than the invalidation. The index rows stay (the next fill of the key
/// reuses them). Returns the transaction (for the next batches), how many entries were
/// removed and how many index rows were looked at.
fn invalidate(s: &str) -> String {
    format!(
        "WITH k AS MATERIALIZED (
             SELECT t.key FROM {s}.tags AS t WHERE t.tag = ANY ($1) LIMIT $2
         ), stamped AS (
             INSERT INTO {s}.stamps (tag, xid) SELECT unnest($1::text[]), pg_current_xact_id()
         ), dead AS (
             DELETE FROM {s}.entries AS e
             WHERE e.key = ANY (ARRAY(SELECT k.key FROM k)) AND e.tags && $1
             RETURNING 1
         )
         SELECT pg_current_xact_id()::text, (SELECT count(*) FROM dead), count(*) FROM k"
    )
}

/// The next batch of an invalidation by transaction $2 (committed), for one tag $1:
/// the dependents older than it among the keys of at most $4 index rows after key $3.
/// Returns how many entries were removed, how many index rows were looked at, and the
/// last key.
fn reclaim(s: &str) -> String {
    format!(
        "WITH k AS MATERIALIZED (
             SELECT t.key FROM {s}.tags AS t
             WHERE t.tag = $1 AND t.key > $3 ORDER BY t.key LIMIT $4
         ), dead AS (
             DELETE FROM {s}.entries AS e
             WHERE e.key = ANY (ARRAY(SELECT k.key FROM k))
               AND $1 = ANY (e.tags)
               AND NOT pg_visible_in_snapshot($2::text::xid8, e.snap)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM dead), count(*), max(k.key) FROM k"
    )
}

/// One batch of the sweep after a clear by transaction $1: the entries after key $2
/// (at most $3, in key order) that are older than it, with their index rows. Returns
/// how many were removed, how many were looked at, and the last key looked at.
fn clear_sweep(s: &str) -> String {
    format!(
        "WITH k AS MATERIALIZED (
             SELECT i.key FROM {s}.entries AS i WHERE i.key > $2 ORDER BY i.key LIMIT $3
         ), dead AS (
             DELETE FROM {s}.entries AS e
             WHERE e.key = ANY (ARRAY(SELECT k.key FROM k))
               AND NOT pg_visible_in_snapshot($1::text::xid8, e.snap)
             RETURNING e.key, e.tags
         ), unindexed AS (
             DELETE FROM {s}.tags AS t USING dead
             WHERE t.key = dead.key AND t.tag = ANY (dead.tags)
         )
         SELECT (SELECT count(*) FROM dead), count(*), max(k.key) FROM k"
    )
}

impl Sql {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let s = &schema.quoted();
        let live = live(s);
        let index_rows = index_rows(s);
        Self {
            // One row: the value on a hit; on a miss, NULL and the fill token (miss_token() is
            // only called on a miss; OFFSET 0 keeps the lookup from being evaluated twice).
            get: format!(
                "SELECT v.value, CASE WHEN v.value IS NULL THEN {s}.miss_token() END
                 FROM (
                     SELECT (SELECT e.value FROM {s}.entries AS e WHERE e.key = $1 AND {live})
                            AS value
                     OFFSET 0
                 ) AS v"
            ),
            // Rows in the order of the keys: `get`'s lookup for each, all in one snapshot.
            get_many: format!(
                "SELECT v.value, CASE WHEN v.value IS NULL THEN {s}.miss_token() END
                 FROM unnest($1::text[]) WITH ORDINALITY AS k(key, ord)
                 CROSS JOIN LATERAL (
                     SELECT (SELECT e.value FROM {s}.entries AS e WHERE e.key = k.key AND {live})
                            AS value
                     OFFSET 0
                 ) AS v
                 ORDER BY k.ord"
            ),
            exists: format!("SELECT true FROM {s}.entries AS e WHERE e.key = $1 AND {live}"),
            // Remaining life in ms (rounded up, at least 1), or -1 when persistent; no row: missing.
            ttl: format!(
                "SELECT CASE WHEN e.expires_at IS NULL THEN -1::bigint
                             ELSE greatest(1, ceil(extract(epoch FROM e.expires_at - clock_timestamp())
                                                   * 1000))::bigint END
                 FROM {s}.entries AS e WHERE e.key = $1 AND {live}"
            ),
            // Removes the entry and its index rows; says whether it was live (no row: there was
            // no entry).
            delete: format!(
                "WITH gone AS (
                     DELETE FROM {s}.entries AS e WHERE e.key = $1
                     RETURNING e.key, e.tags, {live} AS live
                 ), unindexed AS (
                     DELETE FROM {s}.tags AS t USING gone
                     WHERE t.key = gone.key AND t.tag = ANY (gone.tags)
                 )
                 SELECT gone.live FROM gone"
            ),
            // A put without token: the caller vouches the value is fresh. $1 key, $2 value,
            // $3 the clear tag and the tags (distinct), $4 TTL in ms, $5 the tags, $6 the fill
            // window in ms. Like a fill, it ends within the fill window of its snapshot, or
            // token_expired() raises (the store reports a timeout) and it rolls back: stamps are
            // pruned on that assumption (see PROTOCOL-store.md).
            put: format!(
                "WITH up AS (
                     INSERT INTO {s}.entries AS e (key, value, tags, snap, expires_at, expires_minute)
                     VALUES ($1, $2, $3, pg_current_snapshot(), {EXPIRES_AT}, {EXPIRES_MINUTE})
                     {ON_CONFLICT}
                     RETURNING e.key,
                               CASE WHEN clock_timestamp() - statement_timestamp()
                                         < $6 * interval '1 millisecond'
                                    THEN true ELSE {s}.token_expired() END AS stored
                 )
                 {index_rows}"
            ),
            fill: fill(s, &index_rows),
            ensure_state: format!("SELECT {s}.ensure_state()"),
            invalidate: invalidate(s),
            reclaim: reclaim(s),
            // Stamps the clear tag: from its commit on, no entry filled before is served.
            clear: format!(
                "INSERT INTO {s}.stamps (tag, xid) VALUES ('{CLEAR_TAG}', pg_current_xact_id())
                 RETURNING xid::text"
            ),
            clear_sweep: clear_sweep(s),
            cleanup: format!(
                "SELECT r.expired, r.swept, r.pruned, r.strays, r.more FROM {s}.cleanup($1) AS r"
            ),
            // Takes the refresh lease of $1 for $2 ms unless another one runs: a row only for
            // the caller that inserted it or moved a run-out lease forward (concurrent callers
            // serialise on the key's row; the later one sees the lease running).
            lease: format!(
                "INSERT INTO {s}.leases AS l (key, until)
                 VALUES ($1, clock_timestamp() + $2::float8 * interval '1 millisecond')
                 ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until
                     WHERE l.until <= clock_timestamp()
                 RETURNING true"
            ),
            // The token of a miss, whatever is stored (NULL: no epoch row).
            token: format!("SELECT {s}.miss_token()"),
            // Run-out leases, at most $1 rows.
            prune_leases: format!(
                "DELETE FROM {s}.leases WHERE key IN (
                     SELECT key FROM {s}.leases WHERE until <= clock_timestamp() LIMIT $1)"
            ),
        }
    }
}
