//! The world of the single-flight model: the database, the calls in flight, their loaders, the
//! gates, and the steps that move them.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt as _;
use matroska_core::clock::MockClock;
use matroska_core::{Cache, Dep, Fetched, Loaded, MemoryStore, Origin};
use matroska_testkit::support::{Faulty, Gate, Op};
use proptest::prelude::*;

const ROWS: usize = 3;
const KEYS: usize = 3;
const HANDLES: usize = 2;
/// How many rounds of "open every gate, release every loader" the end of a sequence may take.
const DRAIN_ROUNDS: usize = 32;

/// The rows each key's value is read from: its dependencies.
fn rows_of(key: usize) -> &'static [usize] {
    const ROWS_OF: [&[usize]; KEYS] = [&[0], &[1, 2], &[0, 2]];
    ROWS_OF[key]
}

fn key_name(key: usize) -> String {
    format!("model:{key}")
}

fn deps(key: usize) -> Vec<Dep> {
    rows_of(key)
        .iter()
        .map(|row| Dep::id("row", *row))
        .collect()
}

/// An operation a gate or a failure applies to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// `Store::get`.
    Get,
    /// `Store::put`.
    Put,
    /// `Store::invalidate`.
    Invalidate,
}

impl Target {
    fn op(self) -> Op {
        match self {
            Self::Get => Op::Get,
            Self::Put => Op::Put,
            Self::Invalidate => Op::Invalidate,
        }
    }
}

/// One step of a sequence.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A `fetch` starts on a front end; `blind`: its read of the store fails (it fails open, so
    /// it has no fill token).
    Fetch {
        handle: usize,
        key: usize,
        blind: bool,
    },
    /// A `get` starts on a front end.
    Get { handle: usize, key: usize },
    /// A loader (the n-th of those waiting, modulo their number) reads the database.
    Read(usize),
    /// A loader that has read returns its value; `hold`: its fill is held after the store
    /// answered, before the caller publishes it to the callers waiting on it.
    Return { n: usize, hold: bool },
    /// A row changes; its invalidation starts (it returns once nothing holds it).
    Write { row: usize },
    /// The next call of an operation waits at a gate, before the store or after its answer.
    Hold { target: Target, reply: bool },
    /// A gate opens (the n-th armed one, modulo their number).
    Open(usize),
    /// The next read or write of the store fails (the front ends fail open).
    Fail(Target),
    /// An entry is deleted.
    Delete { key: usize },
    /// The store is cleared.
    Clear,
    /// A fresh value is put, without a token (read from the database at once).
    Put { key: usize },
    /// Time passes on the store's clock.
    Advance { secs: u64 },
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    let handle_key = (0..HANDLES, 0..KEYS);
    prop_oneof![
        8 => (handle_key.clone(), prop::bool::weighted(0.2))
            .prop_map(|((handle, key), blind)| Step::Fetch { handle, key, blind }),
        1 => handle_key.prop_map(|(handle, key)| Step::Get { handle, key }),
        5 => (0..8_usize).prop_map(Step::Read),
        5 => (0..8_usize, prop::bool::weighted(0.3)).prop_map(|(n, hold)| Step::Return { n, hold }),
        4 => (0..ROWS).prop_map(|row| Step::Write { row }),
        3 => (
            prop_oneof![Just(Target::Get), Just(Target::Put), Just(Target::Invalidate)],
            any::<bool>()
        )
            .prop_map(|(target, reply)| Step::Hold { target, reply }),
        3 => (0..4_usize).prop_map(Step::Open),
        2 => prop_oneof![Just(Target::Get), Just(Target::Put)].prop_map(Step::Fail),
        1 => (0..KEYS).prop_map(|key| Step::Delete { key }),
        1 => Just(Step::Clear),
        1 => (0..KEYS).prop_map(|key| Step::Put { key }),
        1 => prop_oneof![Just(1_u64), Just(61)].prop_map(|secs| Step::Advance { secs }),
    ]
}

/// The source of truth.
#[derive(Debug, Default)]
struct Db {
    /// The current version of each row.
    version: [u64; ROWS],
    /// The highest version of each row whose invalidation has returned.
    committed: [u64; ROWS],
}

impl Db {
    fn read(&self, key: usize) -> Vec<u64> {
        rows_of(key).iter().map(|row| self.version[*row]).collect()
    }

    fn floor(&self, key: usize) -> Vec<u64> {
        rows_of(key)
            .iter()
            .map(|row| self.committed[*row])
            .collect()
    }
}

