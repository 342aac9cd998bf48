//! What install reads from the catalog: the table, the partitions and inheritance children its
//! triggers must also go on, and its columns with the encoder each one's type takes (or why it
//! takes none).

use tokio_postgres::Client;

use super::declaration::TableRef;
use super::encode::ident;
use super::error::{CaptureError, Result};

/// The column types the triggers can encode into a tag (id columns and scope fields; watched
/// columns may have any type).
///
/// A type is supported when SQL equality on it is byte equality of the encoded text, so that
/// the tag Rust computes from a value the application holds equals the tag the trigger computes
/// from the row. `char(n)` (padded), `citext` and text under a nondeterministic collation are
/// not, and are refused with [`CaptureError::InexactEquality`].
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::SUPPORTED_TYPES;
///
/// assert!(SUPPORTED_TYPES.contains("uuid"));
/// assert!(!SUPPORTED_TYPES.starts_with("char"));
/// ```
pub const SUPPORTED_TYPES: &str = "smallint, integer, bigint (integers); text and varchar with a \
    deterministic collation, uuid, enums (as text); boolean; timestamp, timestamptz; and domains \
    over them (not char(n), citext or nondeterministic collations: their SQL equality is not \
    byte equality)";

/// How a column's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoder {
    Int,
    Text,
    Bool,
    Timestamptz,
    Timestamp,
}

impl Encoder {
    /// The type the value is cast to before encoding.
    pub(crate) fn cast(self) -> &'static str {
        match self {
            Self::Int => "bigint",
            Self::Text => "text",
            Self::Bool => "boolean",
            Self::Timestamptz => "timestamptz",
            Self::Timestamp => "timestamp",
        }
    }
}

/// Whether a column can be encoded into a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encoding {
    Encoded(Encoder),
    /// A type the encoders do not know.
    Unsupported,
    /// A type whose SQL equality is not byte equality, and why.
    Inexact(String),
}

impl Encoding {
    /// The encoding of a column whose (base) type has `typname`, `typtype` and `namespace` in
    /// `pg_type`, under a collation that is nondeterministic when `nondeterministic` names it.
    pub(crate) fn of(
        typname: &str,
        typtype: &str,
        namespace: &str,
        nondeterministic: Option<&str>,
    ) -> Self {
        if typname == "citext" {
            return Self::Inexact(
                "citext compares case-insensitively ('News' = 'news'), so a value the \
                 application holds and the row's value can differ in bytes and give different tags"
                    .to_owned(),
            );
        }
        if let Some(collation) = nondeterministic {
            return Self::Inexact(format!(
                "its collation {collation:?} is nondeterministic: values that compare equal in \
                 SQL differ in bytes, and give different tags"
            ));
        }
        if typtype == "e" {
            return Self::Encoded(Encoder::Text);
        }
        if namespace != "pg_catalog" {
            return Self::Unsupported;
        }
        Self::Encoded(match typname {
            "int2" | "int4" | "int8" => Encoder::Int,
            "text" | "varchar" | "uuid" => Encoder::Text,
            "bpchar" => {
                return Self::Inexact(
                    "char(n) pads values with spaces: clients (Diesel's String, psql) receive \
                     the padding, the trigger's text does not, so the tags differ"
                        .to_owned(),
                );
            }
            "bool" => Encoder::Bool,
            "timestamptz" => Encoder::Timestamptz,
            "timestamp" => Encoder::Timestamp,
            _ => return Self::Unsupported,
        })
    }
}

/// A column of the table, as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) attnum: i16,
    /// As `format_type` prints it.
    pub(crate) type_name: String,
    pub(crate) encoding: Encoding,
}

/// A partition or inheritance child of the captured table (at any depth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) oid: u32,
    /// Schema-qualified, quoted.
    pub(crate) table: String,
}

/// The table as found in the catalog.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) oid: u32,
    pub(crate) columns: Vec<Column>,
    /// Its partitions and inheritance children, at every depth, sorted by name.
    pub(crate) members: Vec<Member>,
    /// Columns that only inheritance children have (the trigger function runs on their rows).
    pub(crate) member_columns: Vec<String>,
}

