//! The derives' compile errors: each points at the attribute that is wrong.
//!
//! Refresh the expected output with `TRYBUILD=overwrite cargo test -p matroska-diesel --test ui`
//! and review the `.stderr` diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
