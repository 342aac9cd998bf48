//! The reference model: what a correct store may and must answer after a sequence of operations.
//!
//! The model holds, per key, the one value a read may return (or nothing), and per tag when it
//! was last invalidated. It is deliberately permissive where the contract is: a store may always
//! lose an entry after metadata loss (invariant 3 only forbids stale hits), an entry whose expiry
//! is within the timing tolerance may be either, and a fill may be refused when its token is
//! older than a loss of metadata. It is strict everywhere else: a hit must return exactly the
//! current value, an entry that must be live must be a hit, a fill whose token predates an
//! invalidation of one of its tags (or a clear, or the fill window) must be refused, and a fresh
//! fill must be stored.

use std::time::Duration;

use super::op::{KEYS, TAGS};

/// An interval of time on the case's timeline: an operation began at `lo` and ended at `hi`.
/// With a mock clock both are the clock's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) lo: Duration,
    pub(crate) hi: Duration,
}

impl Span {
    pub(crate) fn shifted(self, by: Duration) -> Self {
        Self {
            lo: self.lo + by,
            hi: self.hi + by,
        }
    }
}

/// Three-valued answers: the model knows, or allows either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    Yes,
    No,
    Either,
}

/// Compares an event at `at` with a deadline: `Yes` when it is surely before, `No` when surely at
/// or after, `Either` within `tolerance` (and at equality).
pub(crate) fn before(at: Span, deadline: Span, tolerance: Duration) -> Tri {
    if at.hi + tolerance < deadline.lo {
        Tri::Yes
    } else if at.lo > deadline.hi + tolerance {
        Tri::No
    } else {
        Tri::Either
    }
}

/// What may be served under a key.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The value (each stored value is unique in a case).
    pub(crate) value: u64,
    /// The tags it carries, as a bit mask.
    pub(crate) tags: u8,
    /// When it expires (the put's span shifted by its TTL); `None`: never.
    pub(crate) expires: Option<Span>,
    /// `false` after a loss of metadata: the store may have dropped it.
    pub(crate) sure: bool,
    /// The operation that stored it.
    pub(crate) by: usize,
}

/// A fill token kept from a miss.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) key: u8,
    pub(crate) fill: matroska_core::store::FillToken,
    /// The operation whose miss issued it.
    pub(crate) at: usize,
    pub(crate) span: Span,
}

/// The reference model of one case.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) entries: [Option<Entry>; KEYS as usize],
    /// Per key, the tags of the entries stored under it that an invalidation may still count:
    /// the store's contract lets it count an entry that had just expired or been replaced.
    pub(crate) ever: [u8; KEYS as usize],
    /// Per tag, the operation that last invalidated it.
    pub(crate) invalidated: [Option<usize>; TAGS as usize],
    pub(crate) cleared: Option<usize>,
    /// The last loss of metadata (index, stamp or state).
    pub(crate) lost: Option<usize>,
    pub(crate) tolerance: Duration,
    pub(crate) window: Duration,
    next_value: u64,
}

/// Why a fill must, may or must not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FillRule {
    /// Must be refused, for this reason.
    Refuse(String),
    /// May be either, for this reason.
    Either(String),
    /// Must be stored.
    Store,
}

impl Model {
    pub(crate) fn new(tolerance: Duration, window: Duration) -> Self {
        Self {
            entries: Default::default(),
            ever: [0; KEYS as usize],
            invalidated: [None; TAGS as usize],
            cleared: None,
            lost: None,
            tolerance,
            window,
            next_value: 1,
        }
    }

    /// A value never used before in this case.
    pub(crate) fn fresh_value(&mut self) -> u64 {
        self.next_value += 1;
        self.next_value
    }

    /// Whether the entry under `key` is live at `at`: `Yes` it must be served, `No` it must not
    /// (nothing there, or expired for sure), `Either`.
    pub(crate) fn live(&self, key: u8, at: Span) -> Tri {
        let Some(entry) = &self.entries[usize::from(key)] else {
            return Tri::No;
        };
        let timely = entry
            .expires
            .map_or(Tri::Yes, |e| before(at, e, self.tolerance));
        match (timely, entry.sure) {
            (Tri::No, _) => Tri::No,
            (Tri::Yes, true) => Tri::Yes,
            _ => Tri::Either,
        }
    }

    /// Records that a read found nothing under `key`: a miss is final for the entry the model
    /// holds (an expired or dropped entry never comes back).
    pub(crate) fn observed_miss(&mut self, key: u8) {
        self.entries[usize::from(key)] = None;
    }

    /// Stores an entry.
    pub(crate) fn store(
        &mut self,
        key: u8,
        value: u64,
        tags: u8,
        ttl: Option<Duration>,
        span: Span,
        by: usize,
    ) {
        self.entries[usize::from(key)] = Some(Entry {
            value,
            tags,
            expires: ttl.map(|ttl| span.shifted(ttl)),
            sure: true,
            by,
        });
        self.ever[usize::from(key)] |= tags;
    }

