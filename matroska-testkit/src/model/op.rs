//! The operations of the model-based checker, and the strategy that generates sequences of them.
//!
//! The universe is small on purpose: a few keys and tags, so that entries share tags, indexes
//! outgrow tiny budgets, fills race invalidations of their own tags, and keys are re-put while
//! tokens for them are outstanding.

use proptest::prelude::*;

/// Keys `k0..k3`.
pub(crate) const KEYS: u8 = 4;
/// Tags `g:t0..g:t4`; a set of them is a bit mask.
pub(crate) const TAGS: u8 = 5;
/// How many unused tags a padded invalidation adds, to pass the per-script tag limits of stores
/// (Redis stamps 64 tags per script).
pub(crate) const PADDING_TAGS: usize = 70;

/// The life of an entry: no expiry, or a short or long time to live (the durations depend on
/// whether time is a mock clock or real).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Forever,
    Short,
    Long,
}

/// One step of a sequence. `on` picks one of two handles on the namespace (the second one is
/// [`Harness::reopen`](crate::Harness::reopen)ed, as another process would).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `put` without a token: stored unconditionally.
    Put {
        on: u8,
        key: u8,
        tags: u8,
        life: Life,
    },
    /// `get`; a miss keeps its fill token for a later [`Op::Fill`].
    Get { on: u8, key: u8 },
    /// `exists`: the same checks as `get`.
    Exists { on: u8, key: u8 },
    /// `ttl`: missing, persistent or remaining.
    Ttl { on: u8, key: u8 },
    /// `put` with one of the kept fill tokens (for the key it was issued for).
    Fill {
        on: u8,
        token: u8,
        tags: u8,
        life: Life,
    },
    /// `Cache::fetch` whose loader is held at a gate until [`Op::FinishLoad`].
    StartLoad { on: u8, key: u8 },
    /// Opens the gate of a held load: its loader returns a new value with these dependencies.
    FinishLoad { load: u8, tags: u8, life: Life },
    /// `invalidate` of a non-empty tag set, optionally padded with many unused tags.
    Invalidate { on: u8, tags: u8, padded: bool },
    /// `delete`.
    Delete { on: u8, key: u8 },
    /// `clear`.
    Clear { on: u8 },
    /// Lets time pass (index into the harness's steps).
    Advance { step: u8 },
    /// The reverse index of a tag is lost (eviction, a partial write).
    LoseIndex { tag: u8 },
    /// The stamp of a tag is lost, where the store can lose one.
    LoseStamp { tag: u8 },
    /// `begin_fill`: a token whatever is stored (kept for a later [`Op::Fill`]), with the key's
    /// refresh lease or without.
    BeginFill { on: u8, key: u8, lease: bool },
    /// The namespace's shared state is lost, where the store has such state.
    LoseState,
    /// The store's housekeeping runs to completion.
    Housekeep,
    /// `get_many` of a set of keys (a bit mask, read in key order); misses keep their tokens.
    GetMany { on: u8, keys: u8 },
    /// `put_many` without tokens: every key of the set, each with these tags.
    PutMany {
        on: u8,
        keys: u8,
        tags: u8,
        life: Life,
    },
    /// `put_many` of two kept fill tokens (one when both are for the same key), each with its
    /// own tags.
    FillMany {
        on: u8,
        tokens: (u8, u8),
        tags: (u8, u8),
        life: Life,
    },
}

/// How many advance steps there are (see `Timing::step`).
pub(crate) const STEPS: u8 = 8;

fn on() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(0_u8), 1 => Just(1_u8)]
}

fn key() -> impl Strategy<Value = u8> {
    0..KEYS
}

/// A tag set, mostly of one or two tags, sometimes empty or large.
fn tags() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => (0..TAGS).prop_map(|t| 1 << t),
        3 => (0..TAGS, 0..TAGS).prop_map(|(a, b)| (1 << a) | (1 << b)),
        1 => 0_u8..(1 << TAGS),
    ]
}

fn some_tags() -> impl Strategy<Value = u8> {
    tags().prop_map(|t| if t == 0 { 1 } else { t })
}

fn life() -> impl Strategy<Value = Life> {
    prop_oneof![3 => Just(Life::Forever), 1 => Just(Life::Short), 1 => Just(Life::Long)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (on(), key(), tags(), life()).prop_map(|(on, key, tags, life)| Op::Put { on, key, tags, life }),
        18 => (on(), key()).prop_map(|(on, key)| Op::Get { on, key }),
        3 => (on(), key()).prop_map(|(on, key)| Op::Exists { on, key }),
        2 => (on(), key()).prop_map(|(on, key)| Op::Ttl { on, key }),
        12 => (on(), any::<u8>(), tags(), life()).prop_map(|(on, token, tags, life)| Op::Fill { on, token, tags, life }),
        6 => (on(), key()).prop_map(|(on, key)| Op::StartLoad { on, key }),
        6 => (any::<u8>(), tags(), life()).prop_map(|(load, tags, life)| Op::FinishLoad { load, tags, life }),
        10 => (on(), some_tags(), prop::bool::weighted(0.1)).prop_map(|(on, tags, padded)| Op::Invalidate { on, tags, padded }),
        3 => (on(), key()).prop_map(|(on, key)| Op::Delete { on, key }),
        1 => on().prop_map(|on| Op::Clear { on }),
        4 => (0..STEPS).prop_map(|step| Op::Advance { step }),
        2 => (0..TAGS).prop_map(|tag| Op::LoseIndex { tag }),
        1 => (0..TAGS).prop_map(|tag| Op::LoseStamp { tag }),
        4 => (on(), key(), any::<bool>()).prop_map(|(on, key, lease)| Op::BeginFill { on, key, lease }),
        1 => Just(Op::LoseState),
        2 => Just(Op::Housekeep),
        6 => (on(), 1_u8..(1 << KEYS)).prop_map(|(on, keys)| Op::GetMany { on, keys }),
        3 => (on(), 1_u8..(1 << KEYS), tags(), life()).prop_map(|(on, keys, tags, life)| Op::PutMany { on, keys, tags, life }),
        6 => (on(), any::<(u8, u8)>(), (tags(), tags()), life()).prop_map(|(on, tokens, tags, life)| Op::FillMany { on, tokens, tags, life }),
    ]
}

/// One case: whether it runs on [`Harness::small_store`](crate::Harness::small_store) (tiny
/// budgets) or the default store, and its operations.
pub(crate) fn case(max_len: usize) -> impl Strategy<Value = (bool, Vec<Op>)> {
    (
        prop::bool::weighted(0.75),
        prop::collection::vec(op(), 1..=max_len),
    )
}
