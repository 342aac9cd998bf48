//! Runnable examples of Matroska; see `quickstart.rs`. This library only doctests the workspace
//! README, so that its example always compiles and runs.

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
