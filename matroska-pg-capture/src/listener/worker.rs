//! The task of a running [`Applier`](super::Applier): receives events, keeps the pending set,
//! applies it to the store when the strategy says, retries a failing store, bounds the backlog.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use matroska_core::{Error, Result, Store, Tag};
use tokio::time::Instant;

use super::apply::{Applied, AppliedCallback, GapAction, GapCallback};
use super::backoff::Backoff;
use super::event::{Event, Gap, GapReason};
use super::listen::Subscription;
use super::strategy::{Batch, Pending, kind_tag_of};

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) events: AtomicU64,
    pub(super) gaps: AtomicU64,
    pub(super) applies: AtomicU64,
    pub(super) tags_applied: AtomicU64,
    pub(super) removed: AtomicU64,
    pub(super) clears: AtomicU64,
    pub(super) store_errors: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// The applier's task state.
pub(super) struct Worker<S> {
    pub(super) subscription: Subscription,
    pub(super) store: S,
    pub(super) pending: Pending,
    pub(super) kind_tags: Arc<[Tag]>,
    pub(super) gap_action: GapAction,
    pub(super) trust_start: bool,
    pub(super) on_gap: Option<GapCallback>,
    pub(super) on_applied: Option<AppliedCallback>,
    pub(super) max_batch: usize,
    pub(super) max_pending: usize,
    pub(super) store_timeout: Duration,
    pub(super) backoff: Backoff,
    /// After a failure, no apply before this.
    pub(super) retry_at: Option<Instant>,
    pub(super) stats: Arc<Counters>,
}

impl<S: Store> Worker<S> {
    pub(super) async fn run(mut self) {
        loop {
            let due = self.due();
            if due.is_some_and(|due| due <= Instant::now()) {
                self.apply().await;
                continue;
            }
            tokio::select! {
                // The timer first: a steady stream of events must not postpone a due apply.
                biased;
                () = sleep_until(due) => {}
                event = self.subscription.recv() => {
                    let Some(event) = event else {
                        self.finish().await;
                        return;
                    };
                    self.accept(event);
                    // Coalesce whatever else is already waiting.
                    while self.pending.len() < self.max_batch {
                        match self.subscription.try_recv() {
                            Some(event) => self.accept(event),
                            None => break,
                        }
                    }
                }
            }
        }
    }

    fn due(&self) -> Option<Instant> {
        let due = self.pending.due()?;
        Some(self.retry_at.map_or(due, |retry| due.max(retry)))
    }

    fn accept(&mut self, event: Event) {
        match event {
            Event::Tags(batch) => {
                bump(&self.stats.events, 1);
                self.pending
                    .add(batch.tags().iter().cloned(), Instant::now());
                self.limit_backlog();
            }
            Event::Gap(gap) => self.gap(&gap),
        }
    }

    fn gap(&mut self, gap: &Gap) {
        let trusted = self.trust_start && matches!(gap.reason(), GapReason::Started);
        self.report(
            gap,
            if trusted {
                GapAction::Nothing
            } else {
                self.gap_action
            },
        );
        if trusted {
            return;
        }
        let now = Instant::now();
        match self.gap_action {
            GapAction::InvalidateKinds => {
                self.pending.add_urgent(self.kind_tags.iter().cloned(), now);
            }
            GapAction::Clear => self.pending.clear(now),
            GapAction::Nothing => {}
        }
    }

    /// Counts and logs a gap and passes it to the callback (`action`: what is done about it).
    fn report(&self, gap: &Gap, action: GapAction) {
        bump(&self.stats.gaps, 1);
        tracing::info!(store = self.store.name(), %gap, ?action, "matroska-postgres applier: gap");
        if let Some(callback) = &self.on_gap
            && catch_unwind(AssertUnwindSafe(|| callback(gap))).is_err()
        {
            tracing::error!("matroska-postgres applier: the gap callback panicked");
        }
    }