impl Resolved {
    /// A name for the column that marks a row's side in the UPDATE's FULL JOIN: `mt_side`,
    /// suffixed until no column of the table (or of an inheritance child) has it.
    pub(crate) fn marker(&self) -> String {
        let taken = |name: &str| {
            self.columns.iter().any(|c| c.name == name)
                || self.member_columns.iter().any(|c| c == name)
        };
        let mut name = "mt_side".to_owned();
        let mut n = 0_u32;
        while taken(&name) {
            n += 1;
            name = format!("mt_side_{n}");
        }
        name
    }

    /// The table, schema-qualified and quoted.
    pub(crate) fn quoted(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    /// Every table the triggers go on: the table, then its partitions and children.
    pub(crate) fn targets(&self) -> impl Iterator<Item = (u32, String)> + '_ {
        std::iter::once((self.oid, self.quoted()))
            .chain(self.members.iter().map(|m| (m.oid, m.table.clone())))
    }

    pub(crate) fn column(&self, name: &str) -> Result<&Column> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| CaptureError::ColumnNotFound {
                table: self.quoted(),
                column: name.to_owned(),
                available: self
                    .columns
                    .iter()
                    .map(|c| format!("{:?}", c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The column `name` and its encoder, or why it cannot be an id or scope field.
    pub(crate) fn encoded(&self, name: &str) -> Result<(&Column, Encoder)> {
        let column = self.column(name)?;
        match &column.encoding {
            Encoding::Encoded(encoder) => Ok((column, *encoder)),
            Encoding::Unsupported => Err(CaptureError::UnsupportedType {
                table: self.quoted(),
                column: name.to_owned(),
                type_name: column.type_name.clone(),
                supported: SUPPORTED_TYPES,
            }),
            Encoding::Inexact(reason) => Err(CaptureError::InexactEquality {
                table: self.quoted(),
                column: name.to_owned(),
                type_name: column.type_name.clone(),
                reason: reason.clone(),
            }),
        }
    }
}

/// The partitions and inheritance children of the table `$1`, at every depth: oid, schema,
/// name, relkind, and the parents each has outside that tree (multiple inheritance).
pub(crate) const DESCENDANTS: &str = r#"
    WITH RECURSIVE down(oid) AS (
        SELECT inhrelid FROM pg_inherits WHERE inhparent = $1
        UNION
        SELECT i.inhrelid FROM pg_inherits i JOIN down d ON i.inhparent = d.oid
    )
    SELECT d.oid, n.nspname::text, c.relname::text, c.relkind::text,
           ARRAY(SELECT '"' || replace(pn.nspname, '"', '""') || '"."'
                            || replace(pc.relname, '"', '""') || '"'
                 FROM pg_inherits p
                 JOIN pg_class pc ON pc.oid = p.inhparent
                 JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                 WHERE p.inhrelid = d.oid AND p.inhparent <> $1
                   AND p.inhparent NOT IN (SELECT oid FROM down)
                 ORDER BY 1)
    FROM down d
    JOIN pg_class c ON c.oid = d.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    ORDER BY 2, 3"#;

/// The parents of the table `$1` (schema, name), and the topmost ancestor of the first.
const ANCESTORS: &str = "
    WITH RECURSIVE up(oid, depth) AS (
        SELECT inhparent, 1 FROM pg_inherits WHERE inhrelid = $1
        UNION
        SELECT i.inhparent, u.depth + 1 FROM pg_inherits i JOIN up u ON i.inhrelid = u.oid
    )
    SELECT n.nspname::text, c.relname::text, u.depth
    FROM up u
    JOIN pg_class c ON c.oid = u.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    ORDER BY u.depth, 1, 2";

/// The parents of the table `oid`, quoted (none for a table that is neither a partition nor an
/// inheritance child), and the topmost ancestor.
pub(crate) async fn ancestors(client: &Client, oid: u32) -> Result<(Vec<String>, Option<String>)> {
    let rows = client
        .query(ANCESTORS, &[&oid])
        .await
        .map_err(CaptureError::pg("find the table's parents"))?;
    let quoted = |row: &tokio_postgres::Row| {
        format!(
            "{}.{}",
            ident(&row.get::<_, String>(0)),
            ident(&row.get::<_, String>(1))
        )
    };
    let parents = rows
        .iter()
        .filter(|r| r.get::<_, i32>(2) == 1)
        .map(quoted)
        .collect();
    let root = rows.last().map(quoted);
    Ok((parents, root))
}

/// Finds the table, its partitions and inheritance children, and its columns in the catalog.
///
/// A table that is itself a partition or inheritance child is refused (writes made through its
/// parent fire only the parent's statement triggers): its topmost ancestor is named instead. So
/// is a hierarchy with a member that cannot carry the triggers (a foreign table) or that also
/// inherits from a table outside it.
pub(crate) async fn resolve(client: &Client, table: &TableRef) -> Result<Resolved> {
    let rows = client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass($1)",
            &[&table.to_string()],
        )
        .await
        .map_err(CaptureError::pg("find the table"))?;
    let Some(row) = rows.first() else {
        return Err(not_found(client, table).await?);
    };
    let oid: u32 = row.get(0);
    let schema: String = row.get(1);
    let name: String = row.get(2);
    let relkind: String = row.get(3);
    let quoted = format!("{}.{}", ident(&schema), ident(&name));
    if relkind != "r" && relkind != "p" {
        return Err(CaptureError::NotATable {
            table: quoted,
            relkind,
        });
    }
    let (parents, root) = ancestors(client, oid).await?;
    if let (Some(parent), Some(root)) = (parents.first(), root) {
        return Err(CaptureError::Hierarchy {
            table: quoted,
            reason: format!(
                "it is a partition or inheritance child of {parent}, and writes made through \
                 {root} fire only that table's statement triggers: capture {root} instead (its \
                 partitions and inheritance children are included)"
            ),
        });
    }
    let members = members(client, oid, &quoted).await?;
    let columns = columns(client, oid).await?;
    let member_oids: Vec<u32> = members.iter().map(|m| m.oid).collect();
    let member_columns = client
        .query(
            "SELECT DISTINCT attname::text FROM pg_attribute
             WHERE attrelid = ANY ($1) AND attnum > 0 AND NOT attisdropped ORDER BY 1",
            &[&member_oids],
        )
        .await
        .map_err(CaptureError::pg(
            "read the columns of the partitions and children",
        ))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Resolved {
        schema,
        name,
        oid,
        columns,
        members,
        member_columns,
    })
}

/// The error for a table that is not found, with a hint.
async fn not_found(client: &Client, table: &TableRef) -> Result<CaptureError> {
    let similar = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE lower(c.relname) = lower($1) AND c.relkind IN ('r', 'p')
               AND ($2::text IS NULL OR lower(n.nspname) = lower($2))
             ORDER BY 1 LIMIT 5",
            &[&table.name(), &table.schema()],
        )
        .await
        .map_err(CaptureError::pg("find the table"))?;
    let similar: Vec<String> = similar.iter().map(|r| r.get(0)).collect();
    let hint = if similar.is_empty() {
        if table.schema().is_none() {
            " (not in the search_path; qualify it with its schema)".to_owned()
        } else {
            String::new()
        }
    } else {
        format!(
            " (names are case-sensitive; did you mean {}?)",
            similar.join(" or ")
        )
    };
    Ok(CaptureError::TableNotFound {
        table: table.to_string(),
        hint,
    })
}