/// A loader a call started: it reads when told, then returns when told.
struct Loader {
    handle: usize,
    read: Option<oneshot::Sender<()>>,
    finish: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
enum Outcome {
    Fetched(Fetched<Vec<u64>>),
    Got(Option<Vec<u64>>),
}

/// A call of a front end, with the versions no value it returns may be older than.
struct Call {
    handle: usize,
    key: usize,
    /// The committed versions of its rows when it started.
    floor: Vec<u64>,
    /// Whether an invalidation of one of its rows had returned when it started.
    after_invalidation: bool,
    outcome: Option<Result<Outcome, String>>,
    checked: bool,
}

/// What one sequence (or a run) exercised.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Report {
    pub(crate) calls: u64,
    pub(crate) shared: u64,
    pub(crate) refused: u64,
    pub(crate) fills_rejected: u64,
    pub(crate) after_invalidation: u64,
    pub(crate) stale: u64,
}

impl Report {
    pub(crate) fn add(&mut self, other: &Self) {
        self.calls += other.calls;
        self.shared += other.shared;
        self.refused += other.refused;
        self.fills_rejected += other.fills_rejected;
        self.after_invalidation += other.after_invalidation;
        self.stale += other.stale;
    }
}

type Shared<T> = Rc<RefCell<T>>;

pub(crate) struct World {
    pool: LocalPool,
    clock: MockClock,
    store: Faulty<MemoryStore>,
    caches: Vec<Cache<Faulty<MemoryStore>>>,
    /// A front end on the store itself (no gates, no failures): fresh puts, deletes, clears,
    /// and the checks.
    direct: Cache<MemoryStore>,
    db: Shared<Db>,
    loaders: Shared<Vec<Loader>>,
    calls: Vec<Shared<Call>>,
    gates: Vec<Gate>,
    writes: Shared<usize>,
}

impl World {
    pub(crate) fn new() -> Self {
        let clock = MockClock::new();
        let memory = MemoryStore::builder()
            .clock(clock.clone())
            .reclaim_chunk(1)
            .build();
        let store = Faulty::new(memory.clone());
        let caches = (0..HANDLES)
            .map(|_| Cache::builder(store.clone()).fail_open(true).build())
            .collect();
        Self {
            pool: LocalPool::new(),
            clock,
            store,
            caches,
            direct: Cache::new(memory),
            db: Rc::default(),
            loaders: Rc::default(),
            calls: Vec::new(),
            gates: Vec::new(),
            writes: Rc::default(),
        }
    }

    /// Runs a sequence; `Err` describes the first broken rule.
    pub(crate) fn run(mut self, steps: &[Step]) -> Result<Report, String> {
        for (n, step) in steps.iter().enumerate() {
            self.step(step)?;
            self.pool.run_until_stalled();
            self.check_calls()
                .and_then(|()| self.check_store())
                .map_err(|why| format!("after step #{n} {step:?}: {why}"))?;
        }
        self.drain()?;
        self.check_calls()?;
        self.check_store()?;
        self.check_counters()
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        match *step {
            Step::Fetch { handle, key, blind } => {
                if blind {
                    self.store.fail(Op::Get, 1);
                }
                self.start(handle, key, true);
            }
            Step::Get { handle, key } => self.start(handle, key, false),
            Step::Read(n) => {
                let mut loaders = self.loaders.borrow_mut();
                let mut waiting: Vec<_> = loaders.iter_mut().filter(|l| l.read.is_some()).collect();
                if !waiting.is_empty() {
                    let len = waiting.len();
                    if let Some(read) = waiting[n % len].read.take() {
                        let _ = read.send(());
                    }
                }
            }
            Step::Return { n, hold } => {
                if hold {
                    self.gates.push(self.store.gate_reply(Op::Put));
                }
                let mut loaders = self.loaders.borrow_mut();
                let mut read: Vec<_> = loaders
                    .iter_mut()
                    .filter(|l| l.read.is_none() && l.finish.is_some())
                    .collect();
                if !read.is_empty() {
                    let len = read.len();
                    if let Some(finish) = read[n % len].finish.take() {
                        let _ = finish.send(());
                    }
                }
            }
            Step::Write { row } => self.write(row),
            Step::Hold { target, reply } => {
                let gate = if reply {
                    self.store.gate_reply(target.op())
                } else {
                    self.store.gate(target.op())
                };
                self.gates.push(gate);
            }
            Step::Open(n) => {
                if !self.gates.is_empty() {
                    let len = self.gates.len();
                    self.gates.remove(n % len).open();
                }
            }
            Step::Fail(target) => self.store.fail(target.op(), 1),
            Step::Delete { key } => {
                let direct = self.direct.clone();
                self.pool
                    .run_until(direct.delete(key_name(key)))
                    .map_err(|e| format!("delete failed: {e}"))?;
            }
            Step::Clear => {
                let direct = self.direct.clone();
                self.pool
                    .run_until(direct.clear())
                    .map_err(|e| format!("clear failed: {e}"))?;
            }
            Step::Put { key } => {
                let value = self.db.borrow().read(key);
                let direct = self.direct.clone();
                self.pool
                    .run_until(
                        async move { direct.put(key_name(key), &value).deps(deps(key)).await },
                    )
                    .map_err(|e| format!("put failed: {e}"))?;
            }
            Step::Advance { secs } => self.clock.advance(Duration::from_secs(secs)),
        }
        Ok(())
    }

