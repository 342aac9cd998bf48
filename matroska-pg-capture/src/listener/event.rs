//! What a listener delivers: [`Event`]s (tags to invalidate, or a [`Gap`]), and the NOTIFY
//! payload format they are read from.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

/// One thing a [`Subscription`](super::Subscription) receives.
///
/// Display gives one line, as `matroska-pg listen` prints it.
///
/// # Examples
///
/// ```no_run
/// use matroska_pg_capture::listener::{Event, Listener};
///
/// # async fn demo() -> matroska_core::Result<()> {
/// let listener = Listener::builder("postgres://app@localhost/app").start()?;
/// let mut events = listener.subscribe();
/// while let Some(event) = events.recv().await {
///     match &event {
///         Event::Tags(batch) => println!("invalidate {:?}", batch.tags()),
///         Event::Gap(gap) => println!("something may have been missed: {gap}"),
///         _ => println!("{event}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Tags a committed transaction touched (one NOTIFY).
    Tags(TagBatch),
    /// Events may have been missed: whatever they would have invalidated is unknown.
    Gap(Gap),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(batch) => fmt::Display::fmt(batch, f),
            Self::Gap(gap) => fmt::Display::fmt(gap, f),
        }
    }
}

/// The tags of one NOTIFY, deduplicated, in payload order. Cloning is cheap (the tags are shared
/// between subscribers).
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::listener::TagBatch;
///
/// let batch = TagBatch::parse(r#"{"v":1,"tags":["i:article:5","a:author"]}"#, 4242)?;
/// assert_eq!(batch.tags().len(), 2);
/// assert_eq!(batch.sender_pid(), 4242);
/// assert_eq!(batch.to_string(), "tags (from pid 4242): i:article:5 a:author");
/// # Ok::<(), matroska_pg_capture::listener::PayloadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagBatch {
    tags: Arc<[Tag]>,
    sender_pid: i32,
}

impl TagBatch {
    /// A batch of `tags` sent by the backend with process id `sender_pid`.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Dep;
    /// use matroska_pg_capture::listener::TagBatch;
    ///
    /// let batch = TagBatch::new(vec![Dep::id("article", 5).to_tag()?], 1);
    /// assert_eq!(batch.tags()[0].as_str(), "i:article:5");
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn new(tags: Vec<Tag>, sender_pid: i32) -> Self {
        Self {
            tags: tags.into(),
            sender_pid,
        }
    }

    /// Reads a payload strictly: any problem is an error (the listener itself is lenient: it
    /// delivers the readable tags of a damaged payload and reports a [`Gap`] as well).
    ///
    /// # Errors
    ///
    /// A [`PayloadError`] for anything but a well-formed version-1 payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::listener::{PayloadError, TagBatch};
    ///
    /// assert!(TagBatch::parse(r#"{"v":1,"tags":[]}"#, 0).is_ok());
    /// assert!(matches!(
    ///     TagBatch::parse(r#"{"v":2,"tags":[]}"#, 0),
    ///     Err(PayloadError::UnknownVersion { version: 2 })
    /// ));
    /// ```
    pub fn parse(payload: &str, sender_pid: i32) -> Result<Self, PayloadError> {
        let (tags, error) = parse_payload(payload);
        match error {
            Some(error) => Err(error),
            None => Ok(Self::new(tags, sender_pid)),
        }
    }

    /// The tags.
    ///
    /// # Examples
    ///
    /// ```
    /// let batch = matroska_pg_capture::listener::TagBatch::new(Vec::new(), 1);
    /// assert!(batch.tags().is_empty());
    /// ```
    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// The process id of the PostgreSQL backend whose transaction sent the tags.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_pg_capture::listener::TagBatch::new(Vec::new(), 7).sender_pid(), 7);
    /// ```
    pub fn sender_pid(&self) -> i32 {
        self.sender_pid
    }
}

impl fmt::Display for TagBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tags (from pid {}):", self.sender_pid)?;
        for tag in self.tags.iter() {
            write!(f, " {tag}")?;
        }
        Ok(())
    }
}

/// Events may have been missed. Nothing received before it can vouch for the freshness of cached
/// entries: whoever applies events to a store should invalidate everything the listener watches
/// (an [`Applier`](super::Applier) does, by default).
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::listener::{Gap, GapReason};
///
/// let gap = Gap::new(GapReason::Lagged { missed: 3 });
/// assert!(matches!(gap.reason(), GapReason::Lagged { missed: 3 }));
/// assert_eq!(gap.to_string(), "gap: this subscriber fell behind and missed 3 events");
/// ```
#[derive(Debug, Clone)]
pub struct Gap {
    reason: GapReason,
    at: SystemTime,
}

impl Gap {
    /// A gap detected now.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::listener::{Gap, GapReason};
    ///
    /// assert!(matches!(Gap::new(GapReason::Started).reason(), GapReason::Started));
    /// ```
    pub fn new(reason: GapReason) -> Self {
        Self {
            reason,
            at: SystemTime::now(),
        }
    }

    /// Why events may have been missed.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::listener::{Gap, GapReason};
    ///
    /// assert!(Gap::new(GapReason::Started).reason().is_receiving());
    /// ```
    pub fn reason(&self) -> &GapReason {
        &self.reason
    }

    /// When the gap was detected (wall clock).
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::listener::{Gap, GapReason};
    ///
    /// assert!(Gap::new(GapReason::Started).at() <= std::time::SystemTime::now());
    /// ```
    pub fn at(&self) -> SystemTime {
        self.at
    }
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gap: {}", self.reason)
    }
}

