//! Single flight: concurrent loads of one key in one process share one loader call, when the
//! store's fill tokens show that sharing cannot hand out a value older than a caller's own miss.
//!
//! # When a caller may take another caller's load
//!
//! A caller that starts after an invalidation returned must never get a value loaded before that
//! invalidation. Its own miss happened after the invalidation, so its fill token's `seq` is at
//! least the invalidation's. A leader's load began after the leader's miss. So the waiter may
//! take the leader's value only if the leader's miss is not older than its own, in the store's
//! order: both tokens present and `mine <= leader's`. Every invalidation the waiter's miss saw,
//! the leader's miss saw too, and the leader's load began after it. When either token is missing
//! (a read that failed open, an entry that kept failing to decode) nothing orders the two misses,
//! and the caller does not share.
//!
//! The rule is applied when the caller joins, from the leader's token. A caller whose miss is
//! newer than the flight's still waits for it, but will not take its value: once the leader's
//! fill is done, it reads the store again (where the stamps decide whether the leader's value is
//! fresh enough) and, on a miss, loads alone. Waiting costs less than a load of its own, which
//! matters where `seq` moves with every write anywhere (PostgreSQL's snapshots). A caller without
//! a token cannot be ordered and does not wait: it loads alone, and starts no flight.
//!
//! A waiter also takes the value only if the store accepted the leader's fill. With the order
//! check above this is not needed where `seq` only grows; it keeps the rule sound where a store's
//! `seq` can start again from below (a Redis namespace recreated under a new generation refuses
//! the old generation's fills). A fill that was refused (a dependency was invalidated during the
//! load, or the token outlived the fill window) or could not be stored sends the waiter back to
//! the store for a fresh read, like a newer miss. Either way a call waits at most once on a load
//! whose value it does not take.
//!
//! # When a flight is joinable
//!
//! Only while its load runs. The leader removes the flight from the map before it publishes the
//! outcome, under the map's lock, so no caller can join a flight whose outcome is already out
//! (and re-join it in a loop while the leader has not been scheduled yet). A leader that goes
//! away without an outcome (cancelled, or its loader panicked) removes its flight too; its
//! waiters then read and join again.

use std::collections::HashMap;

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
    /// Whether the store accepted the fill: no dependency was invalidated during the load.
    pub(super) stored: bool,
}

/// A load in flight: the `seq` of its leader's miss, and where its outcome will appear.
#[derive(Debug)]
struct Flight {
    seq: u64,
    outcome: watch::Receiver<Option<Outcome>>,
}

/// The loads in flight, by key.
#[derive(Debug, Default)]
pub(super) struct Flights {
    map: Mutex<HashMap<Key, Flight>>,
}

/// This caller's part in a load.
pub(super) enum Role<'a> {
    /// Run the loader and publish the outcome.
    Leader(Leader<'a>),
    /// Wait for the leader's outcome; take its value only if `may_share` (the caller's miss is
    /// not newer than the leader's), else read the store again afterwards.
    Waiter {
        /// Where the outcome will appear.
        outcome: watch::Receiver<Option<Outcome>>,
        /// Whether the caller may take the leader's value.
        may_share: bool,
    },
    /// Load without sharing: this caller has no fill token, so nothing orders its miss against
    /// a leader's. `passed_by` tells whether a load of the key was in flight.
    Alone {
        /// A load of the key was in flight, and this caller could not take its value.
        passed_by: bool,
    },
}

