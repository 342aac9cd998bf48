//! The checker's `begin_fill`: its tokens join the kept miss tokens (a later [`Op::Fill`] checks
//! them against the model's rule, exactly as a miss's), and its leases are checked against a
//! small model of their own.
//!
//! [`Op::Fill`]: super::op::Op::Fill

use std::time::Duration;

use matroska_core::Store;

use super::exec::{Case, bump, key_of};
use super::op::KEYS;
use super::reference::Token;
use crate::Harness;

/// A lease no case outlives, on a mock clock or in real time.
const LEASE: Duration = Duration::from_secs(24 * 3600);

/// What the model knows of a key's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lease {
    /// Never taken in this namespace: the next caller must get it.
    #[default]
    Free,
    /// Taken (and running: no case outlives [`LEASE`]): every caller must be refused.
    Held,
    /// Unknown after a clear or a loss of state (a store may or may not forget leases then).
    Unknown,
}

/// The leases of a case's keys.
#[derive(Debug, Default)]
pub(crate) struct Leases([Lease; KEYS as usize]);

impl Leases {
    /// A clear or a loss: any key's lease may be gone or still held.
    pub(crate) fn forget(&mut self) {
        for lease in &mut self.0 {
            if *lease == Lease::Held {
                *lease = Lease::Unknown;
            }
        }
    }
}

impl<H: Harness> Case<'_, H> {
    /// `begin_fill` of `key`, with a (never-ending) lease or without.
    pub(crate) async fn begin_fill(&mut self, on: u8, key: u8, lease: bool) -> Result<(), String> {
        let lo = self.timing.now();
        let got = self.stores[usize::from(on)]
            .begin_fill(&key_of(key), lease.then_some(LEASE))
            .await
            .map_err(|e| format!("begin_fill failed: {e}"))?;
        let span = self.span(lo);
        let slot = &mut self.leases.0[usize::from(key)];
        match (lease, *slot, got.is_some()) {
            (false, _, false) => {
                return Err(format!(
                    "begin_fill of k{key} without a lease gave no token"
                ));
            }
            (true, Lease::Free, false) => {
                return Err(format!(
                    "LEASE REFUSED: k{key}'s lease was never taken, yet begin_fill got none"
                ));
            }
            (true, Lease::Held, true) => {
                return Err(format!(
                    "DOUBLE LEASE: k{key}'s lease is held (never released, not run out), yet begin_fill got it again"
                ));
            }
            (true, _, taken) => {
                *slot = Lease::Held;
                if !taken {
                    bump(&self.stats.leases_refused);
                }
            }
            (false, _, true) => {}
        }
        if let Some(fill) = got {
            bump(&self.stats.begin_fills);
            self.keep_token(Token {
                key,
                fill,
                at: self.step,
                span,
            });
        }
        Ok(())
    }
}
