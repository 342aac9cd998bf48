//! The measurement loop shared by every store: warm up, then alternate the store and its baseline
//! round by round so that machine noise hits both alike, and keep the medians.

use std::time::Duration;

use crate::Result;
use crate::report::median;

/// How many rounds to run, and which operations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan<'a> {
    /// Unmeasured rounds of each side before measuring (caches, allocator, branch predictors).
    pub(crate) warmup: usize,
    /// Measured rounds of each side; the result is the median over them.
    pub(crate) rounds: usize,
    /// Operations to measure (`--op`); empty means all.
    pub(crate) only: &'a [String],
}

impl Plan<'_> {
    /// Whether the operation `op` is to be measured.
    pub(crate) fn wants(&self, op: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == op)
    }
}

/// The medians of one operation, in nanoseconds per operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Medians {
    /// The store under test.
    pub(crate) ours_ns: f64,
    /// Its baseline.
    pub(crate) baseline_ns: f64,
}

/// Runs `ours` and `baseline` alternately, each call being one sample that returns its time per
/// operation in nanoseconds (see [`ns_per_op`]). Even rounds run ours first, odd rounds the
/// baseline first, so neither side always inherits the other's cache state.
pub(crate) async fn interleave(
    plan: Plan<'_>,
    mut ours: impl AsyncFnMut() -> Result<f64>,
    mut baseline: impl AsyncFnMut() -> Result<f64>,
) -> Result<Medians> {
    for _ in 0..plan.warmup {
        ours().await?;
        baseline().await?;
    }
    let mut ours_samples = Vec::with_capacity(plan.rounds);
    let mut baseline_samples = Vec::with_capacity(plan.rounds);
    for round in 0..plan.rounds {
        if round % 2 == 0 {
            ours_samples.push(ours().await?);
            baseline_samples.push(baseline().await?);
        } else {
            baseline_samples.push(baseline().await?);
            ours_samples.push(ours().await?);
        }
    }
    match (median(&mut ours_samples), median(&mut baseline_samples)) {
        (Some(ours_ns), Some(baseline_ns)) => Ok(Medians {
            ours_ns,
            baseline_ns,
        }),
        _ => Err("no measured rounds (--rounds must be at least 1)".into()),
    }
}

/// Nanoseconds per operation of a batch of `ops` operations that took `elapsed`.
pub(crate) fn ns_per_op(elapsed: Duration, ops: u32) -> f64 {
    elapsed.as_secs_f64() * 1e9 / f64::from(ops.max(1))
}
