//! The model-based checker: random operation sequences, run against a store and checked step by
//! step against a reference model.
//!
//! Hand-written cases prove the cases someone thought of. The checker generates sequences of
//! `put` (with and without a TTL), `get`, `exists`, `ttl`, fills with kept tokens, held
//! `Cache::fetch` loads released later, multi-tag invalidations (some padded past per-script tag
//! limits), `delete`, `clear`, time passing, lost indexes, stamps and namespace state, and
//! housekeeping, on two handles of one namespace, mostly on
//! [`Harness::small_store`] so that every budget runs out. After
//! each step it checks the store's answer against the model (see `model/reference.rs`): a hit
//! returns exactly the current value, a fill whose token predates an invalidation of its tags is
//! refused, a fresh fill is stored, an entry that must be live is a hit, invalidation counts are
//! within bounds.
//!
//! Generation and shrinking are [`proptest`]'s: a failure is reported as the smallest sequence
//! found that still fails, with the seed that replays the run.
//!
//! - `MATROSKA_TEST_SEED=<u64>` replays a run (the seed is printed at the start);
//! - `MATROSKA_MODEL_CASES=<n>` sets the number of sequences (the long run); the default is 200
//!   on a mock clock and 32 in real time;
//! - `MATROSKA_MODEL_STEPS=<n>` sets the longest sequence (default 48).
//!
//! A long run lifts the suite's time limit on the case; run it with `cargo test`, which has no
//! per-test timeout (nextest's profile kills a test after 3 minutes), for example:
//! `MATROSKA_MODEL_CASES=5000 cargo test -p matroska-redis --test conformance model:: -- --nocapture`.

mod envelope;
mod exec;
mod lease;
mod op;
mod reference;
mod timing;

use std::sync::atomic::Ordering;

use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use self::exec::{Case, Stats};
use crate::Harness;

/// How a run of the checker is sized.
///
/// # Examples
///
/// ```
/// let config = matroska_testkit::model::ModelConfig { cases: 10, steps: 20, seed: 7 };
/// assert_eq!(config.cases, 10);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ModelConfig {
    /// How many sequences run.
    pub cases: u32,
    /// The longest sequence.
    pub steps: usize,
    /// The seed of the generator.
    pub seed: u64,
}

impl ModelConfig {
    /// The configuration from the environment (`MATROSKA_MODEL_CASES`, `MATROSKA_MODEL_STEPS`,
    /// `MATROSKA_TEST_SEED`), with defaults for a store whose clock is a mock (`exact_time`) or
    /// real. Prints the seed, so that a failure can be replayed.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = matroska_testkit::model::ModelConfig::from_env(true);
    /// assert!(config.cases > 0);
    /// ```
    pub fn from_env(exact_time: bool) -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let cases = var("MATROSKA_MODEL_CASES")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(if exact_time { 200 } else { 32 });
        let steps = var("MATROSKA_MODEL_STEPS")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(48);
        let seed = var("MATROSKA_TEST_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
        });
        eprintln!(
            "model-based checker: {cases} sequences of up to {steps} steps; replay with MATROSKA_TEST_SEED={seed}"
        );
        Self { cases, steps, seed }
    }
}

/// What a run of the checker exercised, summed over its sequences.
///
/// # Examples
///
/// ```
/// let report = matroska_testkit::model::ModelReport::default();
/// assert_eq!(report.stale_reads, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelReport {
    /// Sequences run (including the reruns of shrinking, if one failed).
    pub cases: u64,
    /// Operations run.
    pub ops: u64,
    /// Reads that returned a value (each checked to be the current one).
    pub hits: u64,
    /// Reads that missed.
    pub misses: u64,
    /// Store-level fills that were stored.
    pub fills_stored: u64,
    /// Store-level fills refused because their token predated an invalidation, a clear or the
    /// fill window (each one a stale value kept out).
    pub fills_refused: u64,
    /// Held `Cache::fetch` loads whose value was stored.
    pub loads_stored: u64,
    /// Held loads refused as stale.
    pub loads_refused: u64,
    /// Invalidations run.
    pub invalidations: u64,
    /// Entries they reported removed.
    pub removed: u64,
    /// Losses of metadata simulated.
    pub losses: u64,
    /// Reads that found an entry gone by expiry or metadata loss.
    pub expired_reads: u64,
    /// Tokens handed out by `begin_fill` (kept for fills, like a miss's).
    pub begin_fills: u64,
    /// `begin_fill` calls refused because the key's lease was held.
    pub leases_refused: u64,
    /// Stale reads found: always 0 when [`check`] returns.
    pub stale_reads: u64,
}

impl ModelReport {
    fn from_stats(stats: &Stats) -> Self {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Self {
            cases: get(&stats.cases),
            ops: get(&stats.ops),
            hits: get(&stats.hits),
            misses: get(&stats.misses),
            fills_stored: get(&stats.fills_stored),
            fills_refused: get(&stats.fills_refused),
            loads_stored: get(&stats.loads_stored),
            loads_refused: get(&stats.loads_refused),
            invalidations: get(&stats.invalidations),
            removed: get(&stats.removed),
            losses: get(&stats.losses),
            expired_reads: get(&stats.expired_reads),
            begin_fills: get(&stats.begin_fills),
            leases_refused: get(&stats.leases_refused),
            stale_reads: 0,
        }
    }
}

/// Runs the checker on stores of `h` and returns what it exercised.
///
/// Must be called on a multi-threaded Tokio runtime (the suite's [`run`](crate::run) builds
/// one): generation runs on the calling thread, which blocks while each sequence runs.
///
/// # Panics
///
/// When the store disagrees with the model: the message holds the smallest failing sequence
/// found, the step that failed and why, and the seed that replays the run.
///
/// # Examples
///
/// ```no_run
/// # async fn example<H: matroska_testkit::Harness>(h: &H) {
/// use matroska_testkit::model::{ModelConfig, check};
///
/// let report = check(h, ModelConfig { cases: 50, steps: 40, seed: 1 }).await;
/// assert!(report.hits > 0);
/// # }
/// ```
pub async fn check<H: Harness>(h: &H, config: ModelConfig) -> ModelReport {
    let stats = Stats::default();
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config {
            cases: config.cases,
            max_shrink_iters: 512,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(config.seed),
            ..Config::default()
        });
        runner.run(&op::case(config.steps), |(small, ops)| {
            runtime.block_on(async {
                Case::new(h, small, &stats)
                    .await
                    .run(&ops)
                    .await
                    .map_err(TestCaseError::fail)
            })
        })
    });
    let report = ModelReport::from_stats(&stats);
    match outcome {
        Ok(()) => {
            eprintln!("model-based checker: {report:?}");
            report
        }
        Err(TestError::Fail(why, (small, ops))) => panic!(
            "the store disagrees with the model (replay with MATROSKA_TEST_SEED={}).\n\
             Smallest failing sequence ({} store, {} steps):\n{ops:#?}\n{why}",
            config.seed,
            if small { "small" } else { "default" },
            ops.len(),
        ),
        Err(TestError::Abort(why)) => panic!("the model-based checker aborted: {why}"),
    }
}