impl Flights {
    /// Joins the flight of `key`, or starts one. `seq` is the caller's fill token's sequence
    /// number (`None`: the caller has no token).
    pub(super) fn join(&self, key: &Key, seq: Option<u64>) -> Role<'_> {
        let mut map = self.map.lock();
        // (A flight whose leader went away is removed with it; the check is a second guard.)
        let live = map
            .get(key)
            .filter(|flight| flight.outcome.has_changed().is_ok());
        let Some(seq) = seq else {
            return Role::Alone {
                passed_by: live.is_some(),
            };
        };
        if let Some(flight) = live {
            return Role::Waiter {
                outcome: flight.outcome.clone(),
                may_share: seq <= flight.seq,
            };
        }
        let (tx, outcome) = watch::channel(None);
        map.insert(key.clone(), Flight { seq, outcome });
        Role::Leader(Leader {
            flights: self,
            key: key.clone(),
            tx,
        })
    }

    /// The number of flights in the map.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().len()
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
    /// Ends the flight (no caller can join it from now on), then publishes the outcome to every
    /// waiter.
    pub(super) fn finish(self, outcome: Outcome) {
        self.leave();
        self.tx.send_replace(Some(outcome));
    }

    /// Removes this flight from the map (unless it is gone already).
    fn leave(&self) {
        let mut map = self.flights.map.lock();
        if map
            .get(&self.key)
            .is_some_and(|flight| flight.outcome.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // After `finish` the flight is gone already and this finds nothing to remove.
        self.leave();
    }
}

/// Waits for the leader. `None`: the leader went away without an outcome; retry.
pub(super) async fn wait(mut outcome: watch::Receiver<Option<Outcome>>) -> Option<Outcome> {
    match outcome.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new("k").unwrap()
    }

    #[allow(clippy::unnecessary_wraps)] // An outcome is a Result.
    fn shared() -> Outcome {
        Ok(Shared {
            bytes: Bytes::from_static(b"v"),
            stored: true,
        })
    }

    #[test]
    fn a_finished_flight_is_not_joinable() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join(&key(), Some(1)) else {
            panic!("the first caller leads");
        };
        let Role::Waiter {
            outcome: waiting,
            may_share: true,
        } = flights.join(&key(), Some(1))
        else {
            panic!("a caller with the same seq waits");
        };
        leader.finish(shared());
        assert!(waiting.borrow().is_some(), "the outcome is published");
        assert_eq!(flights.len(), 0, "the finished flight is still joinable");
        assert!(matches!(flights.join(&key(), Some(1)), Role::Leader(_)));
    }

    #[test]
    fn a_waiter_woken_by_the_outcome_finds_the_flight_gone() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join(&key(), Some(1)) else {
            panic!("the first caller leads");
        };
        let Role::Waiter {
            outcome: waiting,
            may_share: true,
        } = flights.join(&key(), Some(1))
        else {
            panic!("a caller with the same seq waits");
        };
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let outcome = futures::executor::block_on(wait(waiting));
                // What a waiter that cannot use the outcome does next: join again.
                (outcome.is_some(), flights.len())
            });
            leader.finish(shared());
            let (woken, left) = waiter.join().unwrap();
            assert!(woken);
            assert_eq!(left, 0, "the waiter could re-join the finished flight");
        });
    }

    #[test]
    fn an_older_or_equal_miss_may_share_and_a_newer_one_only_waits() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join(&key(), Some(5)) else {
            panic!("the first caller leads");
        };
        for (seq, shares) in [(4, true), (5, true), (6, false)] {
            let Role::Waiter { may_share, .. } = flights.join(&key(), Some(seq)) else {
                panic!("a caller with seq {seq} waits");
            };
            assert_eq!(may_share, shares, "seq {seq} against the leader's 5");
        }
        leader.finish(shared());
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_caller_without_a_token_loads_alone_and_starts_no_flight() {
        let flights = Flights::default();
        assert!(matches!(
            flights.join(&key(), None),
            Role::Alone { passed_by: false }
        ));
        assert_eq!(flights.len(), 0);
        let Role::Leader(_leader) = flights.join(&key(), Some(1)) else {
            panic!("the first caller with a token leads");
        };
        assert!(matches!(
            flights.join(&key(), None),
            Role::Alone { passed_by: true }
        ));
    }

    #[test]
    fn an_abandoned_flight_releases_its_waiters_and_leaves_the_map() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join(&key(), Some(1)) else {
            panic!("the first caller leads");
        };
        let Role::Waiter {
            outcome: waiting,
            may_share: true,
        } = flights.join(&key(), Some(1))
        else {
            panic!("a caller with the same seq waits");
        };
        drop(leader);
        assert_eq!(flights.len(), 0);
        assert!(futures::executor::block_on(wait(waiting)).is_none());
    }
}
