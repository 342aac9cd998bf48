//! Refresh leases of the [`MemoryStore`](super::MemoryStore): one holder per key until its lease
//! runs out on the store's clock.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::key::Key;

/// The map is swept of run-out leases when it reaches this size, or twice its size after the
/// last sweep: amortised constant work per lease, memory bounded by twice the live leases.
const SWEEP_FROM: usize = 1024;

/// The running leases: key to the time (on the store's clock) the lease runs out.
#[derive(Debug)]
pub(super) struct Leases {
    map: Mutex<(HashMap<Key, Duration>, usize)>,
}

impl Default for Leases {
    fn default() -> Self {
        Self {
            map: Mutex::new((HashMap::new(), SWEEP_FROM)),
        }
    }
}

impl Leases {
    /// Takes the lease of `key` until `now + length`, unless another one runs at `now`.
    pub(super) fn take(&self, key: &Key, now: Duration, length: Duration) -> bool {
        let mut guard = self.map.lock();
        let (map, sweep_at) = &mut *guard;
        if map.get(key).is_some_and(|&until| until > now) {
            return false;
        }
        if map.len() >= *sweep_at {
            map.retain(|_, until| *until > now);
            *sweep_at = (map.len() * 2).max(SWEEP_FROM);
        }
        map.insert(key.clone(), now.saturating_add(length));
        true
    }

    /// Forgets every lease (a clear).
    pub(super) fn clear(&self) {
        self.map.lock().0.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.lock().0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_until_the_lease_runs_out() {
        let leases = Leases::default();
        let k = Key::new("k").unwrap();
        let s = Duration::from_secs;
        assert!(leases.take(&k, s(0), s(5)));
        assert!(!leases.take(&k, s(4), s(5)), "held");
        assert!(leases.take(&k, s(5), s(5)), "ran out at 5 s");
        assert!(leases.take(&Key::new("other").unwrap(), s(6), s(5)));
    }

    #[test]
    fn run_out_leases_are_swept_as_the_map_grows() {
        let leases = Leases::default();
        for i in 0..10 * SWEEP_FROM {
            let k = Key::new(format!("k{i}")).unwrap();
            // Each lease runs out before the next is taken.
            let now = Duration::from_millis(i as u64 * 2);
            assert!(leases.take(&k, now, Duration::from_millis(1)));
        }
        assert!(leases.len() <= SWEEP_FROM, "{} leases kept", leases.len());
    }
}
