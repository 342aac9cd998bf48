//! The trigger SQL of one table: a `plpgsql` function computing a statement's tags from its
//! transition tables, and four statement-level triggers.

use std::fmt::Write as _;

use matroska_core::{Dep, Scopes};

use super::catalog::{Encoder, Resolved};
use super::declaration::TableCapture;
use super::encode::{MAX_IDENT, channel_key, derive_name, dollar_tag, escape, ident, literal};
use super::error::{CaptureError, Result};
use super::sqlexpr;
use matroska_postgres::schema::SchemaName;

/// The version of the generated SQL, recorded in the registry. 2: the triggers go on every
/// partition and inheritance child too, and the registry records them (`members`) and the
/// captured columns (`columns`), which `list` checks. 3: each statement's notification says
/// which table changed, the operation and the send time (an event per statement).
pub(crate) const FORMAT: i32 = 3;

/// The names of a table's trigger function (in the capture schema) and triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    pub(crate) function: String,
    /// INSERT, UPDATE, DELETE, TRUNCATE.
    pub(crate) triggers: [String; 4],
}

/// Deterministic names, at most 63 bytes each: the function's carries a hash of the table's
/// schema and name (so tables whose names only differ past the cut, or that join to the same
/// text, get different functions); the triggers are named after the capture schema (trigger
/// names are per table).
pub(crate) fn names(capture: &SchemaName, schema: &str, table: &str) -> Names {
    let function = derive_name(&format!("capture_{table}"), &format!("{schema}\0{table}"));
    let trigger = |op: &str| {
        let plain = format!("{}_{op}", capture.as_str());
        if plain.len() <= MAX_IDENT {
            plain
        } else {
            derive_name(&plain, &plain)
        }
    };
    Names {
        function,
        triggers: [
            trigger("ins"),
            trigger("upd"),
            trigger("del"),
            trigger("trunc"),
        ],
    }
}

/// What installing one table takes.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub(crate) names: Names,
    /// The function, the triggers and the registry row, in order.
    pub(crate) sql: String,
}

struct Exprs<'a> {
    table: &'a Resolved,
    decl: &'a TableCapture,
}

