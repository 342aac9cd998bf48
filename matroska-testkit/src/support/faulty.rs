//! [`Faulty`]: a store wrapper whose operations fail, or wait, when a test says so.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use matroska_core::store::{FillToken, KeyTtl, Lookup, PutOutcome, Store};
use matroska_core::{Bytes, Error, Key, Result, Tag, async_trait};
use parking_lot::Mutex;
use tokio::sync::watch;

/// An operation of the [`Store`] trait, as [`Faulty`] scripts it.
///
/// # Examples
///
/// ```
/// use matroska_testkit::support::Op;
///
/// assert_ne!(Op::Get, Op::Put);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`Store::get`].
    Get,
    /// [`Store::put`].
    Put,
    /// [`Store::delete`].
    Delete,
    /// [`Store::invalidate`].
    Invalidate,
    /// [`Store::ttl`].
    Ttl,
    /// [`Store::clear`].
    Clear,
    /// [`Store::exists`].
    Exists,
    /// [`Store::begin_fill`].
    BeginFill,
}

/// Where a [`Gate`] holds a call: before it reaches the store, or after the store answered and
/// before the caller sees the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum At {
    Call,
    Reply,
}

/// A store that behaves like the one it wraps, except that a test can make its next operations
/// fail with a transient error (as a dropped connection does), take the whole store down and up
/// again, and hold single calls at a [`Gate`] before or after they reach the store. It counts the
/// calls of each operation.
///
/// It wraps any [`Store`], so the rules of [`Cache`](matroska_core::Cache) that depend on store
/// failures and timing (fail-open, "no token, no store", the single-flight order check) are tested
/// on every store. Clones share the script.
///
/// # Examples
///
/// ```
/// use matroska_core::store::{Lookup, Store};
/// use matroska_core::MemoryStore;
/// use matroska_testkit::support::{Faulty, Op, key};
///
/// # futures::executor::block_on(async {
/// let store = Faulty::new(MemoryStore::new());
/// store.fail(Op::Get, 1);
/// let err = store.get(&key("k")).await.unwrap_err();
/// assert!(err.is_transient());
/// assert!(matches!(store.get(&key("k")).await.unwrap(), Lookup::Miss(_)));
/// assert_eq!(store.calls(Op::Get), 2);
/// # });
/// ```
#[derive(Clone)]
pub struct Faulty<S> {
    inner: S,
    script: Arc<Mutex<Script>>,
}

#[derive(Default)]
struct Script {
    /// How many of the next calls of each operation fail.
    failures: HashMap<Op, u32>,
    /// Every operation fails while the store is down.
    down: bool,
    /// Gates armed for the next calls, in the order they were armed.
    gates: HashMap<(Op, At), VecDeque<Arc<GateState>>>,
    calls: HashMap<Op, u64>,
}

impl<S> fmt::Debug for Faulty<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = self.script.lock();
        f.debug_struct("Faulty")
            .field("down", &script.down)
            .field("failures", &script.failures)
            .field("calls", &script.calls)
            .finish_non_exhaustive()
    }
}

/// A call held by a [`Faulty`] store until the test opens the gate.
///
/// Dropping the gate opens it, so that a failing test never leaves a call hanging.
///
/// # Examples
///
/// ```
/// use matroska_core::{MemoryStore, store::Store};
/// use matroska_testkit::support::{Faulty, Op, key};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Faulty::new(MemoryStore::new());
/// let gate = store.gate(Op::Delete);
/// let deleting = tokio::spawn({
///     let store = store.clone();
///     async move { store.delete(&key("k")).await }
/// });
/// gate.reached().await;
/// assert!(!deleting.is_finished());
/// gate.open();
/// assert!(!deleting.await.unwrap().unwrap());
/// # });
/// ```
#[derive(Debug)]
#[must_use = "a gate opens when it is dropped"]
pub struct Gate {
    state: Arc<GateState>,
}

#[derive(Debug)]
struct GateState {
    reached: watch::Sender<bool>,
    open: watch::Sender<bool>,
}

impl Gate {
    /// Waits until a call arrived at the gate.
    ///
    /// # Examples
    ///
    /// See [`Gate`].
    pub async fn reached(&self) {
        let mut reached = self.state.reached.subscribe();
        // The sender lives in `self.state`: waiting cannot fail.
        let _ = reached.wait_for(|reached| *reached).await;
    }

    /// Whether a call arrived at the gate.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::MemoryStore;
    /// use matroska_testkit::support::{Faulty, Op};
    ///
    /// let gate = Faulty::new(MemoryStore::new()).gate(Op::Get);
    /// assert!(!gate.is_reached());
    /// ```
    pub fn is_reached(&self) -> bool {
        *self.state.reached.borrow()
    }

