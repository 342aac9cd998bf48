//! The single-row path of the trigger function: a statement that changed exactly one row (the
//! common case: an application's `UPDATE ... WHERE id = $1`) reads that row from its transition
//! tables into record variables and computes its tags with plain PL/pgSQL expressions, instead of
//! the aggregate query over the transition tables that bulk statements use. Each query over a
//! transition table costs a PL/pgSQL function tens of microseconds; this path runs one probe per
//! transition table, and the tag expressions (the same builders as the bulk query's, over the
//! record variables instead of the query's rows) cost almost nothing.
//!
//! Why both paths give the same tags is argued in the crate's documentation (the `capture`
//! module, "The single-row path").

use super::Exprs;
use crate::capture::error::Result;
use crate::capture::sqlexpr;

/// The variables the single-row path adds to the function's `DECLARE` section.
pub(super) const DECLARE: &str = "
    v_old record;
    v_new record;
    v_rows integer;
    v_list text[];
    v_tag text;
    v_at integer;";

/// `FOR var IN SELECT * FROM table LIMIT 2`: reads at most two rows of a transition table,
/// leaving the last in `var` and adding `weight` to `v_rows` for each.
fn probe(var: &str, table: &str, weight: u8) -> String {
    format!(
        "FOR {var} IN SELECT * FROM {table} LIMIT 2 LOOP
            v_rows := v_rows + {weight};
        END LOOP;"
    )
}

/// INSERT (`var` = `v_new`, `table` = `mt_new`) or DELETE (`v_old`, `mt_old`): one row gives
/// every tag of it in `v_list`; none returns; more run `bulk`.
pub(super) fn insert_or_delete(
    x: &Exprs<'_>,
    var: &str,
    table: &str,
    bulk: &str,
) -> Result<String> {
    Ok(format!(
        "v_rows := 0;
        {probe}
        IF v_rows = 0 THEN
            RETURN NULL;
        ELSIF v_rows = 1 THEN
            v_list := ARRAY[{all}];
        ELSE
        {bulk}
        END IF;",
        probe = probe(var, table, 1),
        all = x.all(var)?,
    ))
}

/// UPDATE: one old and one new row give the tags the bulk query gives for them (see the module
/// docs); no rows return; anything else runs `bulk`. `v_rows` counts old rows once and new rows
/// twice, so 3 is exactly one of each.
pub(super) fn update(x: &Exprs<'_>, bulk: &str) -> Result<String> {
    // Paired and changed: both ids, and both images of each scope set whose columns changed. A
    // set with no columns (the empty field set) is never touched by a paired row.
    let mut paired = vec![
        format!("({})", x.id("v_old")?),
        format!("({})", x.id("v_new")?),
    ];
    for index in 0..x.decl.scopes().len() {
        if let Some(changed) = x.changed(index, "v_old", "v_new")? {
            for var in ["v_old", "v_new"] {
                paired.push(format!(
                    "(CASE WHEN {changed} THEN {} END)",
                    x.scope(index, var)?
                ));
            }
        }
    }
    Ok(format!(
        "v_rows := 0;
        {probe_old}
        {probe_new}
        IF v_rows = 0 THEN
            RETURN NULL;
        ELSIF v_rows = 3 THEN
            IF NOT coalesce({pairing}, false) THEN
                -- Not paired (the id changed, or is NULL): a delete and an insert.
                v_list := ARRAY[{all_old},
                {all_new}];
            ELSIF NOT pg_catalog.record_image_eq(v_old, v_new) THEN
                v_list := ARRAY[{paired}];
            ELSE
                RETURN NULL;
            END IF;
        ELSE
        {bulk}
        END IF;",
        probe_old = probe("v_old", "mt_old", 1),
        probe_new = probe("v_new", "mt_new", 2),
        pairing = x.pairing("v_old", "v_new"),
        all_old = x.all("v_old")?,
        all_new = x.all("v_new")?,
        paired = paired.join(",\n                    "),
    ))
}

/// Turns the single-row path's `v_list` into `v_tags` as the bulk query's
/// `array_agg(DISTINCT fin(t)) ... WHERE t IS NOT NULL` does: each tag finished (hashed when
/// long), NULLs left out, duplicates once, in sorted order (an insertion sort with the same `<`
/// that orders the aggregate's DISTINCT), and nothing (NULL) when no tag is left. Left alone
/// when `v_list` is NULL (a bulk statement, or TRUNCATE).
pub(super) fn finish() -> String {
    format!(
        "
    IF v_list IS NOT NULL THEN
        v_tags := '{{}}';
        FOREACH v_tag IN ARRAY v_list LOOP
            CONTINUE WHEN v_tag IS NULL;
            v_tag := {fin};
            v_at := 1;
            WHILE v_at <= cardinality(v_tags) AND v_tags[v_at] < v_tag LOOP
                v_at := v_at + 1;
            END LOOP;
            IF v_at > cardinality(v_tags) OR v_tags[v_at] <> v_tag THEN
                v_tags := v_tags[:v_at - 1] || v_tag || v_tags[v_at:];
            END IF;
        END LOOP;
        IF cardinality(v_tags) = 0 THEN
            v_tags := NULL;
        END IF;
    END IF;",
        fin = sqlexpr::finish("v_tag"),
    )
}
