//! Taking parameters out of a connection string, URL (`postgres://...?k=v&...`) or key=value
//! (`k=v k='quoted value'`), leaving the rest as it was written.

use matroska_core::{Error, Result};

/// Removes the parameters named in `keys`: the rest of the string and the removed
/// (key, decoded value) pairs, in order.
pub(super) fn take(conninfo: &str, keys: &[&str]) -> Result<(String, Vec<(String, String)>)> {
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        Ok(take_url(conninfo, keys))
    } else {
        take_key_value(conninfo, keys)
    }
}

fn take_url(url: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(key);
        if keys.contains(&key.as_str()) {
            taken.push((key, percent_decode(value)));
        } else {
            kept.push(param);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// `%XX` decoded (bytes that do not form UTF-8 are replaced); `+` is left alone, as libpq does.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn take_key_value(conninfo: &str, keys: &[&str]) -> Result<(String, Vec<(String, String)>)> {
    let mut kept: Vec<&str> = Vec::new();
    let mut taken = Vec::new();
    let mut rest = conninfo.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| {
            Error::Config("a key=value connection string has a key without '='".to_owned())
        })?;
        let key = rest[..eq].trim();
        let mut after = rest[eq + 1..].trim_start();
        let mut value = String::new();
        let consumed;
        if let Some(quoted) = after.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '\'' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| {
                Error::Config("a key=value connection string has an unclosed quote".to_owned())
            })?;
            consumed = 1 + end + 1;
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            value.push_str(&after[..end]);
            consumed = end;
        }
        let whole_start = conninfo.len() - rest.len();
        after = &after[consumed..];
        let whole_end = conninfo.len() - after.len();
        if keys.contains(&key) {
            taken.push((key.to_owned(), value));
        } else {
            kept.push(&conninfo[whole_start..whole_end]);
        }
        rest = after.trim_start();
    }
    Ok((kept.join(" "), taken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_else_as_written() {
        let keys = ["sslmode", "sslrootcert"];
        assert_eq!(
            take("postgres://u:p%40ss@h:5/d?sslmode=require", &keys).unwrap(),
            (
                "postgres://u:p%40ss@h:5/d".to_owned(),
                vec![("sslmode".to_owned(), "require".to_owned())]
            )
        );
        let (rest, taken) =
            take("postgresql://h/d?a=1&sslrootcert=%2Fx%20y.pem&b=2", &keys).unwrap();
        assert_eq!(rest, "postgresql://h/d?a=1&b=2");
        assert_eq!(taken, [("sslrootcert".to_owned(), "/x y.pem".to_owned())]);
        assert_eq!(take("postgres://h/d", &keys).unwrap().0, "postgres://h/d");
    }

    #[test]
    fn key_values_handle_quotes_and_escapes() {
        let keys = ["sslmode", "sslrootcert"];
        let (rest, taken) = take(
            r"host=h  sslrootcert='/a b\'c.pem' password='x y' sslmode=verify-ca user=u",
            &keys,
        )
        .unwrap();
        assert_eq!(rest, "host=h password='x y' user=u");
        assert_eq!(
            taken,
            [
                ("sslrootcert".to_owned(), "/a b'c.pem".to_owned()),
                ("sslmode".to_owned(), "verify-ca".to_owned())
            ]
        );
        assert!(take("host=h sslmode='open", &keys).is_err());
        assert!(take("host", &keys).is_err());
        assert_eq!(take("", &keys).unwrap().0, "");
    }
}