impl Exprs<'_> {
    /// The encoded value of a column, written out: the helper functions' bodies expanded here
    /// rather than inlined by the planner, which re-parses a function body at every call site on
    /// every execution (queries over transition tables are planned at each call).
    fn val(alias: &str, column: &str, encoder: Encoder) -> String {
        sqlexpr::value(&format!("({alias}.{})", ident(column)), encoder)
    }

    /// The id tag of the row `alias`.
    fn id(&self, alias: &str) -> Result<String> {
        let prefix = literal(&format!("i:{}:", escape(self.decl.kind())));
        let ids = self.decl.id_columns();
        let mut values = Vec::with_capacity(ids.len());
        for column in ids {
            let (_, encoder) = self.table.encoded(column)?;
            values.push(Self::val(alias, column, encoder));
        }
        Ok(if let [one] = values.as_slice() {
            format!("{prefix} || {one}")
        } else {
            format!("{prefix} || '(' || {} || ')'", values.join(" || ',' || "))
        })
    }

    /// The tag of scope set `index` for the row `alias`.
    fn scope(&self, index: usize, alias: &str) -> Result<String> {
        let set = &self.decl.scopes()[index];
        let mut fields: Vec<&String> = set.fields().iter().collect();
        fields.sort();
        if fields.is_empty() {
            // Unhashed: the query hashes every tag it makes.
            return Ok(literal(&format!("s:{}:", escape(self.decl.kind()))));
        }
        let mut parts = Vec::with_capacity(fields.len() * 2);
        for (i, field) in fields.iter().enumerate() {
            let head = if i == 0 {
                format!("s:{}:", escape(self.decl.kind()))
            } else {
                "&".to_owned()
            };
            parts.push(literal(&format!("{head}{}=", escape(field))));
            let column = set.column_of(field);
            let (_, encoder) = self.table.encoded(column)?;
            parts.push(Self::val(alias, column, encoder));
        }
        Ok(parts.join(" || "))
    }

    /// Whether scope set `index` is touched by an update from `o` to `n`: one of its fields'
    /// columns or watched columns changed (binary images compared: a change that equality would
    /// hide, like a case change in citext, still counts).
    fn changed(&self, index: usize) -> Result<Option<String>> {
        let watched = self.decl.scopes()[index].all_watched();
        if watched.is_empty() {
            return Ok(None);
        }
        for column in &watched {
            self.table.column(column)?;
        }
        let row = |alias: &str| {
            watched
                .iter()
                .map(|c| format!("{alias}.{}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Ok(Some(format!(
            "NOT pg_catalog.record_image_eq(ROW({}), ROW({}))",
            row("o"),
            row("n")
        )))
    }

    /// Every tag of the row `alias` (insert, delete, a row without a partner): `(expr), ...`.
    fn all(&self, alias: &str) -> Result<String> {
        let mut values = vec![format!("({})", self.id(alias)?)];
        for index in 0..self.decl.scopes().len() {
            values.push(format!("({})", self.scope(index, alias)?));
        }
        Ok(values.join(",\n                "))
    }

    /// `o.id = n.id AND ...`: how an update's old and new rows are paired.
    fn pairing(&self) -> String {
        self.decl
            .id_columns()
            .iter()
            .map(|c| format!("o.{0} = n.{0}", ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

fn kind_tag(decl: &TableCapture, table: &Resolved, dep: &Dep) -> Result<String> {
    dep.to_tag()
        .map(|tag| literal(tag.as_str()))
        .map_err(|e| CaptureError::Declaration {
            table: table.quoted(),
            reason: format!("kind {:?}: {e}", decl.kind()),
        })
}

/// Where the trigger sends its tags: the PgStore in the transaction, NOTIFY at commit.
fn sinks(capture: &SchemaName, decl: &TableCapture, all_tag: &str) -> String {
    let mut sinks = String::new();
    if let Some(store) = decl.store() {
        let _ = write!(
            sinks,
            "
    -- The PgStore, in this transaction: a fill that overlaps it is never served after it.
    PERFORM {}.invalidate(CASE WHEN cardinality(v_tags) > {} THEN ARRAY[{all_tag}] ELSE v_tags END);",
            store.quoted(),
            decl.store_tag_limit()
        );
    }
    if decl.notifies() {
        // The event's head: the table the statement changed (a partition or child itself, not
        // the declared parent), the operation, and the send time in microseconds since the Unix
        // epoch, on the database's clock.
        // The common case, a transaction's first notification on the channel and one payload,
        // is sent inline; the helper (deduplication against what the transaction sent, packing,
        // the cap) would cost a write twice as much. Both record what was sent alike.
        let key = channel_key(decl.notify_channel());
        let _ = write!(
            sinks,
            "
    -- Other processes and stores, at commit.
    v_head := '{{\"v\":1,\"table\":' || to_json(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME))::text
        || ',\"op\":\"' || lower(TG_OP) || '\",\"at\":'
        || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text || ',\"tags\":';
    v_payload := v_head || array_to_json(v_tags)::text || '}}';
    IF {limit} > 0 AND octet_length(v_payload) <= 7999
        AND coalesce(current_setting('matroska.t{key}', true), '') = '' THEN
        PERFORM pg_notify({channel}, v_payload);
        PERFORM set_config('matroska.n{key}', '1', true);
        PERFORM set_config('matroska.t{key}', v_tags::text, true);
    ELSE
        PERFORM {cap}.notify({channel}, v_head || '[', {all_tag}, v_tags, {limit});
    END IF;",
            cap = capture.quoted(),
            channel = literal(decl.notify_channel()),
            limit = decl.notify_limit()
        );
    }
    sinks
}

/// The body of an events-only table's function: the kind-wide tag for every statement that
/// changed rows.
fn events_only_body(decl: &TableCapture, table: &Resolved, all_tag: &str, sinks: &str) -> String {
    format!(
        "
-- Generated by matroska-pg (format {FORMAT}) for {table_q}: kind {kind_lit}, events only.
DECLARE
    v_tags text[] := ARRAY[{all_tag}];
    v_head text;
    v_payload text;
BEGIN
    -- A statement that changed no rows sends nothing (each transition table is named only in
    -- the branch of the operations that have it).
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT FROM mt_new) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_OP <> 'TRUNCATE' THEN
        IF NOT EXISTS (SELECT FROM mt_old) THEN
            RETURN NULL;
        END IF;
    END IF;{sinks}
    RETURN NULL;
END
",
        table_q = table.quoted(),
        kind_lit = literal(decl.kind()),
    )
}

/// The `plpgsql` body of the trigger function: the statement's tags from its transition tables,
/// sent to the store and to NOTIFY.
fn function_body(capture: &SchemaName, decl: &TableCapture, table: &Resolved) -> Result<String> {
    let x = Exprs { table, decl };
    let all_tag = kind_tag(decl, table, &Dep::kind(decl.kind()))?;
    let any_tag = kind_tag(
        decl,
        table,
        &Scopes::<()>::new(decl.kind().to_owned()).any(),
    )?;

    // UPDATE: old and new rows paired by id in one FULL JOIN. Paired rows that changed at all
    // give both ids, and both images of each scope set whose columns changed; rows without a
    // partner (their id changed, or is NULL) give everything, like a delete and an insert. `m`
    // marks which side a row came from, named apart from every column of the table.
    let m = ident(&table.marker());
    let mut values = vec![
        format!("(CASE WHEN o.{m} THEN {} END)", x.id("o")?),
        format!("(CASE WHEN n.{m} THEN {} END)", x.id("n")?),
    ];
    for index in 0..decl.scopes().len() {
        let changed = x.changed(index)?;
        for (this, other) in [("o", "n"), ("n", "o")] {
            let when = match &changed {
                Some(changed) => format!("{other}.{m} IS NULL OR ({this}.{m} AND {changed})"),
                None => format!("{other}.{m} IS NULL"),
            };
            values.push(format!(
                "(CASE WHEN {when} THEN {} END)",
                x.scope(index, this)?
            ));
        }
    }
    // Each row's tags as one array, unnested: a LATERAL VALUES list per row cost a nested loop
    // and made a 10,000-row UPDATE's tag query three times slower.
    let fin = sqlexpr::finish("x.t");
    let update = format!(
        "SELECT array_agg(DISTINCT {fin}) INTO v_tags FROM (
            SELECT unnest(ARRAY[{values}]) AS t
            FROM (SELECT true AS {m}, r.* FROM mt_old AS r) AS o
            FULL JOIN (SELECT true AS {m}, r.* FROM mt_new AS r) AS n ON {pairing}
            WHERE o.{m} IS NULL OR n.{m} IS NULL OR NOT pg_catalog.record_image_eq(o.*, n.*)
        ) AS x WHERE x.t IS NOT NULL;",
        pairing = x.pairing(),
        values = values.join(",\n                "),
    );
    let insert = format!(
        "SELECT array_agg(DISTINCT {fin}) INTO v_tags FROM (
            SELECT unnest(ARRAY[{}]) AS t FROM mt_new AS n
        ) AS x WHERE x.t IS NOT NULL;",
        x.all("n")?
    );
    let delete = format!(
        "SELECT array_agg(DISTINCT {fin}) INTO v_tags FROM (
            SELECT unnest(ARRAY[{}]) AS t FROM mt_old AS o
        ) AS x WHERE x.t IS NOT NULL;",
        x.all("o")?
    );
    let sinks = sinks(capture, decl, &all_tag);
    if decl.is_events_only() {
        return Ok(events_only_body(decl, table, &all_tag, &sinks));
    }
    let body = format!(
        "
-- Generated by matroska-pg (format {FORMAT}) for {table_q}: kind {kind_lit}.
DECLARE
    v_tags text[];
    v_head text;
    v_payload text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        {insert}
    ELSIF TG_OP = 'UPDATE' THEN
        {update}
    ELSIF TG_OP = 'DELETE' THEN
        {delete}
    ELSE
        v_tags := ARRAY[{all_tag}];
    END IF;
    IF v_tags IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'TRUNCATE' THEN
        v_tags := array_append(v_tags, {any_tag}::text);
    END IF;{sinks}
    RETURN NULL;
END
",
        table_q = table.quoted(),
        kind_lit = literal(decl.kind()),
    );
    Ok(body)
}

