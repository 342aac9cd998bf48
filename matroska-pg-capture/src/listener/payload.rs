//! The NOTIFY payload, version 1: `{"v":1,"table":"public.articles","op":"update",
//! "at":1764619200000000,"tags":["i:article:5",...]}`, written by the triggers and read by the
//! listener.
//!
//! # Versions
//!
//! `v` changes only when a reader of the old version would misread a payload. Fields are added
//! without changing it: `table`, `op` and `at` came with the format-3 triggers, and a listener
//! from before reads such payloads as before (tags only: unknown fields are ignored). A listener
//! from now reads an older trigger's payload (`{"v":1,"tags":[...]}`) with no [`Change`]. A
//! payload of a version this listener does not know is a gap ([`PayloadError::UnknownVersion`]):
//! it invalidates the watched kinds rather than guess.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use matroska_core::{Error, Tag};

/// The payload version this crate writes and reads.
///
/// # Examples
///
/// ```
/// let payload = matroska_pg_capture::listener::encode_payload(&[]);
/// assert_eq!(payload, format!(r#"{{"v":{},"tags":[]}}"#, matroska_pg_capture::listener::PAYLOAD_VERSION));
/// ```
pub const PAYLOAD_VERSION: u64 = 1;

/// What the statement that sent a notification did.
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::listener::Operation;
///
/// assert_eq!(Operation::Truncate.as_str(), "truncate");
/// assert_eq!(Operation::parse("update"), Some(Operation::Update));
/// assert_eq!(Operation::parse("merge"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `INSERT` (also the insert half of `INSERT ... ON CONFLICT DO UPDATE` and of `MERGE`).
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `TRUNCATE`.
    Truncate,
}

impl Operation {
    /// The lower-case name, as in the payload.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Truncate => "truncate",
        }
    }

    /// Reads a payload's `op` (lower case); `None` for anything else.
    pub fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "insert" => Self::Insert,
            "update" => Self::Update,
            "delete" => Self::Delete,
            "truncate" => Self::Truncate,
            _ => return None,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The statement a notification came from: which table it changed (schema-qualified, each part
/// quoted when it must be, as PostgreSQL's `format('%I.%I')` writes it; for a partitioned or
/// inherited table, the partition or child the rows are in), what it did, and when the trigger
/// sent it, by the database server's clock.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use matroska_pg_capture::listener::{Change, Operation};
///
/// let sent = UNIX_EPOCH + Duration::from_micros(1_764_619_200_000_000);
/// let change = Change::new("public.articles", Operation::Insert, sent);
/// assert_eq!(change.table(), "public.articles");
/// assert_eq!(change.operation(), Operation::Insert);
/// assert_eq!(change.sent_at(), sent);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    table: Arc<str>,
    operation: Operation,
    sent_at: SystemTime,
}

impl Change {
    /// A change of `table` by `operation`, sent at `sent_at`.
    pub fn new(table: impl Into<Arc<str>>, operation: Operation, sent_at: SystemTime) -> Self {
        Self {
            table: table.into(),
            operation,
            sent_at,
        }
    }

    /// The schema-qualified table, as `format('%I.%I', schema, name)` writes it.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// What the statement did.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// When the trigger sent the notification (the database server's clock; PostgreSQL delivers
    /// it at commit, so the latency includes the rest of the transaction).
    pub fn sent_at(&self) -> SystemTime {
        self.sent_at
    }
}

/// What is wrong with a NOTIFY payload.
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::listener::{PayloadError, TagBatch};
///
/// let err = TagBatch::parse("not json", 0).unwrap_err();
/// assert!(matches!(err, PayloadError::NotJson(_)));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is not JSON.
    #[error("the payload is not JSON")]
    NotJson(#[source] Arc<serde_json::Error>),
    /// The payload is JSON, but not an object with a numeric `v` and a `tags` array of strings.
    #[error("the payload is not of the form {{\"v\":1,\"tags\":[...]}}: {reason}")]
    Malformed {
        /// What is missing or of the wrong type.
        reason: &'static str,
    },
    /// A newer writer: this listener does not know the payload version.
    #[error("unknown payload version {version} (this listener reads version 1); upgrade it")]
    UnknownVersion {
        /// The payload's version.
        version: u64,
    },
    /// An element of `tags` is not a canonical tag.
    #[error("{count} element(s) of \"tags\" are not canonical tags (first: {first})")]
    BadTags {
        /// How many elements were rejected.
        count: usize,
        /// Why the first one was rejected.
        #[source]
        first: Error,
    },
}

