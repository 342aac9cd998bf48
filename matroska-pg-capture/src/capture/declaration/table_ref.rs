//! [`TableRef`]: a table's name, schema-qualified or not, as the user wrote it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::super::error::{CaptureError, Result};
use super::check_ident;
use matroska_postgres::schema::quote_ident;

/// A table, optionally schema-qualified. Names are taken exactly as given (no case folding) and
/// always quoted in SQL; without a schema, the table is found through the `search_path` at
/// install time and recorded with its schema.
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::capture::TableRef;
///
/// let t = TableRef::parse(r#"Sales."Order.Lines""#)?;
/// assert_eq!(t.schema(), Some("Sales"));
/// assert_eq!(t.name(), "Order.Lines");
/// assert_eq!(t.to_string(), r#""Sales"."Order.Lines""#);
/// assert_eq!(TableRef::parse("articles")?.schema(), None);
/// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    name: String,
}

impl TableRef {
    /// A table `name` in `schema` (`None`: found through the `search_path`).
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] for an empty name, one over 63 bytes, or one with NUL.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = matroska_pg_capture::capture::TableRef::new(Some("app"), "my table")?;
    /// assert_eq!(t.to_string(), r#""app"."my table""#);
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn new(schema: Option<&str>, name: &str) -> Result<Self> {
        if let Some(schema) = schema {
            check_ident("schema name", schema)?;
        }
        check_ident("table name", name)?;
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// Parses `table`, `schema.table`, or either part in double quotes (`""` for a quote inside),
    /// which lets a part contain dots. Unquoted parts are taken as they are: `Articles` names the
    /// table `Articles`, not `articles`.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Identifier`] for an empty part, more than two parts, an unclosed quote, or
    /// a part that [`TableRef::new`] refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::capture::TableRef;
    ///
    /// assert_eq!(TableRef::parse(r#""a""b".c"#)?.schema(), Some("a\"b"));
    /// assert!(TableRef::parse("a.b.c").is_err());
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| CaptureError::Identifier {
            what: "table",
            name: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(bad("a quoted part is not closed")),
                    }
                }
                if !matches!(chars.peek(), None | Some('.')) {
                    return Err(bad("a quoted part must be followed by '.' or the end"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if c == '"' {
                        return Err(bad("a quote inside an unquoted part; quote the whole part"));
                    }
                    part.push(c);
                    chars.next();
                }
            }
            if part.is_empty() {
                return Err(bad("it is empty or has an empty part"));
            }
            parts.push(part);
            // Past the dot, or done.
            if chars.next().is_none() {
                break;
            }
        }
        match parts.as_slice() {
            [name] => Self::new(None, name),
            [schema, name] => Self::new(Some(schema), name),
            _ => Err(bad(
                "use table or schema.table (quote parts that contain dots)",
            )),
        }
    }

    /// The schema, if given.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::TableRef::parse("s.t")?.schema(), Some("s"));
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::capture::TableRef::parse("s.t")?.name(), "t");
    /// # Ok::<(), matroska_pg_capture::capture::CaptureError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TableRef {
    /// The quoted, SQL form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", quote_ident(schema))?;
        }
        f.write_str(&quote_ident(&self.name))
    }
}