/// The columns the trigger function reads (ids, scope fields, watched columns), as the registry
/// records them for `list`: `[{"name", "attnum", "type"}]`, in attnum order.
fn captured_columns(decl: &TableCapture, table: &Resolved) -> Result<serde_json::Value> {
    let mut names: Vec<&str> = decl.id_columns().iter().map(String::as_str).collect();
    for set in decl.scopes() {
        names.extend(set.all_watched());
    }
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        columns.push(table.column(name)?);
    }
    columns.sort_by_key(|c| c.attnum);
    columns.dedup_by_key(|c| c.attnum);
    Ok(columns
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "attnum": c.attnum, "type": c.type_name}))
        .collect())
}

/// The four statement-level triggers on `target`.
fn triggers_sql(names: &Names, function: &str, target: &str) -> String {
    let [ins, upd, del, trunc] = &names.triggers;
    format!(
        "CREATE OR REPLACE TRIGGER {ins} AFTER INSERT ON {target}
    REFERENCING NEW TABLE AS mt_new FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE OR REPLACE TRIGGER {upd} AFTER UPDATE ON {target}
    REFERENCING OLD TABLE AS mt_old NEW TABLE AS mt_new FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE OR REPLACE TRIGGER {del} AFTER DELETE ON {target}
    REFERENCING OLD TABLE AS mt_old FOR EACH STATEMENT EXECUTE FUNCTION {function}();
CREATE OR REPLACE TRIGGER {trunc} AFTER TRUNCATE ON {target}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
",
        ins = ident(ins),
        upd = ident(upd),
        del = ident(del),
        trunc = ident(trunc),
    )
}