/// Encodes tags as a version-1 payload without a [`Change`], `{"v":1,"tags":[...]}`, for Rust
/// code that notifies by itself (and for tests). It does not split: keep one payload under
/// PostgreSQL's 8,000-byte limit.
///
/// # Examples
///
/// ```
/// use matroska_core::Dep;
/// use matroska_pg_capture::listener::{TagBatch, encode_payload};
///
/// let tags = [Dep::id("article", 5).to_tag()?, Dep::kind("author").to_tag()?];
/// let payload = encode_payload(&tags);
/// assert_eq!(payload, r#"{"v":1,"tags":["i:article:5","a:author"]}"#);
/// assert_eq!(TagBatch::parse(&payload, 0).unwrap().tags(), &tags);
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub fn encode_payload(tags: &[Tag]) -> String {
    // Written by hand so that `v` comes first, as in the triggers' payloads.
    let tags = serde_json::Value::from(tags.iter().map(Tag::as_str).collect::<Vec<_>>());
    format!("{{\"v\":{PAYLOAD_VERSION},\"tags\":{tags}}}")
}

/// Encodes a [`Change`] and its tags as the format-3 triggers do.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use matroska_core::Dep;
/// use matroska_pg_capture::listener::{Change, Operation, TagBatch, encode_change_payload};
///
/// let sent = UNIX_EPOCH + Duration::from_micros(1_764_619_200_000_001);
/// let change = Change::new("public.articles", Operation::Delete, sent);
/// let payload = encode_change_payload(&change, &[Dep::id("article", 5).to_tag()?]);
/// assert_eq!(
///     payload,
///     r#"{"v":1,"table":"public.articles","op":"delete","at":1764619200000001,"tags":["i:article:5"]}"#
/// );
/// assert_eq!(TagBatch::parse(&payload, 0).unwrap().change(), Some(&change));
/// # Ok::<(), matroska_core::Error>(())
/// ```
pub fn encode_change_payload(change: &Change, tags: &[Tag]) -> String {
    let tags = serde_json::Value::from(tags.iter().map(Tag::as_str).collect::<Vec<_>>());
    let table = serde_json::Value::from(change.table());
    let at = change
        .sent_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    format!(
        "{{\"v\":{PAYLOAD_VERSION},\"table\":{table},\"op\":\"{}\",\"at\":{at},\"tags\":{tags}}}",
        change.operation
    )
}

/// A payload, read leniently.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The tags that could be read (deduplicated, in order).
    pub(crate) tags: Vec<Tag>,
    /// The statement, when `table`, `op` and `at` are all present and readable.
    pub(crate) change: Option<Change>,
    /// What was wrong, if anything.
    pub(crate) error: Option<PayloadError>,
}

/// The change a payload object describes: all of `table`, `op` and `at`, or nothing.
fn change(object: &serde_json::Map<String, serde_json::Value>) -> Option<Change> {
    let table = object.get("table")?.as_str()?;
    let operation = Operation::parse(object.get("op")?.as_str()?)?;
    let at = object.get("at")?.as_i64()?;
    let sent_at = if at >= 0 {
        UNIX_EPOCH + Duration::from_micros(at.unsigned_abs())
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_micros(at.unsigned_abs()))?
    };
    Some(Change::new(table, operation, sent_at))
}

