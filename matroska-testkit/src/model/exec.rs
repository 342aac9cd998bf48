//! Runs one generated sequence against a store and checks every answer against the model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use matroska_core::store::{KeyTtl, Lookup, PutOutcome, Store};
use matroska_core::{Cache, Dep, Fetched, Key, Loaded, Origin, Tag};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::envelope::Envelope;
use super::lease::Leases;
use super::op::{KEYS, Life, Op, PADDING_TAGS, STEPS, TAGS};
use super::reference::{FillRule, Model, Span, Token, Tri};
use super::timing::Timing;
use crate::Harness;

mod batch;

/// How many fill tokens and held loads a case keeps at most.
const KEEP: usize = 6;

/// What the runs did, summed over every case: the checker proves it exercised the paths it
/// claims to check.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) cases: AtomicU64,
    pub(crate) ops: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fills_stored: AtomicU64,
    pub(crate) fills_refused: AtomicU64,
    pub(crate) loads_stored: AtomicU64,
    pub(crate) loads_refused: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) removed: AtomicU64,
    pub(crate) losses: AtomicU64,
    pub(crate) expired_reads: AtomicU64,
    pub(crate) begin_fills: AtomicU64,
    pub(crate) leases_refused: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A load held at its gate: the loader runs once the gate gets its value.
struct Load {
    key: u8,
    at: usize,
    span: Span,
    gate: oneshot::Sender<(u64, Vec<Dep>, Option<Duration>)>,
    task: JoinHandle<matroska_core::Result<Fetched<u64>>>,
}

pub(crate) fn key_of(k: u8) -> Key {
    crate::support::key(&format!("model:k{k}"))
}

fn deps_of(tags: u8) -> Vec<Dep> {
    (0..TAGS)
        .filter(|t| tags & (1 << t) != 0)
        .map(|t| Dep::tag(format!("t{t}")))
        .collect()
}

fn tags_of(tags: u8) -> Vec<Tag> {
    deps_of(tags).iter().map(crate::support::tag).collect()
}

/// One case: two handles on a fresh namespace, the model, kept tokens and held loads.
pub(crate) struct Case<'h, H: Harness> {
    h: &'h H,
    pub(crate) stores: [H::Store; 2],
    caches: [Cache<H::Store>; 2],
    model: Model,
    pub(crate) timing: Timing,
    tokens: Vec<Token>,
    loads: Vec<Load>,
    envelope: Envelope,
    pub(crate) stats: &'h Stats,
    pub(crate) step: usize,
    pub(crate) leases: Leases,
}

impl<'h, H: Harness> Case<'h, H> {
    pub(crate) async fn new(h: &'h H, small: bool, stats: &'h Stats) -> Self {
        let first = if small {
            h.small_store().await
        } else {
            h.store().await
        };
        let second = h.reopen(&first).await;
        let window = h.fill_window();
        let timing = Timing::new(h.exact_time(), window);
        Self {
            h,
            caches: [Cache::new(first.clone()), Cache::new(second.clone())],
            stores: [first, second],
            model: Model::new(timing.tolerance, window),
            timing,
            tokens: Vec::new(),
            loads: Vec::new(),
            envelope: Envelope::new(),
            stats,
            step: 0,
            leases: Leases::default(),
        }
    }

    /// Runs the sequence; the first disagreement with the model is the error.
    pub(crate) async fn run(mut self, ops: &[Op]) -> Result<(), String> {
        bump(&self.stats.cases);
        let mut outcome = Ok(());
        for (i, op) in ops.iter().enumerate() {
            self.step = i;
            bump(&self.stats.ops);
            if let Err(e) = self.apply(op).await {
                outcome = Err(format!("op #{i} {op:?}: {e}"));
                break;
            }
        }
        if outcome.is_ok() {
            // A last look at every key.
            for k in 0..KEYS {
                self.step = ops.len();
                if let Err(e) = self.get(0, k).await {
                    outcome = Err(format!("final read of k{k}: {e}"));
                    break;
                }
            }
        }
        // Release held loaders: they fail, and nothing is stored.
        for load in std::mem::take(&mut self.loads) {
            drop(load.gate);
            let _ = load.task.await;
        }
        outcome
    }

