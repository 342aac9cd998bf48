//! Change capture, the receiving half: a [`Listener`] that `LISTEN`s for the tags committed
//! transactions `NOTIFY`, and [`Applier`]s that invalidate them in any [`Store`](matroska_core::Store)
//! (a `RedisStore`, a [`MemoryStore`](matroska_core::MemoryStore) L1 tier, a remote
//! [`PgStore`](matroska_postgres::PgStore)).
//!
//! ```no_run
//! use std::time::Duration;
//! use matroska_pg_capture::listener::{Listener, Strategy};
//!
//! # async fn demo(redis: matroska_redis::RedisStore) -> matroska_core::Result<()> {
//! let listener = Listener::builder("postgres://app@localhost/app")
//!     .channel("matroska")
//!     .watch_kinds(["article", "author"]) // what a gap invalidates
//!     .start()?;
//! let applier = listener.apply(redis, Strategy::Immediate)?;
//! listener.wait_connected(Duration::from_secs(5)).await?;
//! // ... serve; keep `listener` and `applier` alive ...
//! # drop(applier); Ok(()) }
//! ```
//!
//! # The payload
//!
//! Each `NOTIFY` on the channel carries one statement's event,
//! `{"v":1,"table":"public.articles","op":"update","at":1764619200000000,"tags":["i:article:5",...]}`:
//! version 1, the schema-qualified table the statement changed, the operation (`insert`,
//! `update`, `delete`, `truncate`), the send time in microseconds since the Unix epoch by the
//! database's clock, and canonical tags (see [`matroska_core::tag`]). A [`TagBatch`] gives them
//! as [`TagBatch::table`], [`TagBatch::operation`], [`TagBatch::sent_at`], plus the receive time
//! and [`TagBatch::latency`]. PostgreSQL delivers notifications at commit only (a rolled-back
//! transaction sends nothing), in commit order. A statement may send several (large tag sets
//! are split under 8,000 bytes); a tag an earlier statement of the transaction sent is not sent
//! again, so a statement's event may carry no tags.
//!
//! Versions: triggers installed before (format 2) send `{"v":1,"tags":[...]}`, read as a batch
//! without a [`Change`]; a listener from before reads the new payloads' tags and ignores the
//! rest (unknown fields are ignored). An unknown version, a payload that is not such an object,
//! or a tag that does not parse is a [`Gap`] ([`GapReason::BadPayload`]), with the readable tags
//! still delivered. [`encode_payload`] and [`encode_change_payload`] write the format.
//!
//! # Gaps: what the listener cannot vouch for
//!
//! `LISTEN`/`NOTIFY` is not durable: whatever is committed while no `LISTEN` is active is lost.
//! The listener reports every such window as a [`Gap`], and an applier, by default, invalidates
//! everything cached about the watched kinds (their `a:<kind>` tags, [`Dep::kind`]) for it:
//!
//! - **Started**: receiving began. Entries cached before cannot be proven fresh, so by default this
//!   counts as a gap ([`Applier::trust_start`] to opt out).
//! - **Disconnected**: the connection was lost (server restart, `pg_terminate_backend`, a network
//!   failure, a heartbeat that timed out on a half-open connection). Acting on it at once shortens
//!   the time stale entries may be served while reconnecting.
//! - **Reconnected**: after a reconnect with capped, jittered back-off (the first retry is
//!   immediate), the listener re-issues `LISTEN` *before* it reports the gap, so an invalidation
//!   done for the gap runs while events are already received again: a commit either arrives as an
//!   event or happened before the invalidation. No window is left uncovered.
//! - **Lagged**: a subscriber fell behind the buffer (a slow store); only it is affected.
//! - **BadPayload**: see above.
//! - **Backlog**: an applier's store was failing long enough that its pending tags exceeded the
//!   limit even collapsed to kinds. Nothing was missed: the applier clears its store instead,
//!   whatever its gap action, since only a clear covers every pending tag.
//!
//! Every subscriber ([`Listener::subscribe`]) receives every event (a broadcast, not a queue:
//! consumers never take events from each other).
//!
//! [`Dep::kind`]: matroska_core::Dep::kind

mod apply;
mod backoff;
mod config;
mod event;
mod listen;
mod payload;
mod session;
mod strategy;
mod worker;

#[cfg(test)]
mod tests;

pub use self::apply::{Applied, Applier, ApplierHandle, ApplierStats, GapAction};
pub use self::config::{DEFAULT_CHANNEL, ListenerConfig};
pub use self::event::{Event, Gap, GapReason, TagBatch};
pub use self::listen::{Listener, ListenerStatus, Subscription};
pub use self::payload::{
    Change, Operation, PAYLOAD_VERSION, PayloadError, encode_change_payload, encode_payload,
};
pub use self::strategy::Strategy;