    /// Starts a call; a `fetch`'s loader registers itself and waits to be told to read, then to
    /// return.
    fn start(&mut self, handle: usize, key: usize, fetch: bool) {
        let db = self.db.borrow();
        let call = Rc::new(RefCell::new(Call {
            handle,
            key,
            floor: db.floor(key),
            after_invalidation: db.floor(key).iter().any(|v| *v > 0),
            outcome: None,
            checked: false,
        }));
        drop(db);
        self.calls.push(Rc::clone(&call));
        let cache = self.caches[handle].clone();
        let (db, loaders) = (Rc::clone(&self.db), Rc::clone(&self.loaders));
        let task = async move {
            let outcome = if fetch {
                cache
                    .fetch(key_name(key), move || async move {
                        let (read_tx, read_rx) = oneshot::channel();
                        let (finish_tx, finish_rx) = oneshot::channel();
                        loaders.borrow_mut().push(Loader {
                            handle,
                            read: Some(read_tx),
                            finish: Some(finish_tx),
                        });
                        let _ = read_rx.await;
                        let value = db.borrow().read(key);
                        let _ = finish_rx.await;
                        Ok::<_, Infallible>(Loaded::new(value).deps(deps(key)))
                    })
                    .await
                    .map(Outcome::Fetched)
            } else {
                cache.get(key_name(key)).await.map(Outcome::Got)
            };
            call.borrow_mut().outcome = Some(outcome.map_err(|e| e.to_string()));
        };
        // A LocalPool that is alive accepts every spawn.
        let _ = self.pool.spawner().spawn_local(task);
    }

    fn write(&mut self, row: usize) {
        let version = {
            let mut db = self.db.borrow_mut();
            db.version[row] += 1;
            db.version[row]
        };
        *self.writes.borrow_mut() += 1;
        let (cache, db, writes) = (
            self.caches[0].clone(),
            Rc::clone(&self.db),
            Rc::clone(&self.writes),
        );
        let _ = self.pool.spawner().spawn_local(async move {
            // The front ends fail open on reads only: an invalidation reaches the store or fails,
            // and no step makes it fail.
            if cache.invalidate([Dep::id("row", row)]).await.is_ok() {
                let mut db = db.borrow_mut();
                db.committed[row] = db.committed[row].max(version);
            }
            *writes.borrow_mut() -= 1;
        });
    }

    /// Every call that finished returned nothing older than its floor.
    fn check_calls(&self) -> Result<(), String> {
        for call in &self.calls {
            let mut call = call.borrow_mut();
            if call.checked {
                continue;
            }
            let Some(outcome) = &call.outcome else {
                continue;
            };
            let value = match outcome {
                Ok(Outcome::Fetched(fetched)) => Some((fetched.value.clone(), fetched.origin)),
                Ok(Outcome::Got(value)) => value.clone().map(|v| (v, Origin::Cache)),
                Err(e) => return Err(format!("a call of key {} failed: {e}", call.key)),
            };
            if let Some((value, origin)) = value
                && value
                    .iter()
                    .zip(&call.floor)
                    .any(|(seen, floor)| seen < floor)
            {
                return Err(format!(
                    "stale value for key {} on front end {}: {value:?} ({origin:?}), but \
                     versions {:?} were invalidated before the call started",
                    call.key, call.handle, call.floor
                ));
            }
            call.checked = true;
        }
        Ok(())
    }

