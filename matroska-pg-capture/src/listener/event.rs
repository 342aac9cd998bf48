//! What a listener delivers: [`Event`]s (tags to invalidate, or a [`Gap`]), and the NOTIFY
//! payload format they are read from.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use matroska_core::{Error, Tag};

use super::payload::{Change, Operation, PayloadError, parse_payload};

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

/// One NOTIFY: the tags a committed statement touched (deduplicated, in payload order), the
/// [`Change`] it made (which table, which operation, when it was sent: payloads of format-3
/// triggers), and when this listener received it. Cloning is cheap (the tags are shared between
/// subscribers).
///
/// # Examples
///
/// ```
/// use matroska_pg_capture::listener::{Operation, TagBatch};
///
/// let batch = TagBatch::parse(r#"{"v":1,"tags":["i:article:5","a:author"]}"#, 4242)?;
/// assert_eq!(batch.tags().len(), 2);
/// assert_eq!(batch.sender_pid(), 4242);
/// assert_eq!(batch.to_string(), "tags (from pid 4242): i:article:5 a:author");
///
/// let batch = TagBatch::parse(
///     r#"{"v":1,"table":"public.users","op":"insert","at":1764619200000000,"tags":["i:user:7"]}"#,
///     4242,
/// )?;
/// assert_eq!(batch.table(), Some("public.users"));
/// assert_eq!(batch.operation(), Some(Operation::Insert));
/// assert!(batch.latency().is_some());
/// # Ok::<(), matroska_pg_capture::listener::PayloadError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagBatch {
    tags: Arc<[Tag]>,
    sender_pid: i32,
    change: Option<Change>,
    received_at: SystemTime,
}

impl TagBatch {
    /// A batch of `tags` sent by the backend with process id `sender_pid`, received now, with
    /// no [`Change`].
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::Dep;
    /// use matroska_pg_capture::listener::TagBatch;
    ///
    /// let batch = TagBatch::new(vec![Dep::id("article", 5).to_tag()?], 1);
    /// assert_eq!(batch.tags()[0].as_str(), "i:article:5");
    /// assert!(batch.change().is_none());
    /// # Ok::<(), matroska_core::Error>(())
    /// ```
    pub fn new(tags: Vec<Tag>, sender_pid: i32) -> Self {
        Self {
            tags: tags.into(),
            sender_pid,
            change: None,
            received_at: SystemTime::now(),
        }
    }

    /// The same batch, from the statement `change`.
    #[must_use]
    pub fn with_change(mut self, change: Change) -> Self {
        self.change = Some(change);
        self
    }

    /// The same batch, received at `at` (the listener stamps it when it reads the
    /// notification).
    #[must_use]
    pub fn received_at_time(mut self, at: SystemTime) -> Self {
        self.received_at = at;
        self
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
        let parsed = parse_payload(payload);
        match parsed.error {
            Some(error) => Err(error),
            None => Ok(Self::from_parts(parsed.tags, parsed.change, sender_pid)),
        }
    }

    pub(crate) fn from_parts(tags: Vec<Tag>, change: Option<Change>, sender_pid: i32) -> Self {
        let batch = Self::new(tags, sender_pid);
        match change {
            Some(change) => batch.with_change(change),
            None => batch,
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

    /// The statement this came from: `None` for payloads without one (triggers installed by an
    /// older version, [`encode_payload`](super::encode_payload)).
    pub fn change(&self) -> Option<&Change> {
        self.change.as_ref()
    }

    /// The schema-qualified table the statement changed, if known.
    pub fn table(&self) -> Option<&str> {
        self.change.as_ref().map(Change::table)
    }

    /// What the statement did, if known.
    pub fn operation(&self) -> Option<Operation> {
        self.change.as_ref().map(Change::operation)
    }

    /// When the trigger sent it (the database's clock), if known.
    pub fn sent_at(&self) -> Option<SystemTime> {
        self.change.as_ref().map(Change::sent_at)
    }

    /// When this listener read it (this machine's clock).
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// `received_at - sent_at`, if the send time is known: the delay from the trigger to this
    /// listener, including the rest of the writer's transaction (delivery is at commit). The two
    /// clocks are different machines' when the database is elsewhere: a receive time before the
    /// send time (clock skew) gives zero.
    pub fn latency(&self) -> Option<Duration> {
        self.sent_at().map(|sent| {
            self.received_at
                .duration_since(sent)
                .unwrap_or(Duration::ZERO)
        })
    }
}

impl fmt::Display for TagBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            Some(change) => write!(
                f,
                "{} {} (from pid {}, latency {:?}):",
                change.operation(),
                change.table(),
                self.sender_pid,
                self.latency().unwrap_or_default()
            )?,
            None => write!(f, "tags (from pid {}):", self.sender_pid)?,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