/// Why a [`Gap`] happened.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_pg_capture::listener::GapReason;
///
/// let reason = GapReason::Reconnected { down_for: Duration::from_millis(120) };
/// assert!(reason.is_receiving());
/// assert_eq!(reason.to_string(), "reconnected after 120ms: events of that time are lost");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GapReason {
    /// Receiving started: the listener's first connection (its `LISTEN` is active), or a
    /// subscription made while the listener was connected. Anything committed before is unknown.
    Started,
    /// The connection was lost (server restart, `pg_terminate_backend`, network, a heartbeat
    /// that timed out). Nothing is received until [`GapReason::Reconnected`].
    Disconnected {
        /// What ended the connection.
        error: Error,
    },
    /// Receiving again after [`GapReason::Disconnected`]: `LISTEN` is active on a new
    /// connection. What was committed while disconnected is unknown.
    Reconnected {
        /// How long no events were received.
        down_for: Duration,
    },
    /// This subscriber fell behind the listener's buffer and missed events (other subscribers
    /// are not affected).
    Lagged {
        /// How many events were missed.
        missed: u64,
    },
    /// A notification on the channel could not be read (its readable tags, if any, were
    /// delivered as an [`Event::Tags`] before this gap).
    BadPayload {
        /// What was wrong with it.
        error: PayloadError,
    },
    /// An [`Applier`](super::Applier) held more pending tags than its limit, even collapsed to
    /// their kinds, while its store was failing (or while a strategy held them back): it clears
    /// the store instead, whatever its gap action, since only a clear covers them all. Nothing
    /// was missed; this reports that the store loses more than the tags named.
    Backlog {
        /// How many distinct tags (after collapsing to kinds) the clear stands for.
        pending_tags: usize,
    },
}

impl GapReason {
    /// Whether events are being received once this gap is reported: true for every reason but
    /// [`GapReason::Disconnected`]. (An L1 tier may bypass itself between `Disconnected` and the
    /// next receiving gap.)
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_pg_capture::listener::GapReason;
    ///
    /// assert!(GapReason::Lagged { missed: 1 }.is_receiving());
    /// ```
    pub fn is_receiving(&self) -> bool {
        !matches!(self, Self::Disconnected { .. })
    }
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started => f.write_str("started: what was committed before is unknown"),
            Self::Disconnected { error } => {
                write!(
                    f,
                    "disconnected ({error}): events are lost until reconnected"
                )
            }
            Self::Reconnected { down_for } => write!(
                f,
                "reconnected after {down_for:?}: events of that time are lost"
            ),
            Self::Lagged { missed } => write!(
                f,
                "this subscriber fell behind and missed {missed} event{}",
                if *missed == 1 { "" } else { "s" }
            ),
            Self::BadPayload { error } => write!(f, "unreadable notification: {error}"),
            Self::Backlog { pending_tags } => write!(
                f,
                "{pending_tags} pending tags exceeded the applier's limit even by kind: the \
                 store is cleared instead"
            ),
        }
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

/// Encodes tags as a version-1 payload, `{"v":1,"tags":[...]}`: what the triggers send, for Rust
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

/// Reads a payload leniently: the tags that could be read (deduplicated, in order) and what was
/// wrong, if anything. Never panics.
pub(crate) fn parse_payload(payload: &str) -> (Vec<Tag>, Option<PayloadError>) {
    let value: serde_json::Value = match serde_json::from_str(payload) {
        Ok(value) => value,
        Err(error) => return (Vec::new(), Some(PayloadError::NotJson(Arc::new(error)))),
    };
    let malformed = |reason| (Vec::new(), Some(PayloadError::Malformed { reason }));
    let Some(object) = value.as_object() else {
        return malformed("it is not an object");
    };
    let Some(version) = object.get("v").and_then(serde_json::Value::as_u64) else {
        return malformed("\"v\" is missing or not a non-negative integer");
    };
    if version != PAYLOAD_VERSION {
        return (Vec::new(), Some(PayloadError::UnknownVersion { version }));
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
    (tags, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(tags: &[Tag]) -> Vec<&str> {
        tags.iter().map(Tag::as_str).collect()
    }

    #[test]
    fn reads_the_contract_example() {
        let (tags, error) = parse_payload(
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
        let (tags, error) =
            parse_payload(r#"{"v":1,"tags":["i:a:1","i:a:1","g:x"],"txid":99,"extra":{}}"#);
        assert!(error.is_none());
        assert_eq!(strs(&tags), ["i:a:1", "g:x"]);
    }

    #[test]
    fn keeps_the_readable_tags_of_a_damaged_payload() {
        let (tags, error) = parse_payload(r#"{"v":1,"tags":["i:a:1","bogus",7,"a:b"]}"#);
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
            let (tags, error) = parse_payload(payload);
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
        let (back, error) = parse_payload(&payload);
        assert!(error.is_none());
        assert_eq!(back, tags);
    }

    #[test]
    fn displays_one_line_per_event() {
        let gap = Event::Gap(Gap::new(GapReason::Disconnected {
            error: Error::Timeout {
                operation: "heartbeat",
                after: Duration::from_secs(5),
            },
        }));
        assert_eq!(
            gap.to_string(),
            "gap: disconnected (heartbeat timed out after 5s): events are lost until reconnected"
        );
        assert!(!matches!(&gap, Event::Gap(g) if g.reason().is_receiving()));
    }
}
