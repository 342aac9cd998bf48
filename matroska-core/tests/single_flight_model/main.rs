//! Model-based randomized test of the `Cache` front end's single flight over `MemoryStore`.
//!
//! A reference model holds the source of truth: a database of versioned rows, and for each row
//! the highest version whose invalidation has returned. Random sequences of steps start
//! `fetch`/`get` calls on two front ends (two processes' single-flight maps) of one store,
//! release their loaders in two phases (read the database, then return) in any order, write rows
//! and invalidate them (the invalidation may be held at a gate before or after it reaches the
//! store), delete, clear, put fresh values, make the store's next read or write fail (failing
//! open), hold reads and writes at gates, and let time pass. Every task runs on one thread and
//! each step runs them until none can move (`LocalPool::run_until_stalled`), so a sequence is an
//! exact, replayable interleaving.
//!
//! Checked after every step:
//! - no call that started after an invalidation returned gets a value older than it (a shared
//!   value included);
//! - the store never holds a value older than an invalidation that returned;
//!
//! and at the end of each sequence, with every gate open and every loader released: every call
//! finished (no lost wake-up, no caller waiting forever), and each front end's counters agree with
//! what its calls saw.
//!
//! `MATROSKA_TEST_SEED` replays a run (the seed is printed), `MATROSKA_MODEL_CASES` sets the
//! number of sequences (default 300), `MATROSKA_MODEL_STEPS` the longest sequence (default 40).

mod world;

use std::cell::RefCell;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use crate::world::{Report, Step, World};

fn config() -> (u32, usize, u64) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = var("MATROSKA_MODEL_CASES")
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(300);
    let steps = var("MATROSKA_MODEL_STEPS")
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(40);
    let seed = var("MATROSKA_TEST_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
    });
    (cases, steps, seed)
}

#[test]
fn single_flight_never_hands_out_a_value_older_than_the_callers_start() {
    let (cases, steps, seed) = config();
    eprintln!(
        "single-flight model: {cases} sequences of up to {steps} steps; \
         replay with MATROSKA_TEST_SEED={seed}"
    );
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 2048,
        ..Config::default()
    });
    let totals = RefCell::new(Report::default());
    let outcome = runner.run(&prop::collection::vec(world::step(), 1..=steps), |steps| {
        let report = World::new().run(&steps).map_err(TestCaseError::fail)?;
        totals.borrow_mut().add(&report);
        Ok(())
    });
    let totals = totals.into_inner();
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(why, steps)) => panic!(
            "single flight broke the model (replay with MATROSKA_TEST_SEED={seed}).\n\
             Smallest failing sequence ({} steps):\n{steps:#?}\n{why}",
            steps.len()
        ),
        Err(TestError::Abort(why)) => panic!("the model test aborted: {why}"),
    }
    eprintln!("single-flight model: {totals:?}");
    // The run exercised what it claims to check.
    assert_eq!(totals.stale, 0);
    assert!(totals.calls > 0 && totals.shared > 0, "{totals:?}");
    assert!(
        totals.refused > 0,
        "no call ever refused a share: {totals:?}"
    );
    assert!(
        totals.fills_rejected > 0,
        "no fill was ever rejected: {totals:?}"
    );
    assert!(totals.after_invalidation > 0, "{totals:?}");
}

/// Interleavings worth keeping whatever the generator finds, each run through the same world.
#[test]
fn known_interleavings_never_hand_out_a_stale_value() {
    use Step::{Fetch, Open, Read, Return, Write};
    let cases: [(&str, Vec<Step>); 3] = [
        (
            // The leader's fill is stored and held before it publishes; an invalidation returns;
            // a caller without a token (its read failed open) must not take the stored value.
            "a caller without a token, between the leader's put and its publication",
            vec![
                Fetch {
                    handle: 0,
                    key: 0,
                    blind: false,
                },
                Read(0),
                Return { n: 0, hold: true },
                Write { row: 0 },
                Fetch {
                    handle: 0,
                    key: 0,
                    blind: true,
                },
                Open(0),
            ],
        ),
        (
            // The same with a token: its miss is newer than the leader's.
            "a caller with a newer token, between the leader's put and its publication",
            vec![
                Fetch {
                    handle: 0,
                    key: 0,
                    blind: false,
                },
                Read(0),
                Return { n: 0, hold: true },
                Write { row: 0 },
                Fetch {
                    handle: 0,
                    key: 0,
                    blind: false,
                },
                Open(0),
            ],
        ),
        (
            // The leader has no token (its read failed open) and loaded before an invalidation.
            "a leader without a token",
            vec![
                Fetch {
                    handle: 0,
                    key: 0,
                    blind: true,
                },
                Read(0),
                Write { row: 0 },
                Fetch {
                    handle: 0,
                    key: 0,
                    blind: false,
                },
                Return { n: 0, hold: false },
            ],
        ),
    ];
    for (what, steps) in cases {
        if let Err(why) = World::new().run(&steps) {
            panic!("{what}: {why}");
        }
    }
}