/// Reads a payload leniently: never panics.
pub(crate) fn parse_payload(payload: &str) -> Parsed {
    let fail = |error| Parsed {
        tags: Vec::new(),
        change: None,
        error: Some(error),
    };
    let value: serde_json::Value = match serde_json::from_str(payload) {
        Ok(value) => value,
        Err(error) => return fail(PayloadError::NotJson(Arc::new(error))),
    };
    let malformed = |reason| fail(PayloadError::Malformed { reason });
    let Some(object) = value.as_object() else {
        return malformed("it is not an object");
    };
    let Some(version) = object.get("v").and_then(serde_json::Value::as_u64) else {
        return malformed("\"v\" is missing or not a non-negative integer");
    };
    if version != PAYLOAD_VERSION {
        return fail(PayloadError::UnknownVersion { version });
    }
    let Some(items) = object.get("tags").and_then(serde_json::Value::as_array) else {
        return malformed("\"tags\" is missing or not an array");
    };
    let mut seen = HashSet::with_capacity(items.len());
    let mut tags = Vec::with_capacity(items.len());
    let mut rejected = 0;
    let mut first = None;
    for item in items {
        let parsed = match item.as_str() {
            Some(text) => Tag::parse(text),
            None => Err(Error::InvalidDep {
                reason: format!("{item} is not a string"),
            }),
        };
        match parsed {
            Ok(tag) => {
                if seen.insert(tag.clone()) {
                    tags.push(tag);
                }
            }
            Err(error) => {
                rejected += 1;
                first.get_or_insert(error);
            }
        }
    }
    let error = first.map(|first| PayloadError::BadTags {
        count: rejected,
        first,
    });
    Parsed {
        tags,
        change: change(object),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(tags: &[Tag]) -> Vec<&str> {
        tags.iter().map(Tag::as_str).collect()
    }

    #[test]
    fn reads_the_contract_example() {
        let Parsed { tags, error, .. } = parse_payload(
            r#"{"v":1,"tags":["i:article:5","s:article:category='news&published=true","a:author"]}"#,
        );
        assert!(error.is_none());
        assert_eq!(
            strs(&tags),
            [
                "i:article:5",
                "s:article:category='news&published=true",
                "a:author"
            ]
        );
    }

    #[test]
    fn ignores_unknown_fields_and_deduplicates() {
        let Parsed { tags, error, .. } =
            parse_payload(r#"{"v":1,"tags":["i:a:1","i:a:1","g:x"],"txid":99,"extra":{}}"#);
        assert!(error.is_none());
        assert_eq!(strs(&tags), ["i:a:1", "g:x"]);
    }

    #[test]
    fn keeps_the_readable_tags_of_a_damaged_payload() {
        let Parsed { tags, error, .. } =
            parse_payload(r#"{"v":1,"tags":["i:a:1","bogus",7,"a:b"]}"#);
        assert_eq!(strs(&tags), ["i:a:1", "a:b"]);
        match error {
            Some(PayloadError::BadTags { count: 2, first }) => {
                assert!(first.to_string().contains("bogus"), "{first}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_everything_else_without_panicking() {
        for (payload, expect) in [
            ("", "NotJson"),
            ("{", "NotJson"),
            ("[1]", "Malformed"),
            ("null", "Malformed"),
            (r#"{"tags":[]}"#, "Malformed"),
            (r#"{"v":"1","tags":[]}"#, "Malformed"),
            (r#"{"v":-1,"tags":[]}"#, "Malformed"),
            (r#"{"v":1}"#, "Malformed"),
            (r#"{"v":1,"tags":"i:a:1"}"#, "Malformed"),
            (r#"{"v":2,"tags":["i:a:1"]}"#, "UnknownVersion"),
            (r#"{"v":0}"#, "UnknownVersion"),
        ] {
            let Parsed { tags, error, .. } = parse_payload(payload);
            assert!(tags.is_empty(), "{payload}");
            let error = error.unwrap_or_else(|| panic!("{payload} was accepted"));
            assert!(
                format!("{error:?}").starts_with(expect),
                "{payload}: {error:?}"
            );
        }
    }

    #[test]
    fn encode_round_trips_awkward_tags() {
        let tags = vec![
            Tag::parse("s:article:category='n%22ws\"&published=true").unwrap(),
            Tag::parse("g:caf\u{e9} \\ \u{1f600}").unwrap(),
        ];
        let payload = encode_payload(&tags);
        let Parsed {
            tags: back, error, ..
        } = parse_payload(&payload);
        assert!(error.is_none());
        assert_eq!(back, tags);
    }

    #[test]
    fn reads_the_change_of_a_format_3_payload_and_none_of_an_older_one() {
        let parsed = parse_payload(
            r#"{"v":1,"table":"app.\"Articles\"","op":"truncate","at":1764619200000000,"tags":["a:article"]}"#,
        );
        assert!(parsed.error.is_none());
        let change = parsed.change.unwrap();
        assert_eq!(change.table(), "app.\"Articles\"");
        assert_eq!(change.operation(), Operation::Truncate);
        assert_eq!(
            change.sent_at(),
            UNIX_EPOCH + Duration::from_secs(1_764_619_200)
        );
        assert_eq!(strs(&parsed.tags), ["a:article"]);
        // An older trigger's payload: tags, no change.
        let old = parse_payload(r#"{"v":1,"tags":["i:a:1"]}"#);
        assert!(old.error.is_none() && old.change.is_none());
        assert_eq!(strs(&old.tags), ["i:a:1"]);
        // A newer writer's unknown operation, or a part missing: tags, no change, no error.
        for payload in [
            r#"{"v":1,"table":"t","op":"merge","at":1,"tags":["i:a:1"]}"#,
            r#"{"v":1,"table":"t","op":"insert","tags":["i:a:1"]}"#,
            r#"{"v":1,"table":7,"op":"insert","at":1,"tags":["i:a:1"]}"#,
        ] {
            let parsed = parse_payload(payload);
            assert!(
                parsed.error.is_none() && parsed.change.is_none(),
                "{payload}"
            );
            assert_eq!(strs(&parsed.tags), ["i:a:1"], "{payload}");
        }
    }

    #[test]
    fn change_payloads_round_trip() {
        let change = Change::new(
            "\"we\"\"ird\".t",
            Operation::Update,
            UNIX_EPOCH + Duration::from_micros(123),
        );
        let tags = vec![Tag::parse("i:a:1").unwrap()];
        let parsed = parse_payload(&encode_change_payload(&change, &tags));
        assert!(parsed.error.is_none());
        assert_eq!(parsed.change, Some(change));
        assert_eq!(parsed.tags, tags);
    }
}