    /// Lets the held call (or the call still to come) through.
    ///
    /// # Examples
    ///
    /// See [`Gate`].
    pub fn open(&self) {
        self.state.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl GateState {
    async fn pass(&self) {
        self.reached.send_replace(true);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

impl<S: Store> Faulty<S> {
    /// Wraps `inner`; every operation passes through until the test scripts something.
    ///
    /// # Examples
    ///
    /// ```
    /// let store = matroska_testkit::support::Faulty::new(matroska_core::MemoryStore::new());
    /// # let _ = store;
    /// ```
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            script: Arc::default(),
        }
    }

    /// The wrapped store, to look at what really is stored without going through the script.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_testkit::support::Faulty;
    ///
    /// let store = Faulty::new(matroska_core::MemoryStore::new());
    /// assert_eq!(store.inner().entry_count(), 0);
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes the next `times` calls of `op` fail with a transient error.
    ///
    /// # Examples
    ///
    /// See [`Faulty`].
    pub fn fail(&self, op: Op, times: u32) {
        *self.script.lock().failures.entry(op).or_default() += times;
    }

    /// Takes the store down: every operation fails with a transient error until [`Faulty::up`].
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::store::Store;
    /// use matroska_testkit::support::{Faulty, key};
    ///
    /// # futures::executor::block_on(async {
    /// let store = Faulty::new(matroska_core::MemoryStore::new());
    /// store.down();
    /// assert!(store.delete(&key("k")).await.unwrap_err().is_transient());
    /// store.up();
    /// assert!(!store.delete(&key("k")).await.unwrap());
    /// # });
    /// ```
    pub fn down(&self) {
        self.script.lock().down = true;
    }

    /// Brings the store back up after [`Faulty::down`].
    ///
    /// # Examples
    ///
    /// See [`Faulty::down`].
    pub fn up(&self) {
        self.script.lock().down = false;
    }

    /// Holds the next call of `op` before it reaches the store, until the gate is opened. Gates
    /// armed for one operation hold its next calls in the order they were armed.
    ///
    /// # Examples
    ///
    /// See [`Gate`].
    pub fn gate(&self, op: Op) -> Gate {
        self.arm(op, At::Call)
    }

    /// Holds the next call of `op` after the store answered it, before its caller sees the
    /// answer: the operation has taken effect, its caller does not know yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use matroska_core::store::Store;
    /// use matroska_testkit::support::{Faulty, Op, bytes, hit, key};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Faulty::new(matroska_core::MemoryStore::new());
    /// let gate = store.gate_reply(Op::Put);
    /// let putting = tokio::spawn({
    ///     let store = store.clone();
    ///     async move { store.put(&key("k"), bytes("v"), &[], None, None).await }
    /// });
    /// gate.reached().await;
    /// assert_eq!(hit(store.inner(), &key("k")).await, Some(bytes("v")));
    /// gate.open();
    /// assert!(putting.await.unwrap().unwrap().is_stored());
    /// # });
    /// ```
    pub fn gate_reply(&self, op: Op) -> Gate {
        self.arm(op, At::Reply)
    }

    /// How many calls of `op` were made (failed and held ones included).
    ///
    /// # Examples
    ///
    /// See [`Faulty`].
    pub fn calls(&self, op: Op) -> u64 {
        self.script.lock().calls.get(&op).copied().unwrap_or(0)
    }

    fn arm(&self, op: Op, at: At) -> Gate {
        let state = Arc::new(GateState {
            reached: watch::Sender::new(false),
            open: watch::Sender::new(false),
        });
        self.script
            .lock()
            .gates
            .entry((op, at))
            .or_default()
            .push_back(Arc::clone(&state));
        Gate { state }
    }

    /// Counts a call, and fails it or hands out the gates it must pass (before the store, after
    /// its answer).
    fn begin(&self, op: Op) -> Result<[Option<Arc<GateState>>; 2]> {
        let mut script = self.script.lock();
        *script.calls.entry(op).or_default() += 1;
        let scripted = script.failures.get_mut(&op).filter(|left| **left > 0);
        let fails = match scripted {
            Some(left) => {
                *left -= 1;
                true
            }
            None => script.down,
        };
        if fails {
            let cause = std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the test took the store down",
            );
            return Err(Error::backend(
                "faulty",
                format!("{op:?} failed on purpose"),
                true,
                cause,
            ));
        }
        let mut next = |at| {
            script
                .gates
                .get_mut(&(op, at))
                .and_then(VecDeque::pop_front)
        };
        Ok([next(At::Call), next(At::Reply)])
    }

    /// Runs one operation through the script.
    async fn run<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        let [before, after] = self.begin(op)?;
        if let Some(gate) = before {
            gate.pass().await;
        }
        let outcome = call.await;
        if let Some(gate) = after {
            gate.pass().await;
        }
        outcome
    }
}

#[async_trait]
impl<S: Store> Store for Faulty<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get(&self, key: &Key) -> Result<Lookup> {
        self.run(Op::Get, self.inner.get(key)).await
    }

    async fn put(
        &self,
        key: &Key,
        value: Bytes,
        tags: &[Tag],
        ttl: Option<Duration>,
        token: Option<&FillToken>,
    ) -> Result<PutOutcome> {
        self.run(Op::Put, self.inner.put(key, value, tags, ttl, token))
            .await
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        self.run(Op::Delete, self.inner.delete(key)).await
    }

    async fn invalidate(&self, tags: &[Tag]) -> Result<u64> {
        self.run(Op::Invalidate, self.inner.invalidate(tags)).await
    }

    async fn ttl(&self, key: &Key) -> Result<KeyTtl> {
        self.run(Op::Ttl, self.inner.ttl(key)).await
    }

    async fn clear(&self) -> Result<()> {
        self.run(Op::Clear, self.inner.clear()).await
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        self.run(Op::Exists, self.inner.exists(key)).await
    }

    async fn begin_fill(&self, key: &Key, lease: Option<Duration>) -> Result<Option<FillToken>> {
        self.run(Op::BeginFill, self.inner.begin_fill(key, lease))
            .await
    }

    fn max_value_len(&self) -> usize {
        self.inner.max_value_len()
    }
}
