//! The examples, run end to end against real servers: `change_capture` (a writer with plain SQL,
//! a reader process caching in Redis, kept fresh by the capture triggers and the listener) exits
//! with an error on any stale read, unexpected hit or miss, or an invalidation that does not
//! arrive.
//!
//! Needs `MATROSKA_TEST_POSTGRES_URL` and `MATROSKA_TEST_REDIS_URL` (run `./scripts/test`, which
//! starts private servers); without them the test is skipped, or fails when `CI` or
//! `MATROSKA_TEST_REQUIRE_SERVERS` is set.
//!
//! The example's binary is the one Cargo builds next to this test's: `cargo test` and
//! `cargo nextest run` build every example of the package unless targets are filtered, into
//! `target/<profile>/examples/`. When only this test is built (`--test examples`), build the
//! example first (`cargo build -p matroska-pg-capture --example change_capture`); the test fails,
//! rather than run an old binary, when the binary is missing or older than the package's sources.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// `target/<profile>/examples/<name>`: this test runs as `target/<profile>/deps/examples-<hash>`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The newest modification time under `path`.
fn newest(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).unwrap();
    let mut newest = meta.modified().unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            newest = newest.max(self::newest(&entry.unwrap().path()));
        }
    }
    newest
}

#[test]
fn change_capture_example_runs_end_to_end() {
    let Some(postgres) = matroska_testkit::server_url("MATROSKA_TEST_POSTGRES_URL") else {
        return;
    };
    let Some(redis) = matroska_testkit::server_url("MATROSKA_TEST_REDIS_URL") else {
        return;
    };
    let bin = example("change_capture");
    let build = "build it with `cargo build -p matroska-pg-capture --example change_capture` \
                 (cargo test and cargo nextest build it unless targets are filtered)";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; {build}", bin.display()));
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = newest(&package.join("src")).max(newest(&package.join("examples")));
    assert!(
        built >= sources,
        "{} is older than the sources of matroska-postgres; {build}",
        bin.display()
    );

    let output = Command::new(&bin)
        .args(["--postgres-url", &postgres, "--redis-url", &redis])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "change_capture failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for expected in ["OK: every read matched the database", "Cleaned up: schemas"] {
        assert!(
            stdout.contains(expected),
            "no {expected:?} in the output:\n{stdout}\n{stderr}"
        );
    }
}
