//! The Lua scripts, one per operation, each prefixed with `lua/common.lua`.
//!
//! [`redis::Script`] runs a script with `EVALSHA` and, on `NOSCRIPT` (after a restart or a
//! `SCRIPT FLUSH`), loads it and runs it again.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../lua/common.lua"),
                include_str!(concat!("../lua/", $file))
            ))
        })
    };
}

/// Lookup: a hit, or a miss with its fill token.
pub(crate) static GET: LazyLock<Script> = script!("get.lua");
/// The remaining life of a live entry (for `exists` and `ttl`).
pub(crate) static PROBE: LazyLock<Script> = script!("probe.lua");
/// Store an entry, with the fill token checks.
pub(crate) static PUT: LazyLock<Script> = script!("put.lua");
/// Remove an entry.
pub(crate) static DELETE: LazyLock<Script> = script!("delete.lua");
/// Stamp tags and remove (or set aside) their dependents.
pub(crate) static INVALIDATE: LazyLock<Script> = script!("invalidate.lua");
/// Work through sets aside in bounded chunks.
pub(crate) static RECLAIM: LazyLock<Script> = script!("reclaim.lua");
/// Start a new generation of the namespace.
pub(crate) static CLEAR: LazyLock<Script> = script!("clear.lua");
/// One bounded step of the namespace walk.
pub(crate) static WALK: LazyLock<Script> = script!("walk.lua");
/// One bounded step of pruning tag records.
pub(crate) static PRUNE: LazyLock<Script> = script!("prune.lua");

/// A fill token whatever is stored, optionally with the key's refresh lease.
pub(crate) static BEGIN_FILL: LazyLock<Script> = script!("begin_fill.lua");

/// Every script, for loading them ahead of time.
pub(crate) fn all() -> [&'static Script; 10] {
    [
        &BEGIN_FILL,
        &GET,
        &PROBE,
        &PUT,
        &DELETE,
        &INVALIDATE,
        &RECLAIM,
        &CLEAR,
        &WALK,
        &PRUNE,
    ]
}