/// The partitions and children of `oid` (`quoted`), each checked: a table, and no parent
/// outside the hierarchy.
async fn members(client: &Client, oid: u32, quoted: &str) -> Result<Vec<Member>> {
    let rows = client
        .query(DESCENDANTS, &[&oid])
        .await
        .map_err(CaptureError::pg("find the table's partitions and children"))?;
    let mut members = Vec::with_capacity(rows.len());
    for row in &rows {
        let table = format!(
            "{}.{}",
            ident(&row.get::<_, String>(1)),
            ident(&row.get::<_, String>(2))
        );
        let relkind: String = row.get(3);
        let outside: Vec<String> = row.get(4);
        if relkind != "r" && relkind != "p" {
            return Err(CaptureError::Hierarchy {
                table: quoted.to_owned(),
                reason: format!(
                    "its partition or child {table} is not a table (relkind {relkind:?}, e.g. a \
                     foreign table): it cannot carry the capture triggers, so writes made to it \
                     directly would not be seen"
                ),
            });
        }
        if let Some(other) = outside.first() {
            return Err(CaptureError::Hierarchy {
                table: quoted.to_owned(),
                reason: format!(
                    "its child {table} also inherits from {other}, outside the captured \
                     hierarchy: writes made through {other} would not be seen"
                ),
            });
        }
        members.push(Member {
            oid: row.get(0),
            table,
        });
    }
    Ok(members)
}

