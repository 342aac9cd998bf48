//! When an [`Applier`](super::Applier) applies what it received: [`Strategy`], and the pending
//! set that implements it.

use std::collections::HashSet;
use std::time::Duration;

use matroska_core::Tag;
use tokio::time::Instant;

/// When received tags are applied to the store. PGCacheWatch's strategies (greedy, windowed,
/// timed), done so that none can leave an entry stale once its window has closed:
///
/// | strategy | a tag received at `t` is applied | PGCacheWatch's counterpart |
/// | --- | --- | --- |
/// | `Immediate` | at once | `Greedy`: only on the next call of the cached function, and events it rejects are lost |
/// | `Batched { window }` | by `t + window` | `Windowed`: only when the last operations *equal* a given sequence, so a lone UPDATE never clears |
/// | `RateLimited { interval }` | by `t + interval` | `Timed`: an event within the interval of the previous clear is ignored for good |
///
/// ("applied" means the store call has started; add the time of the calls ahead of it.) Under
/// every strategy:
///
/// - tags that arrive while an apply runs are collected and applied together next (coalesced,
///   deduplicated), never dropped;
/// - a [`Gap`](super::Gap) is acted on at once, with whatever is pending;
/// - a failing store delays the apply (retried with back-off) but loses nothing: the tags stay
///   pending, beyond the applier's limit they collapse to their kinds' `a:<kind>` tags, and
///   beyond that the store is cleared (see [`Applier`](super::Applier)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use matroska_pg_capture::listener::Strategy;
///
/// assert_eq!(Strategy::default(), Strategy::Immediate);
/// let batched = Strategy::Batched { window: Duration::from_millis(50) };
/// assert_eq!(batched.delay_bound(), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Apply as soon as tags arrive; what arrives during an apply is applied right after it, in
    /// one call.
    #[default]
    Immediate,
    /// Collect tags for `window` after the first one (or until the applier's batch size is
    /// reached), then apply them in one call: fewer, larger store calls.
    Batched {
        /// How long the first tag of a batch waits at most.
        window: Duration,
    },
    /// At most one apply per `interval`: the first tags after a quiet period are applied at once
    /// (leading edge); tags arriving within `interval` of the last apply are applied when it has
    /// passed (a guaranteed trailing apply, never dropped).
    RateLimited {
        /// The least time between the starts of two applies.
        interval: Duration,
    },
}

impl Strategy {
    /// How long a received tag may wait before its apply starts (not counting store calls ahead
    /// of it, gaps or store failures).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use matroska_pg_capture::listener::Strategy;
    ///
    /// assert_eq!(Strategy::Immediate.delay_bound(), Duration::ZERO);
    /// let limited = Strategy::RateLimited { interval: Duration::from_secs(1) };
    /// assert_eq!(limited.delay_bound(), Duration::from_secs(1));
    /// ```
    pub fn delay_bound(self) -> Duration {
        match self {
            Self::Immediate => Duration::ZERO,
            Self::Batched { window } => window,
            Self::RateLimited { interval } => interval,
        }
    }
}

/// What one apply does.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) tags: Vec<Tag>,
    pub(crate) clear: bool,
}

/// Tags waiting to be applied, and when they are due.
#[derive(Debug)]
pub(crate) struct Pending {
    strategy: Strategy,
    /// Batched: apply early once this many tags wait.
    max_batch: usize,
    tags: HashSet<Tag>,
    clear: bool,
    /// A gap (or a retry after a failure): due at once, whatever the strategy.
    urgent: bool,
    /// When the oldest pending item arrived.
    since: Option<Instant>,
    /// When the last apply started (rate limiting).
    last_apply: Option<Instant>,
}

impl Pending {
    pub(crate) fn new(strategy: Strategy, max_batch: usize) -> Self {
        Self {
            strategy,
            max_batch: max_batch.max(1),
            tags: HashSet::new(),
            clear: false,
            urgent: false,
            since: None,
            last_apply: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.tags.len()
    }

    fn is_empty(&self) -> bool {
        self.tags.is_empty() && !self.clear
    }

    fn touch(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// Tags received at `now`. While a clear is pending they are not kept: the clear starts
    /// after they arrived, so it covers them (this keeps an overflowed backlog bounded).
    pub(crate) fn add(&mut self, tags: impl IntoIterator<Item = Tag>, now: Instant) {
        if self.clear {
            return;
        }
        let before = self.tags.len();
        self.tags.extend(tags);
        if self.tags.len() > before {
            self.touch(now);
        }
    }

    /// Tags to apply at once (a gap's kind tags); covered by a pending clear, like [`add`].
    ///
    /// [`add`]: Self::add
    pub(crate) fn add_urgent(&mut self, tags: impl IntoIterator<Item = Tag>, now: Instant) {
        if !self.clear {
            self.tags.extend(tags);
        }
        self.urgent = true;
        self.touch(now);
    }

    /// Clear the store, at once. The clear covers every pending tag, so they are dropped.
    pub(crate) fn clear(&mut self, now: Instant) {
        self.tags.clear();
        self.clear = true;
        self.urgent = true;
        self.touch(now);
    }

    /// Replaces the pending tags by `tags` (a backlog collapsed to kinds); due at once.
    pub(crate) fn replace_urgent(&mut self, tags: HashSet<Tag>, now: Instant) {
        self.tags = tags;
        self.urgent = true;
        self.touch(now);
    }

    /// Takes the pending tags out (to collapse them to kinds); the caller puts back what covers
    /// them.
    pub(crate) fn take_tags(&mut self) -> HashSet<Tag> {
        let tags = std::mem::take(&mut self.tags);
        if self.is_empty() {
            self.since = None;
            self.urgent = false;
        }
        tags
    }

    /// When the pending items must be applied; `None` when nothing is pending.
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        let since = self.since?;
        if self.urgent {
            return Some(since);
        }
        Some(match self.strategy {
            Strategy::Immediate => since,
            Strategy::Batched { window } => {
                if self.tags.len() >= self.max_batch {
                    since
                } else {
                    since + window
                }
            }
            Strategy::RateLimited { interval } => match self.last_apply {
                Some(last) => since.max(last + interval),
                None => since,
            },
        })
    }

    /// Takes everything pending for an apply starting at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Batch {
        self.last_apply = Some(now);
        self.since = None;
        self.urgent = false;
        Batch {
            tags: self.tags.drain().collect(),
            clear: std::mem::take(&mut self.clear),
        }
    }

