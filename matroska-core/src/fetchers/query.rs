//! The canonical key of a typed query: order-insensitive, escaped, injective.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::key::Key;

/// The cache key of `query` for the fetcher `name`:
/// `name?field=value&field=value`, fields sorted by name, each value in canonical JSON (object
/// keys sorted at every depth, so `{"b":1,"a":2}` and `{"a":2,"b":1}` are one key), and `%`,
/// `&`, `=` and `?` percent-escaped in the name, the field names and the values. So two queries
/// that differ only in field order are one key, and two different queries never share one
/// (strings are quoted: the string `"1"` and the number `1` differ).
///
/// A query is a struct or a map (or `()` for a fetcher without parameters).
///
/// # Errors
///
/// [`Error::InvalidQuery`] when the query does not serialize as a map with string keys, and
/// [`Error::InvalidKey`] when the key is too long.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use matroska_core::fetchers::canonical_key;
///
/// #[derive(serde::Serialize)]
/// struct Forecast { city: String, days: u8 }
///
/// let key = canonical_key("forecast", &Forecast { city: "Paris".into(), days: 3 })?;
/// assert_eq!(key.as_str(), r#"forecast?city="Paris"&days=3"#);
/// let map = BTreeMap::from([("days", "3"), ("city", "a&b=c")]);
/// assert_eq!(canonical_key("forecast", &map)?.as_str(), r#"forecast?city="a%26b%3Dc"&days="3""#);
/// assert!(canonical_key("forecast", &5).is_err());
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub fn canonical_key<Q: Serialize + ?Sized>(name: &str, query: &Q) -> Result<Key> {
    let invalid = |reason: String| Error::InvalidQuery {
        fetcher: name.to_owned(),
        reason,
    };
    let value = serde_json::to_value(query).map_err(|e| invalid(e.to_string()))?;
    let mut fields = match value {
        Value::Object(map) => map.into_iter().collect::<Vec<_>>(),
        Value::Null => Vec::new(),
        other => {
            return Err(invalid(format!(
                "a query must be a struct or a map, not {}",
                kind(&other)
            )));
        }
    };
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let mut key = escape(name);
    key.push('?');
    for (i, (field, value)) in fields.iter().enumerate() {
        if i > 0 {
            key.push('&');
        }
        key.push_str(&escape(field));
        key.push('=');
        let mut text = String::new();
        canonical_json(value, &mut text);
        key.push_str(&escape(&text));
    }
    Key::new(key)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a map",
    }
}

/// `%`, `&`, `=` and `?` percent-escaped (`%` first, so the escaping is injective).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '&' => out.push_str("%26"),
            '=' => out.push_str("%3D"),
            '?' => out.push_str("%3F"),
            c => out.push(c),
        }
    }
    out
}

/// JSON text with object keys sorted at every depth.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::*;

    #[test]
    fn field_order_does_not_matter_at_any_depth() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": null}});
        let b = serde_json::json!({"a": {"x": null, "y": [1, {"p": 2, "q": 1}]}, "b": 1});
        assert_eq!(
            canonical_key("f", &a).unwrap(),
            canonical_key("f", &b).unwrap()
        );
        let hashed: HashMap<&str, &str> = [("z", "1"), ("a", "2"), ("m", "3")].into();
        let sorted: BTreeMap<&str, &str> = [("a", "2"), ("m", "3"), ("z", "1")].into();
        assert_eq!(
            canonical_key("f", &hashed).unwrap(),
            canonical_key("f", &sorted).unwrap()
        );
    }

    #[test]
    fn different_queries_never_share_a_key() {
        let queries = [
            serde_json::json!({"a": "1"}),
            serde_json::json!({"a": 1}),
            serde_json::json!({"a": "1&b=2"}),
            serde_json::json!({"a": "1", "b": "2"}),
            serde_json::json!({"a=1": ""}),
            serde_json::json!({"a": "%26"}),
            serde_json::json!({"a": "&"}),
            serde_json::json!({"a": null}),
            serde_json::json!({"a": [1, 2]}),
            serde_json::json!({"a": [2, 1]}),
            serde_json::json!({}),
        ];
        let keys: HashSet<String> = queries
            .iter()
            .map(|q| canonical_key("f", q).unwrap().as_str().to_owned())
            .collect();
        assert_eq!(keys.len(), queries.len(), "{keys:?}");
        assert_ne!(
            canonical_key("f?a", &serde_json::json!({})).unwrap(),
            canonical_key("f", &serde_json::json!({"a": ""})).unwrap()
        );
    }

    #[test]
    fn a_query_that_is_not_a_map_is_refused() {
        for q in [
            serde_json::json!(1),
            serde_json::json!("x"),
            serde_json::json!([1]),
        ] {
            assert!(matches!(
                canonical_key("f", &q),
                Err(Error::InvalidQuery { .. })
            ));
        }
        assert_eq!(canonical_key("f", &()).unwrap().as_str(), "f?");
    }
}