/// The columns of `oid`, with the encoding of each one's base type and collation.
async fn columns(client: &Client, oid: u32) -> Result<Vec<Column>> {
    let rows = client
        .query(
            "WITH RECURSIVE cols AS (
                 SELECT a.attnum, a.attname::text AS name, a.attcollation,
                        format_type(a.atttypid, a.atttypmod) AS shown, a.atttypid AS typ
                 FROM pg_attribute a
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
             ), base(attnum, typ, depth) AS (
                 SELECT attnum, typ, 0 FROM cols
                 UNION ALL
                 SELECT b.attnum, t.typbasetype, b.depth + 1
                 FROM base b JOIN pg_type t ON t.oid = b.typ
                 WHERE t.typtype = 'd'
             )
             SELECT c.name, c.shown, t.typname::text, t.typtype::text, n.nspname::text,
                    c.attnum, CASE WHEN NOT coll.collisdeterministic
                                   THEN format('%I.%I', colln.nspname, coll.collname) END
             FROM cols c
             JOIN LATERAL (SELECT b.typ FROM base b WHERE b.attnum = c.attnum
                           ORDER BY b.depth DESC LIMIT 1) bt ON true
             JOIN pg_type t ON t.oid = bt.typ
             JOIN pg_namespace n ON n.oid = t.typnamespace
             LEFT JOIN pg_collation coll ON coll.oid = c.attcollation
             LEFT JOIN pg_namespace colln ON colln.oid = coll.collnamespace
             ORDER BY c.attnum",
            &[&oid],
        )
        .await
        .map_err(CaptureError::pg("read the table's columns"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let typname: String = r.get(2);
            let typtype: String = r.get(3);
            let namespace: String = r.get(4);
            let nondeterministic: Option<String> = r.get(6);
            Column {
                name: r.get(0),
                type_name: r.get(1),
                attnum: r.get(5),
                encoding: Encoding::of(&typname, &typtype, &namespace, nondeterministic.as_deref()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_whose_equality_is_not_byte_equality_are_inexact() {
        let text = Encoding::of("text", "b", "pg_catalog", None);
        assert_eq!(text, Encoding::Encoded(Encoder::Text));
        for (typname, namespace, collation, why) in [
            ("bpchar", "pg_catalog", None, "pads"),
            ("citext", "public", None, "case-insensitively"),
            (
                "text",
                "pg_catalog",
                Some("\"public\".ci"),
                "nondeterministic",
            ),
            ("varchar", "pg_catalog", Some("ci"), "nondeterministic"),
        ] {
            match Encoding::of(typname, "b", namespace, collation) {
                Encoding::Inexact(reason) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{typname}: {other:?}"),
            }
        }
        assert_eq!(
            Encoding::of("mood", "e", "public", None),
            Encoding::Encoded(Encoder::Text)
        );
        assert_eq!(
            Encoding::of("jsonb", "b", "pg_catalog", None),
            Encoding::Unsupported
        );
    }
}