    /// The rule for a fill of `tags` with a token issued at `token`, arriving at `now` (op index
    /// `at`, time `span`).
    pub(crate) fn fill_rule(&self, token: &Token, tags: u8, span: Span) -> FillRule {
        for t in 0..TAGS {
            if tags & (1 << t) != 0
                && let Some(by) = self.invalidated[usize::from(t)]
                && by > token.at
            {
                return FillRule::Refuse(format!(
                    "tag t{t} was invalidated by op #{by}, after the token's miss at op #{}",
                    token.at
                ));
            }
        }
        if let Some(by) = self.cleared
            && by > token.at
        {
            return FillRule::Refuse(format!(
                "the namespace was cleared by op #{by}, after the token's miss at op #{}",
                token.at
            ));
        }
        // The token's age at the put: between span.lo - token.hi and span.hi - token.lo.
        let expiry = token.span.shifted(self.window);
        match before(span, expiry, self.tolerance) {
            Tri::No => {
                return FillRule::Refuse(format!(
                    "the token (op #{}) is older than the fill window {:?}",
                    token.at, self.window
                ));
            }
            Tri::Either => {
                return FillRule::Either("the token's age is at the fill window".to_owned());
            }
            Tri::Yes => {}
        }
        if let Some(by) = self.lost
            && by > token.at
        {
            return FillRule::Either(format!(
                "metadata was lost by op #{by}, after the token's miss"
            ));
        }
        FillRule::Store
    }

    /// Applies an invalidation of `tags` by op `by`; returns the bounds of the count a store may
    /// report: every sure, surely live dependent at least, and at most every key that held an
    /// entry carrying one of the tags since it was last removed.
    pub(crate) fn invalidate(&mut self, tags: u8, by: usize, at: Span) -> (u64, u64) {
        let mut low = 0;
        let mut high = 0;
        for k in 0..KEYS {
            let i = usize::from(k);
            if self.ever[i] & tags != 0 {
                high += 1;
            }
            let carries = self.entries[i].as_ref().is_some_and(|e| e.tags & tags != 0);
            if carries {
                if self.live(k, at) == Tri::Yes {
                    low += 1;
                }
                self.entries[i] = None;
            }
            // Entries replaced earlier may still be counted by their other tags.
            self.ever[i] &= !tags;
        }
        for t in 0..TAGS {
            if tags & (1 << t) != 0 {
                self.invalidated[usize::from(t)] = Some(by);
            }
        }
        (low, high)
    }

    pub(crate) fn delete(&mut self, key: u8) {
        // Entries replaced before may still be counted by an invalidation of their tags.
        if let Some(entry) = self.entries[usize::from(key)].take() {
            self.ever[usize::from(key)] &= !entry.tags;
        }
    }

    pub(crate) fn clear(&mut self, by: usize) {
        self.entries = Default::default();
        self.ever = [0; KEYS as usize];
        self.cleared = Some(by);
    }

    /// Metadata was lost at op `by`: every entry may now be a miss, and every older token may be
    /// refused.
    pub(crate) fn lose(&mut self, by: usize) {
        for entry in self.entries.iter_mut().flatten() {
            entry.sure = false;
        }
        self.lost = Some(by);
    }

    /// Whether some entry surely live at `at` carries tag `t` (so that its index surely exists).
    pub(crate) fn surely_indexed(&self, t: u8, at: Span) -> bool {
        (0..KEYS).any(|k| {
            self.entries[usize::from(k)]
                .as_ref()
                .is_some_and(|e| e.tags & (1 << t) != 0)
                && self.live(k, at) == Tri::Yes
        })
    }

    /// A description of the model's entry under `key`, for failure messages.
    pub(crate) fn describe(&self, key: u8) -> String {
        match &self.entries[usize::from(key)] {
            None => "nothing may be served".to_owned(),
            Some(e) => format!(
                "value {} (stored by op #{}, tags {:#07b}, expires {:?}, sure {})",
                e.value, e.by, e.tags, e.expires, e.sure
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Span {
        let d = Duration::from_millis(ms);
        Span { lo: d, hi: d }
    }

    #[test]
    fn deadlines_are_exact_on_a_mock_clock_and_equality_is_either() {
        let zero = Duration::ZERO;
        assert_eq!(before(at(9), at(10), zero), Tri::Yes);
        assert_eq!(before(at(10), at(10), zero), Tri::Either);
        assert_eq!(before(at(11), at(10), zero), Tri::No);
    }

    #[test]
    fn a_token_older_than_an_invalidation_of_its_tags_must_be_refused() {
        let mut model = Model::new(Duration::ZERO, Duration::from_secs(60));
        let token = Token {
            key: 0,
            fill: matroska_core::store::FillToken::new(1, 0),
            at: 3,
            span: at(0),
        };
        assert_eq!(model.fill_rule(&token, 0b1, at(1)), FillRule::Store);
        model.invalidate(0b10, 4, at(1));
        assert_eq!(model.fill_rule(&token, 0b1, at(1)), FillRule::Store);
        assert!(matches!(
            model.fill_rule(&token, 0b11, at(1)),
            FillRule::Refuse(_)
        ));
        assert!(matches!(
            model.fill_rule(&token, 0b1, at(61_000)),
            FillRule::Refuse(_)
        ));
        model.lose(5);
        assert!(matches!(
            model.fill_rule(&token, 0b1, at(2)),
            FillRule::Either(_)
        ));
    }

    #[test]
    fn invalidation_counts_are_bounded_by_sure_and_possible_dependents() {
        let mut model = Model::new(Duration::ZERO, Duration::from_secs(60));
        model.store(0, 1, 0b1, None, at(0), 0);
        model.store(1, 2, 0b1, Some(Duration::from_secs(1)), at(0), 1);
        model.store(2, 3, 0b10, None, at(0), 2);
        model.store(2, 4, 0b100, None, at(0), 3);
        // Key 1 has expired; key 2 was replaced: both may be counted, neither must be.
        assert_eq!(model.invalidate(0b11, 4, at(2000)), (1, 3));
        assert!(model.entries[0].is_none() && model.entries[1].is_none());
        assert_eq!(model.entries[2].as_ref().map(|e| e.value), Some(4));
    }
}