    /// The store holds no value older than an invalidation that returned.
    fn check_store(&mut self) -> Result<(), String> {
        for key in 0..KEYS {
            let direct = self.direct.clone();
            let held = self
                .pool
                .run_until(async move { direct.get::<Vec<u64>>(key_name(key)).await })
                .map_err(|e| format!("the check's read failed: {e}"))?;
            let floor = self.db.borrow().floor(key);
            if let Some(held) = held
                && held.iter().zip(&floor).any(|(seen, floor)| seen < floor)
            {
                return Err(format!(
                    "the store serves {held:?} for key {key}, older than the invalidated {floor:?}"
                ));
            }
        }
        Ok(())
    }

    /// Opens every gate and releases every loader until every call and write has finished.
    fn drain(&mut self) -> Result<(), String> {
        for _ in 0..DRAIN_ROUNDS {
            self.gates.clear();
            for loader in self.loaders.borrow_mut().iter_mut() {
                if let Some(read) = loader.read.take() {
                    let _ = read.send(());
                }
            }
            self.pool.run_until_stalled();
            for loader in self.loaders.borrow_mut().iter_mut() {
                if let Some(finish) = loader.finish.take() {
                    let _ = finish.send(());
                }
            }
            self.pool.run_until_stalled();
            let unfinished = self
                .calls
                .iter()
                .filter(|c| c.borrow().outcome.is_none())
                .count();
            if unfinished == 0 && *self.writes.borrow() == 0 {
                return Ok(());
            }
        }
        let stuck: Vec<(usize, usize)> = self
            .calls
            .iter()
            .map(|c| c.borrow())
            .filter(|c| c.outcome.is_none())
            .map(|c| (c.handle, c.key))
            .collect();
        Err(format!(
            "with every gate open and every loader released, calls (front end, key) {stuck:?} \
             and {} invalidations never finished",
            self.writes.borrow()
        ))
    }

    /// Each front end's counters agree with what its calls saw.
    fn check_counters(&self) -> Result<Report, String> {
        let mut report = Report::default();
        for (handle, cache) in self.caches.iter().enumerate() {
            let stats = cache.stats();
            let calls: Vec<_> = self
                .calls
                .iter()
                .map(|c| c.borrow())
                .filter(|c| c.handle == handle)
                .collect();
            let mut seen = Report::default();
            let (mut hits, mut fetches, mut stored, mut not_stored) = (0, 0, 0, 0);
            for call in &calls {
                seen.calls += 1;
                if call.after_invalidation {
                    seen.after_invalidation += 1;
                }
                match &call.outcome {
                    Some(Ok(Outcome::Fetched(fetched))) => {
                        fetches += 1;
                        match fetched.origin {
                            Origin::Cache => hits += 1,
                            Origin::Shared => seen.shared += 1,
                            Origin::Loaded { stored: true } => stored += 1,
                            _ => not_stored += 1,
                        }
                    }
                    Some(Ok(Outcome::Got(Some(_)))) => hits += 1,
                    _ => {}
                }
            }
            let loads = self
                .loaders
                .borrow()
                .iter()
                .filter(|l| l.handle == handle)
                .count() as u64;
            let why = format!("front end {handle}: {stats:?}");
            let checks = [
                (
                    stats.hits + stats.misses == seen.calls,
                    "one hit or miss per call",
                ),
                (
                    stats.hits == hits,
                    "hits are the calls answered by the store",
                ),
                (
                    stats.coalesced == seen.shared,
                    "coalesced are the shared values",
                ),
                (stats.loads == loads, "loads are the loader calls"),
                (stats.fills == stored, "fills are the stored loads"),
                (
                    stats.fills_rejected <= not_stored,
                    "rejected fills were not stored",
                ),
                (
                    stats.coalesced <= stats.waits,
                    "a shared value was waited for",
                ),
                (stats.waits <= fetches, "a call waits at most once"),
                (
                    stats.shares_refused <= fetches,
                    "a refusal is counted once per call",
                ),
            ];
            if let Some((_, rule)) = checks.iter().find(|(holds, _)| !holds) {
                return Err(format!(
                    "{rule}: {why}; hits {hits}, shared {}",
                    seen.shared
                ));
            }
            seen.refused = stats.shares_refused;
            seen.fills_rejected = stats.fills_rejected;
            report.add(&seen);
        }
        Ok(report)
    }
}