    pub(crate) fn span(&self, lo: Duration) -> Span {
        Span {
            lo,
            hi: self.timing.now(),
        }
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Put {
                on,
                key,
                tags,
                life,
            } => self.put(on, key, tags, life).await,
            Op::Get { on, key } => self.get(on, key).await,
            Op::Exists { on, key } => self.exists(on, key).await,
            Op::Ttl { on, key } => self.ttl(on, key).await,
            Op::Fill {
                on,
                token,
                tags,
                life,
            } => self.fill(on, token, tags, life).await,
            Op::StartLoad { on, key } => self.start_load(on, key).await,
            Op::FinishLoad { load, tags, life } => self.finish_load(load, tags, life).await,
            Op::Invalidate { on, tags, padded } => self.invalidate(on, tags, padded).await,
            Op::Delete { on, key } => self.delete(on, key).await,
            Op::Clear { on } => {
                self.stores[usize::from(on)]
                    .clear()
                    .await
                    .map_err(|e| format!("clear failed: {e}"))?;
                self.model.clear(self.step);
                self.leases.forget();
                Ok(())
            }
            Op::Advance { step } => {
                let by = self.timing.steps[usize::from(step % STEPS)];
                self.h.advance(&self.stores[0], by).await;
                self.timing.mock += by;
                Ok(())
            }
            Op::LoseIndex { tag } => {
                // Only an index that surely exists can be lost (the harness may check it).
                let at = self.span(self.timing.now());
                if self.model.surely_indexed(tag % TAGS, at) {
                    let t = &tags_of(1 << (tag % TAGS))[0];
                    self.h.lose_index(&self.stores[0], t).await;
                    self.model.lose(self.step);
                    bump(&self.stats.losses);
                }
                Ok(())
            }
            Op::LoseStamp { tag } => {
                let t = &tags_of(1 << (tag % TAGS))[0];
                if self.h.lose_stamp(&self.stores[0], t).await {
                    self.model.lose(self.step);
                    bump(&self.stats.losses);
                }
                Ok(())
            }
            Op::BeginFill { on, key, lease } => self.begin_fill(on, key, lease).await,
            Op::LoseState => {
                if self.h.lose_state(&self.stores[0]).await {
                    self.leases.forget();
                    self.model.lose(self.step);
                    bump(&self.stats.losses);
                }
                Ok(())
            }
            Op::Housekeep => {
                self.h.housekeep(&self.stores[0]).await;
                Ok(())
            }
            Op::GetMany { on, keys } => self.get_many(on, keys).await,
            Op::PutMany {
                on,
                keys,
                tags,
                life,
            } => self.put_many(on, keys, tags, life).await,
            Op::FillMany {
                on,
                tokens,
                tags,
                life,
            } => self.fill_many(on, tokens, tags, life).await,
        }
    }

    async fn put(&mut self, on: u8, key: u8, tags: u8, life: Life) -> Result<(), String> {
        let value = self.model.fresh_value();
        let bytes = self.envelope.encode(value).await?;
        let ttl = self.timing.ttl(life);
        let lo = self.timing.now();
        let outcome = self.stores[usize::from(on)]
            .put(&key_of(key), bytes, &tags_of(tags), ttl, None)
            .await
            .map_err(|e| format!("put failed: {e}"))?;
        if outcome != PutOutcome::Stored {
            return Err(format!("a put without a token was {outcome:?}"));
        }
        let span = self.span(lo);
        self.model.store(key, value, tags, ttl, span, self.step);
        Ok(())
    }

    /// Checks a hit of `value` (or a miss) under `key` at `span`.
    fn check_read(&mut self, key: u8, value: Option<u64>, span: Span) -> Result<(), String> {
        let live = self.model.live(key, span);
        if let Some(v) = value {
            let expected = self.model.entries[usize::from(key)]
                .as_ref()
                .map(|e| e.value);
            if live == Tri::No || expected != Some(v) {
                return Err(format!(
                    "STALE READ: k{key} returned value {v}; the model says {}",
                    self.model.describe(key)
                ));
            }
            bump(&self.stats.hits);
            return Ok(());
        }
        if live == Tri::Yes {
            return Err(format!(
                "LOST ENTRY: k{key} is a miss; the model says {}",
                self.model.describe(key)
            ));
        }
        if self.model.entries[usize::from(key)].is_some() {
            bump(&self.stats.expired_reads);
        }
        self.model.observed_miss(key);
        bump(&self.stats.misses);
        Ok(())
    }

    async fn get(&mut self, on: u8, key: u8) -> Result<(), String> {
        let lo = self.timing.now();
        let lookup = self.stores[usize::from(on)]
            .get(&key_of(key))
            .await
            .map_err(|e| format!("get failed: {e}"))?;
        let span = self.span(lo);
        match lookup {
            Lookup::Hit(bytes) => {
                let v = self.envelope.decode(bytes).await?;
                self.check_read(key, Some(v), span)
            }
            Lookup::Miss(token) => {
                self.check_read(key, None, span)?;
                self.keep_token(Token {
                    key,
                    fill: token,
                    at: self.step,
                    span,
                });
                Ok(())
            }
        }
    }

    /// Keeps a fill token for a later [`Op::Fill`] (the oldest goes when `KEEP` are kept).
    pub(crate) fn keep_token(&mut self, token: Token) {
        if self.tokens.len() == KEEP {
            self.tokens.remove(0);
        }
        self.tokens.push(token);
    }

    async fn exists(&mut self, on: u8, key: u8) -> Result<(), String> {
        let lo = self.timing.now();
        let found = self.stores[usize::from(on)]
            .exists(&key_of(key))
            .await
            .map_err(|e| format!("exists failed: {e}"))?;
        let span = self.span(lo);
        if found {
            // exists says nothing of the value; it must not report what get may not serve.
            if self.model.live(key, span) == Tri::No {
                return Err(format!(
                    "STALE EXISTS: k{key} exists; the model says {}",
                    self.model.describe(key)
                ));
            }
            Ok(())
        } else {
            self.check_read(key, None, span)
        }
    }

    async fn ttl(&mut self, on: u8, key: u8) -> Result<(), String> {
        let lo = self.timing.now();
        let ttl = self.stores[usize::from(on)]
            .ttl(&key_of(key))
            .await
            .map_err(|e| format!("ttl failed: {e}"))?;
        let span = self.span(lo);
        let live = self.model.live(key, span);
        let entry = self.model.entries[usize::from(key)].clone();
        match (ttl, entry) {
            (KeyTtl::Missing, _) => self.check_read(key, None, span),
            (_, None) => Err(format!(
                "STALE TTL: k{key} reports {ttl:?}; nothing may be served"
            )),
            (_, Some(_)) if live == Tri::No => Err(format!(
                "STALE TTL: k{key} reports {ttl:?}; the model says {}",
                self.model.describe(key)
            )),
            (KeyTtl::Persistent, Some(e)) if e.expires.is_some() => Err(format!(
                "k{key} reports no expiry; the model says {}",
                self.model.describe(key)
            )),
            (KeyTtl::Expires(left), Some(e)) => match e.expires {
                None => Err(format!(
                    "k{key} reports {left:?} left; the model says it never expires"
                )),
                Some(expires) if span.lo + left > expires.hi + self.timing.tolerance => Err(
                    format!("k{key} reports {left:?} left, longer than its life ({expires:?})"),
                ),
                Some(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Compares a fill's outcome with the model's rule; stores it in the model when stored.
    #[allow(clippy::too_many_arguments)]
    fn check_fill(
        &mut self,
        what: &str,
        rule: &FillRule,
        stored: bool,
        key: u8,
        value: u64,
        tags: u8,
        ttl: Option<Duration>,
        span: Span,
    ) -> Result<(), String> {
        match (rule, stored) {
            (FillRule::Refuse(why), true) => {
                return Err(format!(
                    "STALE FILL: {what} of k{key} was stored, but {why}"
                ));
            }
            (FillRule::Store, false) => {
                return Err(format!(
                    "a fresh {what} of k{key} was refused (no invalidation, clear or loss since its token)"
                ));
            }
            _ => {}
        }
        if stored {
            self.model.store(key, value, tags, ttl, span, self.step);
        }
        Ok(())
    }

    async fn fill(&mut self, on: u8, token: u8, tags: u8, life: Life) -> Result<(), String> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let token = self.tokens[usize::from(token) % self.tokens.len()].clone();
        let value = self.model.fresh_value();
        let bytes = self.envelope.encode(value).await?;
        let ttl = self.timing.ttl(life);
        let lo = self.timing.now();
        let outcome = self.stores[usize::from(on)]
            .put(
                &key_of(token.key),
                bytes,
                &tags_of(tags),
                ttl,
                Some(&token.fill),
            )
            .await
            .map_err(|e| format!("fill failed: {e}"))?;
        let span = self.span(lo);
        let rule = self.model.fill_rule(&token, tags, span);
        let stored = outcome == PutOutcome::Stored;
        match (&rule, stored) {
            (FillRule::Refuse(_), false) => bump(&self.stats.fills_refused),
            (_, true) => bump(&self.stats.fills_stored),
            _ => {}
        }
        let what = format!("fill (token of op #{})", token.at);
        self.check_fill(&what, &rule, stored, token.key, value, tags, ttl, span)
    }

    async fn start_load(&mut self, on: u8, key: u8) -> Result<(), String> {
        if self.loads.len() == KEEP || self.loads.iter().any(|l| l.key == key) {
            return Ok(());
        }
        let (started_tx, mut started) = oneshot::channel::<()>();
        let (gate, gate_rx) = oneshot::channel::<(u64, Vec<Dep>, Option<Duration>)>();
        let cache = self.caches[usize::from(on)].clone();
        let lo = self.timing.now();
        let mut task = tokio::spawn(async move {
            cache
                .fetch(key_of(key), move || async move {
                    let _ = started_tx.send(());
                    match gate_rx.await {
                        Ok((value, deps, ttl)) => {
                            let loaded = Loaded::new(value).deps(deps);
                            Ok(match ttl {
                                Some(ttl) => loaded.ttl(ttl),
                                None => loaded,
                            })
                        }
                        Err(_) => Err(std::io::Error::other("the case ended")),
                    }
                })
                .await
        });
        tokio::select! {
            Ok(()) = &mut started => {
                let span = self.span(lo);
                self.check_read(key, None, span)?;
                self.loads.push(Load { key, at: self.step, span, gate, task });
                Ok(())
            }
            done = &mut task => {
                let span = self.span(lo);
                match done {
                    Ok(Ok(Fetched { value, origin: Origin::Cache, .. })) => self.check_read(key, Some(value), span),
                    Ok(Ok(other)) => Err(format!("a fetch with no other caller returned {:?}", other.origin)),
                    Ok(Err(e)) => Err(format!("fetch failed: {e}")),
                    Err(e) => Err(format!("fetch task failed: {e}")),
                }
            }
        }
    }

    async fn finish_load(&mut self, load: u8, tags: u8, life: Life) -> Result<(), String> {
        if self.loads.is_empty() {
            return Ok(());
        }
        let load = self.loads.remove(usize::from(load) % self.loads.len());
        let value = self.model.fresh_value();
        let ttl = self.timing.ttl(life);
        let lo = self.timing.now();
        if load.gate.send((value, deps_of(tags), ttl)).is_err() {
            return Err("the held loader went away".to_owned());
        }
        let fetched = load
            .task
            .await
            .map_err(|e| format!("fetch task failed: {e}"))?
            .map_err(|e| format!("fetch failed: {e}"))?;
        let span = self.span(lo);
        let Origin::Loaded { stored } = fetched.origin else {
            return Err(format!("the held load returned {:?}", fetched.origin));
        };
        if fetched.value != value {
            return Err(format!(
                "the held load returned {}, its loader {value}",
                fetched.value
            ));
        }
        let token = Token {
            key: load.key,
            fill: matroska_core::store::FillToken::new(0, 0),
            at: load.at,
            span: load.span,
        };
        let rule = self.model.fill_rule(&token, tags, span);
        match (&rule, stored) {
            (FillRule::Refuse(_), false) => bump(&self.stats.loads_refused),
            (_, true) => bump(&self.stats.loads_stored),
            _ => {}
        }
        let what = format!("load (begun by op #{})", load.at);
        self.check_fill(&what, &rule, stored, load.key, value, tags, ttl, span)
    }

    async fn invalidate(&mut self, on: u8, tags: u8, padded: bool) -> Result<(), String> {
        let mut list = tags_of(tags);
        if padded {
            list.extend(
                (0..PADDING_TAGS).map(|i| crate::support::tag(&Dep::tag(format!("pad{i}")))),
            );
        }
        let lo = self.timing.now();
        let removed = self.stores[usize::from(on)]
            .invalidate(&list)
            .await
            .map_err(|e| format!("invalidate failed: {e}"))?;
        let span = self.span(lo);
        let (low, high) = self.model.invalidate(tags, self.step, span);
        bump(&self.stats.invalidations);
        self.stats.removed.fetch_add(removed, Ordering::Relaxed);
        if removed < low || removed > high {
            return Err(format!(
                "invalidate of {tags:#07b} reported {removed} entries; the model allows {low}..={high}"
            ));
        }
        Ok(())
    }

    async fn delete(&mut self, on: u8, key: u8) -> Result<(), String> {
        let lo = self.timing.now();
        let deleted = self.stores[usize::from(on)]
            .delete(&key_of(key))
            .await
            .map_err(|e| format!("delete failed: {e}"))?;
        let span = self.span(lo);
        let live = self.model.live(key, span);
        if (live == Tri::Yes && !deleted) || (live == Tri::No && deleted) {
            return Err(format!(
                "delete of k{key} returned {deleted}; the model says {}",
                self.model.describe(key)
            ));
        }
        self.model.delete(key);
        Ok(())
    }
}