    /// Puts back what an apply could not do; it is retried before anything waits on the
    /// strategy again (the caller gates the retry by its back-off).
    pub(crate) fn restore(&mut self, batch: Batch, now: Instant) {
        if batch.clear {
            self.clear(now);
            return;
        }
        if !self.clear {
            self.tags.extend(batch.tags);
        }
        if !self.is_empty() {
            self.urgent = true;
            self.touch(now);
        }
    }
}

/// The `a:<kind>` tag covering `tag` (everything cached about its kind), if it names a kind:
/// `i:`, `s:`, `k:` and `a:` tags do, free `g:` tags do not. A hashed tag whose readable prefix
/// cuts its kind short has none.
pub(crate) fn kind_tag_of(tag: &Tag) -> Option<Tag> {
    tag.kind_tag()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str) -> Tag {
        Tag::parse(text).unwrap()
    }

    #[test]
    fn kind_tags_of_each_kind_of_tag() {
        assert_eq!(kind_tag_of(&tag("i:article:5")), Some(tag("a:article")));
        assert_eq!(
            kind_tag_of(&tag("s:article:category='news&published=true")),
            Some(tag("a:article"))
        );
        assert_eq!(
            kind_tag_of(&tag("k:order%3Aline")),
            Some(tag("a:order%3Aline"))
        );
        assert_eq!(kind_tag_of(&tag("a:author")), Some(tag("a:author")));
        assert_eq!(kind_tag_of(&tag("g:homepage")), None);
        // Escaped kinds stay escaped, exactly as Dep::kind encodes them.
        let id = matroska_core::Dep::id("order:line", 1).to_tag().unwrap();
        let kind = matroska_core::Dep::kind("order:line").to_tag().unwrap();
        assert_eq!(kind_tag_of(&id), Some(kind));
        // A hashed tag keeps its kind when the prefix holds it.
        let long = matroska_core::Dep::id("article", "x".repeat(300))
            .to_tag()
            .unwrap();
        assert!(long.as_str().contains('#'));
        assert_eq!(kind_tag_of(&long), Some(tag("a:article")));
        let long_kind = matroska_core::Dep::id("k".repeat(300), 1).to_tag().unwrap();
        assert_eq!(kind_tag_of(&long_kind), None);
    }

    #[test]
    fn due_times_per_strategy() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;

        let mut immediate = Pending::new(Strategy::Immediate, 100);
        assert_eq!(immediate.due(), None);
        immediate.add([tag("i:a:1")], t0);
        assert_eq!(immediate.due(), Some(t0));

        let mut batched = Pending::new(Strategy::Batched { window: ms(50) }, 2);
        batched.add([tag("i:a:1")], t0);
        batched.add([tag("i:a:2")], t0 + ms(10));
        // The batch is full: due at once.
        assert_eq!(batched.due(), Some(t0));
        let mut batched = Pending::new(Strategy::Batched { window: ms(50) }, 100);
        batched.add([tag("i:a:1")], t0);
        batched.add([tag("i:a:2")], t0 + ms(10));
        assert_eq!(batched.due(), Some(t0 + ms(50)));
        let batch = batched.take(t0 + ms(50));
        assert_eq!(batch.tags.len(), 2);
        assert_eq!(batched.due(), None);

        let mut limited = Pending::new(Strategy::RateLimited { interval: ms(100) }, 100);
        limited.add([tag("i:a:1")], t0);
        assert_eq!(limited.due(), Some(t0), "leading edge");
        limited.take(t0);
        limited.add([tag("i:a:2")], t0 + ms(10));
        assert_eq!(limited.due(), Some(t0 + ms(100)), "trailing edge");
        limited.take(t0 + ms(100));
        limited.add([tag("i:a:3")], t0 + ms(500));
        assert_eq!(limited.due(), Some(t0 + ms(500)), "after a quiet period");
    }

    #[test]
    fn gaps_and_retries_are_urgent_under_every_strategy() {
        let t0 = Instant::now();
        let mut pending = Pending::new(
            Strategy::RateLimited {
                interval: Duration::from_secs(60),
            },
            100,
        );
        pending.add([tag("i:a:1")], t0);
        pending.take(t0);
        pending.add([tag("i:a:2")], t0);
        pending.add_urgent([tag("a:a")], t0 + Duration::from_secs(1));
        assert_eq!(pending.due(), Some(t0));
        let batch = pending.take(t0 + Duration::from_secs(1));
        assert_eq!(batch.tags.len(), 2);
        pending.restore(batch, t0 + Duration::from_secs(2));
        assert_eq!(pending.due(), Some(t0 + Duration::from_secs(2)));
        let mut clearing = Pending::new(Strategy::Immediate, 1);
        clearing.clear(t0);
        assert!(clearing.take(t0).clear);
        assert_eq!(clearing.due(), None);
    }
}