/// Invalidates everything about the declaration's kind (`a:<kind>`) where its triggers send
/// tags: the PgStore in this transaction, NOTIFY at commit. For rows that entered or left the
/// table without a trigger (a partition attached, detached or dropped since the last install).
pub(crate) fn kind_invalidation_sql(decl: &TableCapture, table: &Resolved) -> Result<String> {
    let all_tag = kind_tag(decl, table, &Dep::kind(decl.kind()))?;
    let mut sql = String::new();
    if let Some(store) = decl.store() {
        let _ = writeln!(
            sql,
            "SELECT {}.invalidate(ARRAY[{all_tag}]::text[]);",
            store.quoted()
        );
    }
    if decl.notifies() {
        let tag = Dep::kind(decl.kind())
            .to_tag()
            .map_err(|e| CaptureError::Declaration {
                table: table.quoted(),
                reason: format!("kind {:?}: {e}", decl.kind()),
            })?;
        let _ = writeln!(
            sql,
            "SELECT pg_notify({}, {});",
            literal(decl.notify_channel()),
            literal(&crate::listener::encode_payload(&[tag]))
        );
    }
    Ok(sql)
}

/// Locks the table and its partitions and children (the lock `CREATE TRIGGER` takes, which
/// `ATTACH` / `DETACH PARTITION`, `CREATE TABLE ... PARTITION OF` and `INHERIT` conflict with),
/// then checks that they are still those the script was made for: a partition attached between
/// reading the catalog and installing would otherwise be left without triggers.
fn hierarchy_guard(table: &Resolved) -> String {
    let targets: Vec<String> = table.targets().map(|(_, name)| name).collect();
    let mut oids: Vec<u32> = table.members.iter().map(|m| m.oid).collect();
    oids.sort_unstable();
    let oids: Vec<String> = oids.iter().map(u32::to_string).collect();
    let body = format!(
        "
BEGIN
    IF ARRAY(WITH RECURSIVE down(oid) AS (
                 SELECT inhrelid FROM pg_inherits WHERE inhparent = {root}::oid
                 UNION
                 SELECT i.inhrelid FROM pg_inherits i JOIN down d ON i.inhparent = d.oid)
             SELECT oid FROM down ORDER BY oid) IS DISTINCT FROM ARRAY[{oids}]::oid[] THEN
        RAISE EXCEPTION 'matroska-pg: the partitions or inheritance children of % changed since \
this install script was made; run install again', {table_lit};
    END IF;
END
",
        root = table.oid,
        oids = oids.join(", "),
        table_lit = literal(&table.quoted()),
    );
    let quote = dollar_tag(&body);
    format!(
        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE;\nDO {quote}{body}{quote};\n",
        targets.join(", ")
    )
}