    /// Too many pending tags: collapse them to their kinds (`a:<kind>` covers every tag of its
    /// kind), and if that is still too many (free `g:` tags and hashed tags whose kind was cut
    /// off do not collapse), clear the store, whatever the gap action: a clear is the one call
    /// that covers every pending tag, so no invalidation is lost. Reported as a
    /// [`GapReason::Backlog`] gap.
    fn limit_backlog(&mut self) {
        if self.pending.len() <= self.max_pending {
            return;
        }
        let tags = self.pending.take_tags();
        let before = tags.len();
        let collapsed: HashSet<Tag> = tags
            .into_iter()
            .map(|tag| kind_tag_of(&tag).unwrap_or(tag))
            .collect();
        if collapsed.len() <= self.max_pending {
            tracing::warn!(
                store = self.store.name(),
                before,
                after = collapsed.len(),
                "matroska-postgres applier: too many pending tags; applying their kinds instead"
            );
            self.pending.replace_urgent(collapsed, Instant::now());
            return;
        }
        tracing::error!(
            store = self.store.name(),
            pending = collapsed.len(),
            "matroska-postgres applier: too many pending tags even by kind; clearing the store \
             instead (it covers them all)"
        );
        self.report(
            &Gap::new(GapReason::Backlog {
                pending_tags: collapsed.len(),
            }),
            GapAction::Clear,
        );
        self.pending.clear(Instant::now());
    }

    async fn apply(&mut self) {
        let started = Instant::now();
        let batch = self.pending.take(started);
        let mut removed = 0;
        if batch.clear {
            match self.call(self.store.clear()).await {
                Ok(()) => bump(&self.stats.clears, 1),
                Err(error) => return self.failed(batch, &error),
            }
        } else {
            let mut done = 0;
            while done < batch.tags.len() {
                let end = (done + self.max_batch).min(batch.tags.len());
                match self
                    .call(self.store.invalidate(&batch.tags[done..end]))
                    .await
                {
                    Ok(count) => removed += count,
                    Err(error) => {
                        let rest = Batch {
                            tags: batch.tags[done..].to_vec(),
                            clear: false,
                        };
                        return self.failed(rest, &error);
                    }
                }
                done = end;
            }
        }
        self.backoff.reset();
        self.retry_at = None;
        let tags = if batch.clear { Vec::new() } else { batch.tags };
        bump(&self.stats.applies, 1);
        bump(&self.stats.tags_applied, tags.len() as u64);
        bump(&self.stats.removed, removed);
        if let Some(callback) = &self.on_applied {
            let applied = Applied {
                tags,
                cleared: batch.clear,
                removed,
                took: started.elapsed(),
            };
            if catch_unwind(AssertUnwindSafe(|| callback(&applied))).is_err() {
                tracing::error!("matroska-postgres applier: the applied callback panicked");
            }
        }
    }

    /// One store call, bounded by the store timeout.
    async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.store_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                operation: "applying invalidations",
                after: self.store_timeout,
            }),
        }
    }

    fn failed(&mut self, rest: Batch, error: &Error) {
        bump(&self.stats.store_errors, 1);
        let delay = self.backoff.next_delay();
        let now = Instant::now();
        self.retry_at = Some(now + delay);
        tracing::warn!(
            store = self.store.name(),
            %error,
            tags = rest.tags.len(),
            clear = rest.clear,
            retry_in = ?delay,
            "matroska-postgres applier: could not apply invalidations; they stay pending"
        );
        self.pending.restore(rest, now);
        self.limit_backlog();
    }

    /// The listener shut down: apply what is pending (one attempt) and stop.
    async fn finish(&mut self) {
        if self.pending.due().is_some() {
            self.retry_at = None;
            self.apply().await;
            if let Some(left) = self.pending.due().map(|_| self.pending.len()) {
                tracing::error!(
                    store = self.store.name(),
                    tags = left,
                    "matroska-postgres applier: stopping with invalidations the store refused"
                );
            }
        }
        tracing::warn!(
            store = self.store.name(),
            "matroska-postgres applier: the listener shut down; this store no longer receives \
             invalidations"
        );
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
