//! Which columns a changeset sets, read from the SQL Diesel renders for it.

use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::{QueryBuilder as _, QueryFragment};

/// The columns `changeset` assigns, or `None` when they cannot be told (then every scope counts
/// as modified: coarse, never stale).
///
/// Diesel renders a changeset as `"col" = <expr>, "col2" = <expr>`, each column an identifier
/// quoted by the query builder and each value a bind parameter or an expression. The parser
/// accepts exactly that shape and gives up on anything else.
pub(crate) fn modified_columns<C: QueryFragment<Pg>>(changeset: &C) -> Option<Vec<String>> {
    let mut builder = PgQueryBuilder::default();
    changeset.to_sql(&mut builder, &Pg).ok()?;
    parse_assignments(&builder.finish())
}

/// Parses `"a" = expr, "b" = expr` into `["a", "b"]`.
fn parse_assignments(sql: &str) -> Option<Vec<String>> {
    let mut columns = Vec::new();
    let mut chars = sql.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        // The column: a quoted identifier ("" escapes a quote).
        if chars.next()? != '"' {
            return None;
        }
        let mut name = String::new();
        loop {
            match chars.next()? {
                '"' if chars.next_if_eq(&'"').is_some() => name.push('"'),
                '"' => break,
                c => name.push(c),
            }
        }
        // Then ` = ` (not `"col"[1] = ...` or anything else).
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next()? != '=' {
            return None;
        }
        columns.push(name);
        // Skip the expression, up to a comma outside parentheses, brackets and quotes.
        let mut depth = 0_u32;
        loop {
            let Some(c) = chars.next() else {
                return (depth == 0).then_some(columns);
            };
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth = depth.checked_sub(1)?,
                '"' | '\'' => skip_quoted(&mut chars, c)?,
                ',' if depth == 0 => break,
                _ => {}
            }
        }
    }
}

fn skip_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, quote: char) -> Option<()> {
    loop {
        let c = chars.next()?;
        if c == quote && chars.next_if_eq(&quote).is_none() {
            return Some(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_assignments;

    #[test]
    fn columns_of_rendered_changesets() {
        let cols = |sql| parse_assignments(sql).map(|v| v.join(","));
        assert_eq!(cols(r#""title" = $1"#).as_deref(), Some("title"));
        assert_eq!(
            cols(r#""title" = $1, "body" = $2"#).as_deref(),
            Some("title,body")
        );
        assert_eq!(
            cols(r#""views" = ("views" + $1), "q""t" = lower('x, ''y'''), "c" = f($2, $3)"#)
                .as_deref(),
            Some("views,q\"t,c")
        );
    }

    #[test]
    fn unexpected_shapes_are_unknown() {
        for sql in [
            r#""tags"[1] = $1"#,
            "title = $1",
            r#""a" = ($1"#,
            r#""a" = $1)"#,
            "",
        ] {
            assert_eq!(parse_assignments(sql), None, "{sql}");
        }
    }
}
