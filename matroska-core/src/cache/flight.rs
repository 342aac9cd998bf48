//! Single-flight: concurrent loads of one key in one process share one loader call.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::Error;
use crate::key::Key;

/// What a load produced: the encoded value, or the error every waiter gets.
pub(super) type Outcome = Result<Shared, Error>;

/// A loaded value as the waiters receive it.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    /// The encoded value.
    pub(super) bytes: Bytes,
    /// The sequence number of the leader's miss. A waiter whose own miss saw a later one may have
    /// begun after an invalidation that the leader's load predates: it must not take this value
    /// on trust.
    pub(super) seq: Option<u64>,
}

type Slot = watch::Receiver<Option<Outcome>>;

/// The loads in flight, by key.
#[derive(Debug, Default)]
pub(super) struct Flights {
    map: Mutex<HashMap<Key, Slot>>,
}

/// This caller's part in a load.
pub(super) enum Role<'a> {
    /// Run the loader and publish the outcome.
    Leader(Leader<'a>),
    /// Wait for the leader's outcome.
    Waiter(Slot),
}

impl Flights {
    pub(super) fn join(&self, key: &Key) -> Role<'_> {
        let mut map = self.map.lock();
        match map.entry(key.clone()) {
            // A slot whose leader went away is replaced; a live one is joined.
            Entry::Occupied(slot) if slot.get().has_changed().is_ok() => {
                Role::Waiter(slot.get().clone())
            }
            entry => {
                let (tx, rx) = watch::channel(None);
                match entry {
                    Entry::Occupied(mut stale) => {
                        stale.insert(rx);
                    }
                    Entry::Vacant(vacant) => {
                        vacant.insert(rx);
                    }
                }
                Role::Leader(Leader {
                    flights: self,
                    key: key.clone(),
                    tx,
                })
            }
        }
    }
}

/// The leader of a load. Dropping it without [`Leader::finish`] (the leader's future was
/// cancelled, or its loader panicked) releases the waiters, who then retry.
pub(super) struct Leader<'a> {
    flights: &'a Flights,
    key: Key,
    tx: watch::Sender<Option<Outcome>>,
}

impl Leader<'_> {
    /// Publishes the outcome to every waiter.
    pub(super) fn finish(self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
        // `Drop` removes the slot.
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock();
        if map
            .get(&self.key)
            .is_some_and(|slot| slot.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

/// Waits for the leader. `None`: the leader went away without an outcome; retry.
pub(super) async fn wait(mut slot: Slot) -> Option<Outcome> {
    match slot.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}
