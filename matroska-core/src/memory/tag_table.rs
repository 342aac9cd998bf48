//! The memory store's tag table: one shared state per tag (its stamp and its reverse index).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::Entry;
use crate::key::Key;
use crate::tag::Tag;

const SHARDS: usize = 64;
/// A reverse index is pruned of dead members whenever it grows to a power of two at least this
/// large, so pruning costs O(1) amortized per insertion and dead members never outnumber live ones
/// for long.
const PRUNE_FROM: usize = 64;

/// The reverse index of a tag: key -> the entry that carried the tag when it was put. Weak, so
/// that an entry that expired, was evicted, deleted or replaced shows up as dead without a lookup.
pub(super) type Members = HashMap<Key, Weak<Entry>>;

/// The state of one tag. Entries hold an `Arc` to the state of each of their tags, so checking an
/// entry's stamps at read time is a few atomic loads, and a state that no entry holds has no live
/// members.
#[derive(Debug, Default)]
pub(super) struct TagState {
    /// The sequence number of the last invalidation of this tag (0: never).
    stamp: AtomicU64,
    /// When the stamp was last set, in nanoseconds on the store's clock.
    stamped_at: AtomicU64,
    members: Mutex<Members>,
}

impl TagState {
    pub(super) fn stamp(&self) -> u64 {
        self.stamp.load(Ordering::SeqCst)
    }

    /// Records an invalidation at `seq` and hands back the stamp it had before and the reverse
    /// index, now empty.
    pub(super) fn invalidate(&self, seq: u64, now: Duration) -> (u64, Members) {
        let before = self.stamp.fetch_max(seq, Ordering::SeqCst);
        self.stamped_at.store(nanos(now), Ordering::SeqCst);
        (before, std::mem::take(&mut *self.members.lock()))
    }

    pub(super) fn add_member(&self, key: &Key, entry: Weak<Entry>) {
        let mut members = self.members.lock();
        members.insert(key.clone(), entry);
        let len = members.len();
        if len >= PRUNE_FROM && len.is_power_of_two() {
            members.retain(|_, entry| entry.strong_count() > 0);
        }
    }

    /// Removes `key` from the index if it is there for `entry` (a deleted entry), so that a
    /// later invalidation does not count it.
    pub(super) fn remove_member(&self, key: &Key, entry: &Arc<Entry>) {
        let mut members = self.members.lock();
        if members
            .get(key)
            .is_some_and(|member| std::ptr::eq(member.as_ptr(), Arc::as_ptr(entry)))
        {
            members.remove(key);
        }
    }

    /// The number of members, dead ones included.
    #[cfg(test)]
    pub(super) fn member_count(&self) -> usize {
        self.members.lock().len()
    }

    pub(super) fn forget_members(&self) {
        self.members.lock().clear();
    }

    /// Whether the table may drop this state: no entry refers to it (so its index has no live
    /// member), and its stamp is older than the fill window (no live token predates it).
    fn is_prunable(self: &Arc<Self>, now: Duration, fill_window: Duration) -> bool {
        Arc::strong_count(self) == 1
            && (self.stamp() == 0
                || nanos(now).saturating_sub(self.stamped_at.load(Ordering::SeqCst))
                    > nanos(fill_window))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

type Shard = RwLock<HashMap<Tag, Arc<TagState>>>;

/// Tag -> state, sharded to spread lock contention.
#[derive(Debug)]
pub(super) struct TagTable {
    hasher: RandomState,
    shards: Box<[Shard]>,
    sweep_cursor: AtomicUsize,
}

impl TagTable {
    pub(super) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            sweep_cursor: AtomicUsize::new(0),
        }
    }

    fn shard(&self, tag: &Tag) -> &Shard {
        // The modulo keeps the index below SHARDS, so the cast cannot truncate meaningfully.
        #[allow(clippy::cast_possible_truncation)]
        let index = (self.hasher.hash_one(tag) % SHARDS as u64) as usize;
        &self.shards[index]
    }

    pub(super) fn get(&self, tag: &Tag) -> Option<Arc<TagState>> {
        self.shard(tag).read().get(tag).cloned()
    }

    pub(super) fn get_or_insert(&self, tag: &Tag) -> Arc<TagState> {
        let shard = self.shard(tag);
        if let Some(state) = shard.read().get(tag) {
            return Arc::clone(state);
        }
        Arc::clone(shard.write().entry(tag.clone()).or_default())
    }

    /// Drops the prunable states of the next shard (round robin); returns how many.
    pub(super) fn sweep_next(&self, now: Duration, fill_window: Duration) -> usize {
        let index = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let mut shard = self.shards[index].write();
        let before = shard.len();
        shard.retain(|_, state| !state.is_prunable(now, fill_window));
        before - shard.len()
    }

    /// Sweeps every shard.
    pub(super) fn sweep_all(&self, now: Duration, fill_window: Duration) -> usize {
        (0..SHARDS).map(|_| self.sweep_next(now, fill_window)).sum()
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}