/// Generates the SQL of one table: the trigger function, the triggers on the table and on each
/// of its partitions and inheritance children, and the registry row.
pub(crate) fn generate(
    capture: &SchemaName,
    decl: &TableCapture,
    table: &Resolved,
) -> Result<Generated> {
    decl.validate()?;
    let names = names(capture, &table.schema, &table.name);
    let body = function_body(capture, decl, table)?;
    let quote = dollar_tag(&body);
    let function = format!("{}.{}", capture.quoted(), ident(&names.function));
    let declaration = serde_json::to_string(decl).map_err(|e| CaptureError::Declaration {
        table: table.quoted(),
        reason: format!("cannot record the declaration: {e}"),
    })?;
    let members: serde_json::Value = table
        .members
        .iter()
        .map(|m| serde_json::json!({"oid": m.oid, "table": m.table}))
        .collect();
    let columns = captured_columns(decl, table)?;
    let opt = |v: Option<&str>| v.map_or_else(|| "NULL".to_owned(), literal);
    let mut triggers = hierarchy_guard(table);
    for (_, target) in table.targets() {
        triggers.push_str(&triggers_sql(&names, &function, &target));
    }
    // With costs inflated by unknown transition-table sizes, JIT-compiling the tag query took
    // ~1 s per statement: `jit` is off. One function serves the table and its partitions and
    // children: PL/pgSQL keeps a compiled copy per table it fires for.
    let sql = format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off
AS {quote}{body}{quote};

{triggers}
INSERT INTO {cap}.installed (table_schema, table_name, table_oid, kind, channel,
    store_schema, function_name, trigger_names, declaration, format, members, columns)
VALUES ({schema_lit}, {name_lit}, {oid}::oid, {kind_lit}, {channel}, {store}, {fn_lit},
    ARRAY[{trigger_lits}]::text[], {decl_lit}::jsonb, {FORMAT}, {members_lit}::jsonb,
    {columns_lit}::jsonb)
ON CONFLICT (table_schema, table_name) DO UPDATE SET
    table_oid = excluded.table_oid, kind = excluded.kind, channel = excluded.channel,
    store_schema = excluded.store_schema, function_name = excluded.function_name,
    trigger_names = excluded.trigger_names, declaration = excluded.declaration,
    format = excluded.format, members = excluded.members, columns = excluded.columns,
    installed_at = clock_timestamp(), installed_by = current_user;
",
        cap = capture.quoted(),
        schema_lit = literal(&table.schema),
        name_lit = literal(&table.name),
        oid = table.oid,
        kind_lit = literal(decl.kind()),
        channel = opt(decl.notifies().then_some(decl.notify_channel())),
        store = opt(decl.store().map(SchemaName::as_str)),
        fn_lit = literal(&names.function),
        trigger_lits = names
            .triggers
            .iter()
            .map(|t| literal(t))
            .collect::<Vec<_>>()
            .join(", "),
        decl_lit = literal(&declaration),
        members_lit = literal(&members.to_string()),
        columns_lit = literal(&columns.to_string()),
    );
    Ok(Generated { names, sql })
}

#[cfg(test)]
mod tests;
